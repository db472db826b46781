"""REPORT.md of a words-protocol grid (``table2_words``): the model answers every task in words.

Built from the grid's stored runs and rules alone, like Table 1's report
(``curlora.reporting.reproduction``), with what this protocol changes:

- **the protocol check first** (``protocol_check.json``): was forgetting measurable at
  all? Sequential LoRA's acc-BWT and em-BWT with their intervals, whatever they show, and
  which protocol the rest of the grid ran under;
- the control is the **zero-shot row** (each run's evaluation before training), in the
  place ``head_only`` holds in Table 1: a task is *learned* when every compared method's
  accuracy right after it beats the majority rate and the zero-shot accuracy by the margin;
- the headline question on **acc-BWT** (rank classification among the task's words),
  **em-BWT** (the whole-vocabulary exact match) and **perplexity drift**, CURLoRA against
  each other headline method, paired by seed and test example;
- **Table 2**: every headline method at its chosen rate, the references (LoRA + replay,
  LoRA + joint: what a method that fights forgetting should approach) and the zero-shot
  floor, with the **retention** ratio (lm-eval's offline suite, final over initial), and
  the suite task by task (``curlora.reporting.words_retention``);
- the four methods' **forgetting curves** (``words_forgetting.png``);
- the **stability–plasticity frontier** over every headline method's rate grid, against the
  zero-shot floor (``curlora.reporting.words_frontier``, ``words_frontier.png``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure

from curlora.grid.results import RUNS
from curlora.reporting.claims import (
    bwt_summary,
    bwt_task_names,
    learned_tasks,
    ppl_summary,
    question_rows,
)
from curlora.reporting.grid import (
    GridRun,
    Rules,
    Setting,
    by_seed,
    choose_learning_rates,
    load_grid,
    lr_grid_runs,
    table_settings,
)
from curlora.reporting.left_out import left_out_lines
from curlora.reporting.plots import save_figure
from curlora.reporting.protocol_check import (
    RULE,
    DamagedCheck,
    ProtocolCheck,
    protocol_runs,
    read_checks,
)
from curlora.reporting.regular_file import read_text
from curlora.reporting.row_counts import leave_out_odd_row_counts
from curlora.reporting.stats import MIN_SEEDS, interval_text
from curlora.reporting.tables import final_average_accuracy, markdown, selection_table
from curlora.reporting.untrusted import shown
from curlora.reporting.words_frontier import frontier_section
from curlora.reporting.words_retention import (
    ratio_summary,
    retention_rows,
    retention_section,
    shared_answer_tasks,
)
from curlora.run.atomic import atomic_write_text

log = logging.getLogger("curlora")
FIGURE = "words_forgetting.png"
GRID_FILE = "grid.yaml"
SUMMARY_FILE = "summary.md"
# Keys every grid.yaml that curlora-reproduce writes holds (its last ones among them).
GRID_KEYS = ("name", "seeds", "ranks", "lrs", "selection", "margins", "bootstrap")


class ZeroShotRun(GridRun):
    """A run seen through its evaluation before training: its "accuracy right after each
    task" is the zero-shot accuracy, so it is the words protocol's control column."""

    def diagonal(self) -> list[float | None]:
        return list(self.results["initial_accuracy"])


def read_grid(grid_file: Path) -> dict:
    """``grid.yaml`` as a mapping; ``{}`` (with a warning naming the file) when it cannot be
    read, so the report falls back to its defaults rather than failing."""
    try:
        # a regular file only: a FIFO would hang the report, a link redirect it (OSError)
        grid = yaml.safe_load(read_text(grid_file)) or {}
    except FileNotFoundError:
        return {}
    # ValueError: not UTF-8, or an int past Python's digit limit; RecursionError: nesting
    except (OSError, yaml.YAMLError, ValueError, RecursionError) as error:
        why = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        log.warning("%s is damaged (%s); the report uses its defaults", shown(grid_file), why)
        return {}
    if not isinstance(grid, dict):
        log.warning("%s is damaged (not a mapping); the report uses its defaults", grid_file)
        return {}
    if missing := [key for key in GRID_KEYS if key not in grid]:
        # curlora-reproduce writes every one of them: a file cut short lost its last ones.
        log.warning("%s is damaged (no %s); the report uses its defaults", grid_file, missing)
        return {}
    return grid


