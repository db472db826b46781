"""The tables of a reproduction report, each a Markdown string built from grid runs.

Accuracy and BWT cells are mean ± std over seeds; perplexities and their ratios are
geometric means over seeds with their 95 % interval on the log scale (one convention
throughout the report, the frontier included); every accuracy table carries the
majority-class rate, and the final average accuracy (mean over tasks after the last one,
the standard continual-learning number) sits beside the forgetting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curlora.metrics.continual import average_accuracy
from curlora.reporting.claims import (
    bwt_summary,
    bwt_task_names,
    paired_log_ratio,
    paired_seeds,
    ppl_summary,
)
from curlora.reporting.grid import (
    GridRun,
    Rules,
    Setting,
    by_seed,
    compared_on,
    default_sampling,
    selection_scores,
)
from curlora.reporting.stats import Summary, summarize, summarize_log


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(setting: Setting, i: int, j: int, majority: float) -> str:
    summary = setting.summary(lambda r: r.results["accuracy_matrix"][i][j])
    flags = "†" if summary.n and summary.mean <= majority + 0.01 else ""
    tasks = setting.tasks
    one_class = sum(r.one_class(tasks[j], tasks[i]) for r in setting.runs.values())
    if one_class:
        flags += f"‡{one_class}/{summary.n}"
    return f"{summary}{flags}"


TABLE_ONE_CAPTION = (
    "Accuracy and BWT: mean ± std over seeds; perplexity and its ratio: geometric mean over "
    "seeds with its 95 % interval (log scale). † at or below the majority rate + 0.01; "
    "‡k/n: k of n seeds predicted one class for ≥ 95 % of the split."
)


def final_average_accuracy(setting: Setting) -> Summary:
    """Mean over seeds of ACC, the average accuracy over every task after the last one
    (``curlora.metrics.continual.average_accuracy`` of each run's accuracy matrix)."""
    return setting.summary(lambda r: average_accuracy(r.results["accuracy_matrix"]))


def geometric_perplexity(setting: Setting, value: Callable[[GridRun], float | None]) -> str:
    """A perplexity's geometric mean over seeds and its 95 % interval (log scale)."""
    s = summarize_log(value(r) for r in setting.runs.values())
    if not s.n or not math.isfinite(s.geometric_mean):
        return str(s)
    if s.low is None or s.high is None:
        return f"{s.geometric_mean:.3f}"
    return f"{s.geometric_mean:.3f} [{s.low:.3f}, {s.high:.3f}]"


def table_one(settings: Sequence[Setting], rules: Rules, learned: Sequence[int]) -> str:
    """The paper's layout: rows are stages, columns methods at their chosen rate."""
    tasks, majority = settings[0].tasks, settings[0].majority
    header = ["", *(f"{s.label}, seeds {_seeds(s)}" for s in settings), "majority"]
    rows = [
        [
            "perplexity before training",
            *(
                geometric_perplexity(s, lambda r: r.results["perplexity"]["initial"])
                for s in settings
            ),
            "",
        ]
    ]
    for i, trained in enumerate(tasks):
        for j in range(i + 1):
            cells = [_cell(s, i, j, majority[j]) for s in settings]
            rows.append([f"after {trained}: {tasks[j]} accuracy", *cells, f"{majority[j]:.3f}"])
    rows.append(
        [
            f"final average accuracy (all tasks, after {tasks[-1]})",
            *(str(final_average_accuracy(s)) for s in settings),
            f"{sum(majority) / len(majority):.3f}",
        ]
    )
    rows.append(
        [
            f"perplexity after {tasks[-1]}",
            *(
                geometric_perplexity(s, lambda r: r.results["perplexity"]["after_task"][-1])
                for s in settings
            ),
            "",
        ]
    )
    rows.append(
        [
            "perplexity ratio (geometric mean, 95 % CI)",
            *(f"{ppl_summary(s)} {ppl_summary(s).interval()}" for s in settings),
            "",
        ]
    )
    rows.append(
        [
            "BWT, all tasks",
            *(str(s.summary(lambda r: r.results["metrics"]["bwt"])) for s in settings),
            "",
        ]
    )
    rows.append(
        [
            f"BWT, learned tasks ({bwt_task_names(tasks, learned)})",
            *(str(bwt_summary(rules, s, learned)) for s in settings),
            "",
        ]
    )
    return markdown(header, rows)


def _seeds(setting: Setting) -> str:
    return ",".join(str(seed) for seed in sorted(setting.runs))


def selection_table(runs: Sequence[GridRun], lrs: dict[str, float]) -> str:
    """Every candidate's score, on the seeds every candidate finished (the rule) and on all
    of its own seeds, with the seeds named."""
    rows = []
    for method, by_lr in sorted(selection_scores(runs).items()):
        common = compared_on(by_lr)
        seeds = ",".join(str(seed) for seed, _ in sorted(common)) or "none in common"
        for lr, scores in sorted(by_lr.items()):
            on_common = summarize(scores[k] for k in sorted(common)) if common else None
            own = ",".join(str(seed) for seed, _ in sorted(scores))
            rows.append(
                [
                    method,
                    f"{lr:g}" + (" **chosen**" if math.isclose(lr, lrs.get(method, -1)) else ""),
                    f"{on_common} (seeds {seeds})" if on_common else "-",
                    f"{summarize(scores.values())} (seeds {own})",
                ]
            )
    return markdown(
        ["method", "learning rate", "score on the common seeds (the rule)", "score on all seeds"],
        rows,
    )


def sampling_settings(runs: Sequence[GridRun], lrs: dict[str, float], rank: int) -> list[Setting]:
    """CURLoRA at its chosen rate and ``rank``, one setting per column-sampling mode, the
    paper's (``inverted``) first; empty when fewer than two modes ran."""
    if "curlora" not in lrs:
        return []
    chosen = [
        r
        for r in runs
        if r.method == "curlora" and math.isclose(r.lr, lrs["curlora"]) and r.rank == rank
    ]
    modes = sorted({r.sampling or "inverted" for r in chosen}, key=lambda m: (m != "inverted", m))
    if len(modes) < 2:
        return []
    return [
        Setting(
            mode,
            by_seed(r for r in chosen if (r.sampling or "inverted") == mode),
            "curlora",
            rank,
            lrs["curlora"],
        )
        for mode in modes
    ]


def comparison_table(
    settings: Sequence[Setting],
    reference_of: Callable[[Setting], Setting | None],
    rules: Rules,
    learned: Sequence[int],
    against: str = "CURLoRA's",
) -> str:
    """Settings side by side with their paired differences (by seed and test example) from
    ``reference_of(setting)``: trainable parameters, accuracy right after each task, BWT,
    perplexity ratio (each over the setting's own seeds), then the seeds both ran and, on
    them, Δ BWT on ``learned`` (> 0: forgets less than the reference) and Δ log perplexity
    ratio (< 0: drifts less). No reference (None, or itself): blank."""
    tasks = settings[0].tasks
    rows = []
    for s in settings:
        diag = [str(s.summary(lambda r, j=j: r.diagonal()[j])) for j in range(len(tasks))]
        ratio = ppl_summary(s)
        row = [
            s.label,
            _seeds(s),
            str(next(iter(s.runs.values())).results["trainable_params"]),
            *diag,
            str(final_average_accuracy(s)),
            str(bwt_summary(rules, s, None)),
            str(bwt_summary(rules, s, learned)),
            f"{ratio} {ratio.interval()}",
        ]
        reference = reference_of(s)
        if reference is not None and reference is not s:
            b = bwt_summary(rules, s, learned, reference)
            d = paired_log_ratio(s, reference)
            paired = ",".join(str(seed) for seed in paired_seeds(s, reference))
            row += [paired, f"{b} {b.interval()}", f"{d} {d.interval()}"]
        else:
            row += ["", "", ""]
        rows.append(row)
    return markdown(
        [
            "setting",
            "seeds",
            "trainable",
            *(f"{t} after own training" for t in tasks),
            "final average accuracy",
            "BWT (all)",
            f"BWT (learned: {bwt_task_names(tasks, learned)})",
            "perplexity ratio",
            "paired on seeds",
            f"BWT (learned) − {against} (paired)",
            f"log ratio − {against} (paired)",
        ],
        rows,
    )


def _errorbar(ax: Any, xs: Sequence[Any], points: Sequence[tuple], label: str) -> None:
    """(mean, low, high) per x as a line with asymmetric 95 % interval bars."""
    ax.errorbar(
        xs,
        [m for m, _, _ in points],
        yerr=[
            [m - (lo if lo is not None else m) for m, lo, _ in points],
            [(hi if hi is not None else m) - m for m, _, hi in points],
        ],
        marker="o",
        capsize=3,
        label=label,
    )


def plot_ranks(
    settings: Sequence[Setting], rules: Rules, learned: Sequence[int], path: Path
) -> Path:
    """Perplexity ratio and BWT (on ``learned``, the sweep's learned tasks; all tasks when
    there are none) against rank, one line per method (mean ± 95 % CI)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for method in sorted({s.method for s in settings}):
        mine = sorted((s for s in settings if s.method == method), key=lambda s: s.rank or 0)
        ranks = [s.rank for s in mine]
        ratios = [ppl_summary(s) for s in mine]
        _errorbar(axes[0], ranks, [(r.geometric_mean, r.low, r.high) for r in ratios], method)
        bwts = [bwt_summary(rules, s, learned or None) for s in mine]
        _errorbar(axes[1], ranks, [(b.mean, b.low, b.high) for b in bwts], method)
    axes[0].set_ylabel("perplexity ratio (geometric mean), log scale")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("BWT (learned tasks)" if learned else "BWT (all tasks)")
    for ax in axes:
        ax.set_xlabel("rank")
        ax.legend(fontsize="small")
    from curlora.reporting.plots import save_figure

    return save_figure(fig, path)  # atomic, like every output


def chosen_runs(runs: Sequence[GridRun], method: str, lr: float, rank: int) -> list[GridRun]:
    return [
        r
        for r in runs
        if r.method == method and r.rank == rank and math.isclose(r.lr, lr) and default_sampling(r)
    ]
