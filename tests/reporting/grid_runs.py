"""Fabricated grid runs for the verdict and table tests: accuracy matrices chosen by hand,
with per-example test outcomes consistent with them (no training)."""

from __future__ import annotations

import json
from pathlib import Path

from curlora.reporting.grid import GridRun, Rules, Setting

TASKS = ["a", "b", "c"]
ROWS = 1000  # test rows per task
RULES = Rules(replicates=400, bootstrap_seed=0)  # enough for these margins


def _outcome(accuracy: float) -> str:
    right = round(accuracy * ROWS)
    return "1" * right + "0" * (ROWS - right)


def grid_run(
    tmp: Path,
    method: str,
    seed: int,
    matrix: list[list[float]],
    ratio: float,
    rank: int = 16,
    sampling: str | None = None,
) -> GridRun:
    """A completed run: R[i][j] = ``matrix``, initial accuracies 0.5, the given perplexity
    ratio, and per-example outcomes consistent with the matrix (the first rows right)."""
    path = tmp / f"{method}-r{rank}-{sampling or 'default'}-{seed}"
    path.mkdir()
    initial = [0.5, 0.5, 0.5]
    outcomes = {
        t: [_outcome(initial[j]), *(_outcome(row[j]) for row in matrix)]
        for j, t in enumerate(TASKS)
    }
    (path / "outcomes.json").write_text(json.dumps({"eval": outcomes}))
    method_config = {"name": method, **({"sampling": sampling} if sampling else {})}
    results = {
        "method": method,
        "rank": rank,
        "seed": seed,
        "tasks": TASKS,
        "accuracy_matrix": matrix,
        "initial_accuracy": initial,
        "majority_baseline": [0.5, 0.5, 0.5],
        "metrics": {"ppl_ratio_final": ratio, "bwt": None},
        "perplexity": {"initial": 10.0, "after_task": [None, None, 10.0 * ratio]},
        "trainable_params": 100 * rank,
        "config": {"optimizer": {"lr": 1e-3}, "method": method_config},
        "warnings": [],
    }
    return GridRun(path, results)


def setting(method: str, runs: list[GridRun]) -> Setting:
    rank = runs[0].rank
    return Setting(method, {r.seed: r for r in runs}, method, rank, 1e-3)