def is_words_grid(grid: dict) -> bool:
    """Whether ``grid`` (``grid.yaml``) is a words-protocol grid (the zero-shot control)."""
    return grid.get("control") == "zero_shot"


def _references(grid: dict) -> tuple[str, list[str]]:
    refs = grid.get("references") or {}
    if not isinstance(refs, dict):
        return "lora", []
    return str(refs.get("method", "lora")), [str(s) for s in refs.get("strategies") or []]


def _overrides_text(overrides: Sequence[str]) -> str:
    return ", ".join(f"`{o}`" for o in overrides) or "none listed"


def _checks_text(
    checks: Sequence[ProtocolCheck],
    damaged: str | None,
    runs: Sequence[GridRun],
    runs_dir: Path,
    method: str,
    fallback_overrides: Sequence[str] = (),
    margin: float = 0.02,
) -> list[str]:
    lines = ["## The protocol check: is forgetting measurable here?", ""]
    checked = []
    for protocol, fallback in (("first", False), ("fallback", True)):
        mine = protocol_runs(runs, runs_dir, fallback)
        if mine and any(r.method == method for r in mine):
            checked += [
                (protocol, r) for r in mine if r.method == method and r.strategy == "sequential"
            ]
            lines += [
                f"Sequential {method}'s runs under the {protocol} protocol (all-task BWT, "
                "per run; the task's majority rate and the zero-shot accuracy below them):",
                "",
                check_runs_table(mine, method),
                "",
            ]
    lines += exact_match_note(checked, margin)
    if damaged:
        return [*lines, f"Not shown: {damaged}.", ""]
    if not checks:
        return [*lines, "Not decided yet: the check's runs have not all completed.", ""]
    lines += [
        f"Rule (fixed before any run): `{RULE}`, on sequential {checks[0].method}'s all-task "
        "BWT at its rate chosen on validation, intervals over seeds and test examples. The "
        "interval is mean ± t(n − 1) · √(s² / n + v), with s the std over seeds and v the "
        "bootstrap variance of the mean over test examples: conservative, since t(n − 1) "
        "also scales v and s² already holds part of the test examples' noise.",
        "",
    ]
    lines += [f"- {check.line()}" for check in checks]
    lines += ["", _protocol_status(checks, method, fallback_overrides), ""]
    return lines


def _protocol_status(
    checks: Sequence[ProtocolCheck], method: str, fallback_overrides: Sequence[str]
) -> str:
    """Which protocol the rest of the grid runs under, and what is still to be decided."""
    if active_protocol(checks) == "first":
        return "The rest of the grid runs under the first protocol."
    text = (
        "The rest of the grid runs under the fallback protocol "
        "(`protocol_check.fallback_overrides`, written in the config before any run: "
        f"{_overrides_text(fallback_overrides)}), its jobs under `runs/fallback/`."
    )
    second = [c for c in checks if c.protocol == "fallback"]
    if not second:
        return (
            f"{text} Its own check decides when {method}'s whole rate grid there has "
            "completed. If it does not resolve forgetting either, the grid still goes on "
            "under the fallback protocol (the config fixes no third one), and the headline "
            f"question is then asked where sequential {method}'s own forgetting was not "
            "resolved beyond the margin."
        )
    if not second[0].measurable:
        return (
            f"{text} Neither check resolved forgetting: the headline question below is asked "
            f"where sequential {method}'s own forgetting was not resolved beyond the margin, "
            "so a verdict of no difference there says little about forgetting."
        )
    return text


