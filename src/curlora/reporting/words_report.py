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
- the four methods' **forgetting curves** (``words_forgetting.png``).
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
from curlora.reporting.plots import save_figure
from curlora.reporting.protocol_check import (
    RULE,
    DamagedCheck,
    ProtocolCheck,
    protocol_runs,
    read_checks,
)
from curlora.reporting.tables import final_average_accuracy, markdown, selection_table
from curlora.reporting.words_retention import (
    retention_ratio,
    retention_rows,
    retention_section,
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
        grid = yaml.safe_load(Path(grid_file).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        log.warning("%s is damaged (%s); the report uses its defaults", grid_file, error)
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
) -> list[str]:
    lines = ["## The protocol check: is forgetting measurable here?", ""]
    for protocol, fallback in (("first", False), ("fallback", True)):
        mine = protocol_runs(runs, runs_dir, fallback)
        if mine and any(r.method == method for r in mine):
            lines += [
                f"Sequential {method}'s runs under the {protocol} protocol (all-task BWT, "
                "per run):",
                "",
                check_runs_table(mine, method),
                "",
            ]
    if damaged:
        return [*lines, f"Not shown: {damaged}.", ""]
    if not checks:
        return [*lines, "Not decided yet: the check's runs have not all completed.", ""]
    lines += [
        f"Rule (fixed before any run): `{RULE}`, on sequential {checks[0].method}'s all-task "
        "BWT at its rate chosen on validation, intervals over seeds and test examples.",
        "",
    ]
    lines += [f"- {check.line()}" for check in checks]
    active = active_protocol(checks)
    lines += [
        "",
        "The rest of the grid ran under the "
        + (
            "first protocol."
            if active == "first"
            else "fallback protocol (`protocol_check.fallback_overrides`, written in the "
            f"config before any run: {_overrides_text(fallback_overrides)}), its jobs under "
            "`runs/fallback/`."
        ),
        "",
    ]
    return lines


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
    tasks = " / ".join(runs[0].tasks)
    return markdown(
        ["lr", "seed", f"acc right after each task ({tasks})", "acc-BWT", "em-BWT", "ppl ratio"],
        rows,
    )


def active_protocol(checks: Sequence[ProtocolCheck]) -> str:
    """``first`` unless the first check found forgetting not measurable."""
    first = [c for c in checks if c.protocol == "first"]
    return "first" if not first or first[0].measurable else "fallback"


def _row(label: str, setting: Setting, rules: Rules, tasks: Sequence[str]) -> list[str]:
    diag = " / ".join(
        str(setting.summary(lambda r, j=j: r.diagonal()[j])) for j in range(len(tasks))
    )
    acc = bwt_summary(rules, setting, None)
    em = bwt_summary(rules, setting, None, score="em")
    ratio = ppl_summary(setting)
    kept = setting.summary(retention_ratio)
    return [
        label,
        ",".join(str(s) for s in sorted(setting.runs)),
        diag,
        str(final_average_accuracy(setting)),
        f"{acc} {acc.interval()}",
        f"{em} {em.interval()}",
        f"{ratio} {ratio.interval()}",
        f"{kept} {kept.interval()}" if kept.n else "-",
    ]


def table_two(
    settings: Sequence[Setting], references: Sequence[Setting], zero_shot: Setting, rules: Rules
) -> str:
    tasks = settings[0].tasks
    majority = " / ".join(f"{m:.3f}" for m in settings[0].majority)
    rows = [_row(s.label, s, rules, tasks) for s in [*settings, *references]]
    floor = [
        f"{zero_shot.summary(lambda r, j=j: r.diagonal()[j]).mean:.3f}" for j in range(len(tasks))
    ]
    rows.append(["zero-shot (before training)", "-", " / ".join(floor), "-", "-", "-", "-", "-"])
    return markdown(
        [
            "setting",
            "seeds",
            f"acc right after each task ({' / '.join(tasks)}; majority {majority})",
            "final average acc",
            "acc-BWT, all tasks (95 % CI)",
            "em-BWT, all tasks (95 % CI)",
            "perplexity ratio (geometric mean, 95 % CI)",
            "retention ratio (final / initial, 95 % CI)",
        ],
        rows,
    )


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
                ax.plot(points, curve, marker="o", label=setting.label)
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
    rules = Rules.read(grid_file)
    lrs = choose_learning_rates(lr_grid_runs(runs, rules))
    rank = rules.ranks[0] if rules.ranks else 16
    settings = table_settings(runs, lrs, rules.headline_methods, [rank])
    parts = [f"# Reproduction: {grid_name}", "", f"Command: `{command}`", ""]
    check_config = grid.get("protocol_check") or {}
    checked = str(check_config.get("method", "lora"))
    fallback = [str(o) for o in check_config.get("fallback_overrides") or []]
    parts += _checks_text(checks, damaged, stored, store / RUNS, checked, fallback)
    if not settings:
        parts.append("No completed run of a headline method at its chosen rate yet.")
        summary = f"`{grid_name}`: no completed run yet.\n"
        if checks:
            going_on = (
                f"; the grid goes on under the fallback protocol ({_overrides_text(fallback)})"
                if protocol == "fallback"
                else ""
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
    planned = _planned(grid)
    status = f"{len(runs)} completed runs" + (f" of the {planned} planned" if planned else "")
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
        selection_table(lr_grid_runs(runs, rules), lrs),
        "",
        "## The question: does CURLoRA forget less than LoRA when the model answers in words?",
        "",
        "Paired by seed (and by test example). BWT difference > 0: CURLoRA forgets less; "
        "log perplexity-ratio difference < 0: CURLoRA's language model drifts less. Learned "
        f"tasks (above the majority rate and the zero-shot accuracy by "
        f"{rules.accuracy_margin:g}): {bwt_task_names(tasks, learned)}"
        + (f"; not learned: {'; '.join(notes)}" if notes else "")
        + ".",
        "",
        markdown(["question", "answer", "numbers"], rows) if rows else "No pair to compare yet.",
        "",
        "## Table 2",
        "",
        table_two(settings, references, zero_shot, rules),
        "",
        f"![forgetting curves]({FIGURE})",
        "",
        *suite_lines,
    ]
    plot_curves([*settings, *references], out)
    summary = [f"`{grid_name}` ({status}{', provisional' if unfinished else ''}):", ""]
    summary += [f"- {c.line()}" for c in checks] or [
        "- protocol check: not decided yet (it decides when the checked method's whole rate "
        "grid has completed)"
    ]
    if protocol == "fallback":
        pending = not any(c.protocol == "fallback" for c in checks)
        summary.append(
            f"- the grid goes on under the fallback protocol ({_overrides_text(fallback)})"
            + (
                f"; its protocol check decides when {checked}'s whole rate grid there has completed"
                if pending
                else ""
            )
        )
    summary += [""]
    if rows:
        summary += [markdown(["question", "answer", "numbers"], rows), ""]
    atomic_write_text(out / SUMMARY_FILE, "\n".join(summary))
    return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")


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
