"""REPORT.md of a reproduction grid (``curlora-reproduce``): Table 1, verdicts, frontier.

Reads every ``results.json`` below the grid directory and writes, beside them:

- **Table 1** in the paper's layout: rows are the perplexity before training, each task's
  accuracy after each stage and the final perplexity; columns are the methods (at the
  learning rate chosen on validation) × ranks, then ``head_only`` and the majority-class
  rate. Cells are mean ± std over seeds; ``†`` marks a mean at or below the majority rate
  + 0.01, ``‡`` a cell where some seed predicted one class for ≥ 95 % of the split.
- **Verdicts** on the paper's claims C1–C4 and on C5 (ours), each "holds", "does not hold"
  or "inconclusive" from the numbers and their 95 % intervals over seeds (margins below).
- **The stability–plasticity frontier**: each method over its learning-rate grid,
  plasticity (mean gain over ``head_only`` right after each task, paired by seed) against
  stability (perplexity ratio; BWT), as ``frontier.png`` and a table, and the comparison
  at equal plasticity where two methods' ranges overlap.
- **The sampling ablation**: CURLoRA's column/row sampling modes at its chosen rate.

Forgetting is counted only on tasks learned above both controls (the majority rate and
``head_only``); tasks that were not are named.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import yaml

from curlora.atomic import atomic_write_text
from curlora.reporting.claims import ACCURACY_MARGIN, PPL_MARGIN, inert_methods, verdicts
from curlora.reporting.frontier import equal_plasticity, frontier_points, plot_frontier
from curlora.reporting.grid import (
    GridRun,
    Setting,
    choose_learning_rates,
    default_sampling,
    load_grid,
    table_settings,
)
from curlora.reporting.stats import summarize

__all__ = ["choose_learning_rates", "load_grid", "write_report"]


def _cell(setting: Setting, i: int, j: int, tasks: Sequence[str], majority: float) -> str:
    summary = setting.summary(lambda r: r.results["accuracy_matrix"][i][j])
    flags = "†" if summary.n and summary.mean <= majority + 0.01 else ""
    one_class = sum(r.one_class(tasks[j], tasks[i]) for r in setting.runs.values())
    if one_class:
        flags += f"‡{one_class}/{summary.n}"
    return f"{summary}{flags}"


def table_one(settings: Sequence[Setting]) -> str:
    any_run = next(iter(settings[0].runs.values()))
    tasks, majority = any_run.tasks, any_run.results["majority_baseline"]
    header = ["", *(f"{s.label}, {len(s.runs)} seed(s)" for s in settings), "majority"]
    rows = [
        [
            "perplexity before training",
            *(str(s.summary(lambda r: r.results["perplexity"]["initial"])) for s in settings),
            "",
        ]
    ]
    for i, trained in enumerate(tasks):
        for j in range(i + 1):
            cells = [_cell(s, i, j, tasks, majority[j]) for s in settings]
            rows.append([f"after {trained}: {tasks[j]} accuracy", *cells, f"{majority[j]:.3f}"])
    rows.append(
        [
            f"perplexity after {tasks[-1]}",
            *(
                str(s.summary(lambda r: r.results["perplexity"]["after_task"][-1]))
                for s in settings
            ),
            "",
        ]
    )
    for name, key in (("perplexity ratio", "ppl_ratio_final"), ("BWT (all tasks)", "bwt")):
        rows.append(
            [
                name,
                *(str(s.summary(lambda r, k=key: r.results["metrics"][k])) for s in settings),
                "",
            ]
        )
    return _markdown(header, rows)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sampling_table(runs: Sequence[GridRun], lrs: dict[str, float]) -> str | None:
    if "curlora" not in lrs:
        return None
    chosen = [r for r in runs if r.method == "curlora" and math.isclose(r.lr, lrs["curlora"])]
    modes = sorted({r.sampling or "inverted" for r in chosen})
    if len(modes) < 2:
        return None
    tasks = chosen[0].tasks
    rows = []
    for mode in modes:
        mine = [r for r in chosen if (r.sampling or "inverted") == mode]
        diag = [str(summarize(r.diagonal()[j] for r in mine)) for j in range(len(tasks))]
        rows.append(
            [
                mode,
                str(len(mine)),
                *diag,
                str(summarize(r.results["metrics"]["bwt"] for r in mine)),
                str(summarize(r.ppl_ratio() for r in mine)),
            ]
        )
    return _markdown(
        [
            "sampling",
            "seeds",
            *(f"{t} after own training" for t in tasks),
            "BWT",
            "perplexity ratio",
        ],
        rows,
    )


def planned_runs(grid_file: Path) -> int | None:
    """How many runs the grid in ``grid.yaml`` (written by curlora-reproduce) asks for."""
    try:
        grid = yaml.safe_load(grid_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return None
    if not isinstance(grid, dict) or not {"seeds", "ranks", "lrs"} <= set(grid):
        return None  # damaged: the report says only how many runs completed
    seeds, ranks = len(grid["seeds"]), len(grid["ranks"])
    adapters = sum(len(lrs) for lrs in grid["lrs"].values()) * ranks
    sampling = len(grid.get("sampling") or []) * ranks if "curlora" in grid["lrs"] else 0
    return seeds * (len(grid.get("controls") or []) + adapters + sampling)


def write_report(root: Path, grid_name: str, command: str) -> Path:
    """Write ``REPORT.md`` (and ``frontier.png``) in ``root``; returns the report's path."""
    runs = load_grid(root)
    lrs = choose_learning_rates(runs)
    settings = table_settings(runs, lrs)
    parts = [f"# Reproduction: {grid_name}", "", f"Command: `{command}`", ""]
    if not settings:
        parts.append("No completed run yet.")
        return atomic_write_text(Path(root) / "REPORT.md", "\n".join(parts) + "\n")
    wall = sum(_elapsed(r.path) for r in runs)
    planned = planned_runs(Path(root) / "grid.yaml")
    of_planned = f" of the {planned} the grid plans" if planned else ""
    parts += [
        f"{len(runs)} completed runs{of_planned}; their wall time adds up to "
        f"{wall / 3600:.1f} h."
        + (
            " The grid is not finished: numbers over fewer seeds than planned are "
            "provisional, and one seed has no interval."
            if planned and len(runs) < planned
            else ""
        ),
        "",
        "## Learning rates chosen on validation",
        "",
        "Each method's rate is the one with the best mean final average accuracy on the "
        "validation carves of the training data (never the test split):",
        "",
        _markdown(
            ["method", "lr", "validation accuracy by lr (mean over seeds)"],
            _selection_rows(runs, lrs),
        ),
        "",
        "## Table 1",
        "",
        "Mean ± std over seeds. † at or below the majority rate + 0.01; ‡k/n: k of n seeds "
        "predicted one class for ≥ 95 % of the split.",
        "",
        table_one(settings),
        "",
        "## Verdicts on the claims",
        "",
        f'Rules: "keeps"/"matches" means within {ACCURACY_MARGIN} accuracy; a perplexity is '
        f"kept below a ratio of {PPL_MARGIN}; a verdict holds when the 95 % interval over "
        "seeds lies entirely on its side, does not hold when it lies entirely on the other, "
        "and is inconclusive otherwise. Forgetting (BWT) counts only tasks learned above both "
        "controls; differences between methods are paired by seed.",
        "",
        _markdown(["claim", "verdict", "numbers"], verdicts(settings)),
        "",
    ]
    inert = inert_methods(settings)
    if inert:
        parts += [f"Warning (inert adapter): {', '.join(inert)} beat head_only on no task.", ""]
    points = frontier_points(runs)
    if points:
        plot_frontier(points, Path(root) / "frontier.png")
        parts += [
            "## Stability–plasticity frontier",
            "",
            "![frontier](frontier.png)",
            "",
            _markdown(
                ["method", "lr", "plasticity (gain over head_only)", "BWT", "perplexity ratio"],
                [
                    [
                        p["method"],
                        f"{p['lr']:g}",
                        str(p["plasticity"]),
                        str(p["bwt"]),
                        str(p["ppl_ratio"]),
                    ]
                    for p in points
                ],
            ),
            "",
            "At equal plasticity:",
            "",
            *equal_plasticity(points),
            "",
        ]
    sampling = sampling_table(runs, lrs)
    if sampling:
        parts += ["## CURLoRA sampling ablation", "", sampling, ""]
    return atomic_write_text(Path(root) / "REPORT.md", "\n".join(parts) + "\n")


def _selection_rows(runs: Sequence[GridRun], lrs: dict[str, float]) -> list[list[str]]:
    rows = []
    for method, lr in sorted(lrs.items()):
        scores: dict[float, list[float]] = defaultdict(list)
        for r in runs:
            value = r.final_validation_accuracy()
            if r.method == method and default_sampling(r) and value is not None:
                scores[r.lr].append(value)
        listing = ", ".join(f"{k:g}: {summarize(v)}" for k, v in sorted(scores.items()))
        rows.append([method, f"{lr:g}", listing])
    return rows


def _elapsed(run_dir: Path) -> float:
    from curlora.reporting.console import wall_time

    return wall_time(run_dir) or 0.0