def exact_match_note(runs: Sequence[tuple[str, GridRun]], margin: float) -> list[str]:
    """Where em-BWT says something acc-BWT does not, over ``(protocol, run)`` pairs. On a
    task already trained, the exact match can fall below the accuracy only when the top
    token leaves the task's label words; the runs where it does by more than ``margin`` are
    named (with their protocol when the runs span two) with the task and point of the
    largest gap. In the others em-BWT is within about ``margin`` of acc-BWT."""
    words = [(p, r) for p, r in runs if r.answers_in_words]
    if not words:
        return []
    order = {"first": 0, "fallback": 1}
    named = len({p for p, _ in words}) > 1  # "lr 0.003 seed 1313" alone would be ambiguous
    differ = []
    for protocol, run in sorted(words, key=lambda pr: (order.get(pr[0], 2), pr[1].lr, pr[1].seed)):
        acc, em = run.score_rows("acc")[1:], run.score_rows("em")[1:]  # after each task
        gaps = [  # (acc − em, after task i, on task j), for tasks j trained by then
            (row_a[j] - row_e[j], i, j)
            for i, (row_a, row_e) in enumerate(zip(acc, em, strict=True))
            for j in range(i + 1)
            if row_a[j] is not None and row_e[j] is not None
        ]
        gap, i, j = max(gaps, default=(0.0, 0, 0))
        if gap > margin:
            where = f"{protocol} protocol, " if named else ""
            differ.append(
                f"{where}lr {run.lr:g} seed {run.seed}: {run.tasks[j]} after {run.tasks[i]}, em "
                f"{em[i][j]:.3f} against acc {acc[i][j]:.3f}"
            )
    same = (
        f"On the tasks already trained, exact match stays within {margin:g} of accuracy in "
        f"{len(words) - len(differ)} of the {len(words)} runs above: the top token was the "
        "chosen label word's, so em-BWT adds little to acc-BWT there (before training it is "
        "not: the zero-shot em is in the tables)."
    )
    if not differ:
        return [same, ""]
    return [
        f"{same} In the other {len(differ)} the top token left the task's label words "
        "(largest gap: "
        + "; ".join(differ)
        + "): its top answer is no longer one of that task's words (another task's, for "
        "instance), which acc, choosing among the task's own words, does not see.",
        "",
    ]


def check_runs_table(runs: Sequence[GridRun], method: str) -> str:
    """Every run of the checked method in one protocol, rate by rate and seed by seed: the
    evidence the check reads (each run's stored numbers, no interval)."""
    rows = []
    for run in sorted(
        (r for r in runs if r.method == method and r.strategy == "sequential"),
        key=lambda r: (r.lr, r.seed),
    ):
        # The run's own all-task BWTs (results.json): mean_{j<T} R[T][j] − R[j][j].
        acc = run.results["metrics"].get("bwt")
        em = (run.results.get("head") or {}).get("exact_match_bwt")
        ratio = run.ppl_ratio()
        rows.append(
            [
                f"{run.lr:g}",
                str(run.seed),
                " / ".join("-" if v is None else f"{v:.3f}" for v in run.diagonal()),
                "-" if acc is None else f"{acc:+.3f}",
                "-" if em is None else f"{em:+.3f}",
                "-" if ratio is None else f"×{ratio:.3f}",
            ]
        )
    if not rows:
        return "No completed run of the check yet."
    checked = [r for r in runs if r.method == method]
    majority = checked[0].results["majority_baseline"]
    rows.append(["majority", "-", " / ".join(f"{m:.3f}" for m in majority), "-", "-", "-"])
    rows.append(["zero-shot", "-", _zero_shot_text(checked), "-", "-", "-"])
    tasks = " / ".join(runs[0].tasks)
    return markdown(
        ["lr", "seed", f"acc right after each task ({tasks})", "acc-BWT", "em-BWT", "ppl ratio"],
        rows,
    )


def selection_note(runs: Sequence[GridRun], rules: Rules) -> list[str]:
    """What the rate choice rests on: the seeds the rule compared (fewer than the grid's
    seeds: provisional) and the validation carves' majority rates (what a score near them
    means)."""
    lines = []
    for method in sorted({r.method for r in runs}):
        mine = [r for r in runs if r.method == method]
        by_lr: dict[float, set[int]] = {}
        for run in mine:
            by_lr.setdefault(run.lr, set()).add(run.seed)
        common = set.intersection(*by_lr.values())
        if len(common) < len(rules.seeds):
            lines.append(
                f"- {method}: decided on seed(s) {', '.join(map(str, sorted(common))) or '-'} "
                f"of {len(rules.seeds)}, the seeds every rate has finished: provisional."
            )
    carved = [r.results["validation"] for r in runs if r.results.get("validation")]
    validation = carved[0] if carved else None
    if validation and validation.get("majority_baseline"):
        rates = " / ".join(f"{m:.2f}" for m in validation["majority_baseline"])
        lines.append(
            f"- The validation carves' majority rates ({' / '.join(runs[0].tasks)}): {rates} "
            "(the score is the mean final accuracy over them)."
        )
    return [*lines, ""] if lines else []


def _zero_shot_text(runs: Sequence[GridRun]) -> str:
    """The evaluation before training (the same for every run of a grid: one base model),
    acc and, under head=words, em; means over ``runs``."""
    acc = np.mean([r.score_rows("acc")[0] for r in runs], axis=0)
    text = " / ".join(f"{v:.3f}" for v in acc)
    em_rows = [r.score_rows("em")[0] for r in runs if r.answers_in_words]
    if em_rows:
        text += " (em " + " / ".join(f"{v:.3f}" for v in np.mean(em_rows, axis=0)) + ")"
    return text


def active_protocol(checks: Sequence[ProtocolCheck]) -> str:
    """``first`` unless the first check found forgetting not measurable."""
    first = [c for c in checks if c.protocol == "first"]
    return "first" if not first or first[0].measurable else "fallback"


def _row(
    label: str, setting: Setting, rules: Rules, tasks: Sequence[str], shared: Sequence[str]
) -> list[str]:
    diag = " / ".join(
        str(setting.summary(lambda r, j=j: r.diagonal()[j])) for j in range(len(tasks))
    )
    acc = bwt_summary(rules, setting, None)
    em = bwt_summary(rules, setting, None, score="em")
    ratio = ppl_summary(setting)
    kept = ratio_summary(rules, setting)
    row = [
        label,
        ",".join(str(s) for s in sorted(setting.runs)),
        diag,
        str(final_average_accuracy(setting)),
        f"{acc} {interval_text(acc)}",
        f"{em} {interval_text(em)}",
        f"{ratio} {interval_text(ratio)}",
        f"{kept} {interval_text(kept)}" if kept.n else "-",
    ]
    if shared:
        apart = ratio_summary(rules, setting, shared)
        row.append(f"{apart} {interval_text(apart)}" if apart.n else "-")
    return row


def table_two(
    settings: Sequence[Setting], references: Sequence[Setting], zero_shot: Setting, rules: Rules
) -> str:
    tasks = settings[0].tasks
    majority = " / ".join(f"{m:.3f}" for m in settings[0].majority)
    every = [*settings, *references]
    shared = sorted(shared_answer_tasks([r for s in every for r in s.runs.values()]))
    rows = [_row(s.label, s, rules, tasks, shared) for s in every]
    floor = _zero_shot_text(list(zero_shot.runs.values()))
    rows.append(["zero-shot (before training)", "-", floor, *["-"] * (5 + bool(shared))])
    header = [
        "setting",
        "seeds",
        f"acc right after each task ({' / '.join(tasks)}; majority {majority})",
        "final average acc",
        "acc-BWT, all tasks (95 % CI)",
        "em-BWT, all tasks (95 % CI)",
        "perplexity ratio (geometric mean, 95 % CI)",
        "retention ratio (final / initial, 95 % CI)",
    ]
    if shared:
        header.append(f"retention ratio without {', '.join(shared)} (95 % CI)")
    return markdown(header, rows)


def plot_curves(settings: Sequence[Setting], out: Path) -> Path:
    """Each method's accuracy and exact match on the first task (mean over seeds) at every
    evaluation point: the forgetting curves (``words_forgetting.png``)."""
    fig = Figure(figsize=(9, 3.6))
    tasks = settings[0].tasks
    points = ["before", *(f"after {t}" for t in tasks)]
    for k, (score, name) in enumerate((("acc", "accuracy"), ("em", "exact match"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for setting in settings:
            rows = [r.score_rows(score) for r in setting.runs.values()]
            rows = [r for r in rows if r and all(row[0] is not None for row in r)]
            if rows:
                curve = np.mean([[row[0] for row in r] for r in rows], axis=0)  # [T + 1]
                ax.plot(points, curve, marker="o", label=f"{setting.label}, n = {len(rows)}")
        # The first task's majority rate: the floor a rank classifier reaches by always
        # answering one class ("before" is the zero-shot point of every curve).
        ax.axhline(settings[0].majority[0], color="grey", linestyle="--", linewidth=1)
        ax.text(0, settings[0].majority[0] + 0.01, "majority", color="grey", fontsize=7)
        ax.set_title(f"{tasks[0]}: {name}")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=20)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out / FIGURE)


def write_words_report(
    root: Path, report_dir: Path, grid_name: str, command: str, grid: dict
) -> Path:
    """``REPORT.md``, ``summary.md`` and ``words_forgetting.png`` in ``report_dir`` from the
    words grid stored below ``root`` (its ``grid.yaml`` read as ``grid``); returns the
    report's path."""
    store, out = Path(root), Path(report_dir)
    grid_file = store / GRID_FILE
    damaged = None
    try:
        checks = read_checks(store)
    except DamagedCheck as error:
        log.warning("%s", error)
        checks, damaged = [], str(error)
    protocol = active_protocol(checks)
    stored = load_grid(store)
    runs = protocol_runs(stored, store / RUNS, fallback=protocol == "fallback")
    # one protocol's runs are the ones paired (the other's may have other splits)
    leave_out_odd_row_counts(runs)
    rules = Rules.read(grid_file)
    rate_grid = lr_grid_runs(runs, rules)  # what the rate choice and the frontier read
    lrs = choose_learning_rates(rate_grid)
    rank = rules.ranks[0] if rules.ranks else 16
    settings = table_settings(runs, lrs, rules.headline_methods, [rank])
    unused = left_out_lines(rules, runs, store)
    parts = [f"# Reproduction: {grid_name}", "", f"Command: `{command}`", "", *unused]
    check_config = grid.get("protocol_check") or {}
    checked = str(check_config.get("method", "lora"))
    fallback = [str(o) for o in check_config.get("fallback_overrides") or []]
    parts += _checks_text(
        checks, damaged, stored, store / RUNS, checked, fallback, rules.accuracy_margin
    )
    if not settings:
        parts.append("No completed run of a headline method at its chosen rate yet.")
        summary = f"`{grid_name}`: no completed run yet.\n"
        if checks:
            going_on = (
                f"; {_fallback_status(checks, fallback, checked)}" if protocol == "fallback" else ""
            )
            summary = f"`{grid_name}`: {checks[-1].line()}{going_on}; no headline run yet.\n"
        atomic_write_text(out / SUMMARY_FILE, summary)
        return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")
    method, strategies = _references(grid)
    references = [
        Setting(f"{method} + {strategy} (lr {lrs[method]:g})", by_seed(chosen), method, rank)
        for strategy in strategies
        if method in lrs
        and (
            chosen := [
                r
                for r in runs
                if r.method == method and r.strategy == strategy and r.lr == lrs[method]
            ]
        )
    ]
    every = [r for s in settings for r in s.runs.values()]
    zero_shot = Setting("zero-shot", {r.seed: ZeroShotRun(r.path, r.results) for r in every})
    learned, notes = learned_tasks(settings, zero_shot, rules.accuracy_margin)
    rows = question_rows(rules, settings, learned, exact_match=True)
    rows += retention_rows(rules, settings)
    suite_lines, suite_rows = retention_section(rules, settings, references)
    rows += suite_rows
    tasks = settings[0].tasks
    frontier_lines, frontier_summary = frontier_section(rate_grid, learned, rank, out)
    planned = _planned(grid)
    status = f"{len(runs)} completed runs" + (f" of the {planned} planned" if planned else "")
    if protocol == "fallback":
        first = len(protocol_runs(stored, store / RUNS, fallback=False))
        status += f" under the fallback protocol (besides the first protocol's {first})"
    unfinished = planned is not None and len(runs) < planned
    parts += [
        "## What ran",
        "",
        status
        + (
            " — **the grid is not finished: every number below is provisional**"
            if unfinished
            else ""
        )
        + ". Accuracy (acc) is rank classification among each task's label words; exact match "
        "(em) is the whole vocabulary's top token being the right word's first token.",
        "",
        "## Learning rates chosen on validation",
        "",
        selection_table(rate_grid, lrs),
        "",
        *selection_note(rate_grid, rules),
        "## The question: does CURLoRA forget less than LoRA when the model answers in words?",
        "",
        "Paired by seed (and by test example). BWT difference > 0: CURLoRA forgets less; "
        "log perplexity-ratio difference < 0: CURLoRA's language model drifts less. Tasks "
        "counted in the learned-task BWT (learned: above the majority rate and the zero-shot "
        f"accuracy by {rules.accuracy_margin:g}; the last task has no BWT): "
        f"{bwt_task_names(tasks, learned)}"
        + (f"; not learned: {'; '.join(notes)}" if notes else "")
        + ".",
        "",
        markdown(["question", "answer", "numbers"], rows) if rows else "No pair to compare yet.",
        "",
        "## Table 2",
        "",
        table_two(settings, references, zero_shot, rules),
        "",
        "mean ± std over seeds; intervals over seeds and test examples, none below "
        f"{MIN_SEEDS} seeds (a t-interval on 2 seeds, t(1) = 12.7, says nothing). The "
        "zero-shot row's em is the exact match before training.",
        "",
        f"![forgetting curves]({FIGURE})",
        "",
        *frontier_lines,
        *suite_lines,
    ]
    plot_curves([*settings, *references], out)
    summary = [f"`{grid_name}` ({status}{', provisional' if unfinished else ''}):", "", *unused]
    summary += [f"- {c.line()}" for c in checks] or [
        "- protocol check: not decided yet (it decides when the checked method's whole rate "
        "grid has completed)"
    ]
    if protocol == "fallback":
        summary.append(f"- {_fallback_status(checks, fallback, checked)}")
    summary += [""]
    if rows:
        summary += [markdown(["question", "answer", "numbers"], rows), ""]
    summary += frontier_summary
    atomic_write_text(out / SUMMARY_FILE, "\n".join(summary))
    return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")


def _fallback_status(checks: Sequence[ProtocolCheck], fallback: Sequence[str], checked: str) -> str:
    """The summary's words for a grid under the fallback protocol: its overrides, and what
    its own check decided (or that it has not yet)."""
    text = f"the grid goes on under the fallback protocol ({_overrides_text(fallback)})"
    second = [c for c in checks if c.protocol == "fallback"]
    if not second:
        return (
            f"{text}; its protocol check decides when {checked}'s whole rate grid there has "
            "completed"
        )
    if not second[0].measurable:
        return (
            f"{text}; neither check resolved sequential {checked}'s forgetting, so a headline "
            "verdict of no difference there says little about forgetting"
        )
    return text


def _planned(grid: dict) -> int | None:
    """The runs the words grid plans: the rate grid (with the check), the extra headline
    seeds and the references."""
    try:
        seeds, ranks = len(grid["seeds"]), len(grid["ranks"])
        rate_grid = sum(len(v) for v in grid["lrs"].values()) * ranks * seeds
        extra = [s for s in grid.get("headline_seeds") or [] if s not in grid["seeds"]]
        headline = len(extra) * len(grid.get("headline_methods") or [])
        refs = len((grid.get("references") or {}).get("strategies") or []) * seeds
    except (KeyError, TypeError, AttributeError):
        return None
    return rate_grid + headline + refs
