"""The runs of a reproduction grid, grouped as the report reads them.

``load_grid`` reads every completed ``results.json`` below a grid directory; a
:class:`GridRun` exposes what the report needs of one (method, rank, learning rate,
sampling, seed, the diagonal of its accuracy matrix, its validation accuracy);
``choose_learning_rates`` picks each method's rate on the validation carves; a
:class:`Setting` is one column of Table 1 (a method at a rank and its chosen rate, by seed).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curlora.reporting.results import ResultsError, load_results
from curlora.reporting.stats import Summary, summarize

CONTROLS = ("head_only",)


@dataclass(frozen=True)
class GridRun:
    """One finished job of the grid (decoded results.json)."""

    path: Path
    results: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.results["method"])

    @property
    def rank(self) -> int | None:
        return self.results["rank"]

    @property
    def seed(self) -> int:
        return int(self.results["seed"])

    @property
    def lr(self) -> float:
        return float(self.results["config"]["optimizer"]["lr"])

    @property
    def sampling(self) -> str | None:
        return self.results["config"]["method"].get("sampling")

    @property
    def tasks(self) -> list[str]:
        return list(self.results["tasks"])

    def diagonal(self) -> list[float | None]:
        """R[j][j]: each task's accuracy right after its own training."""
        matrix = self.results["accuracy_matrix"]
        return [matrix[j][j] for j in range(len(matrix))]

    def final_validation_accuracy(self) -> float | None:
        validation = self.results.get("validation")
        if not validation:
            return None
        row = validation["accuracy_matrix"][-1]
        return None if any(v is None for v in row) else sum(row) / len(row)

    def learned_bwt(self, learned: Sequence[int]) -> float | None:
        """mean over learned earlier tasks j of R[T-1][j] − R[j][j] (BWT on those)."""
        matrix = self.results["accuracy_matrix"]
        terms = [matrix[-1][j] - matrix[j][j] for j in learned if j < len(matrix) - 1]
        return sum(terms) / len(terms) if terms else None

    def ppl_ratio(self) -> float | None:
        return self.results["metrics"]["ppl_ratio_final"]

    def one_class(self, task: str, after: str) -> bool:
        return any(
            w["reason"] == "single_class" and w["task"] == task and w["evaluated_after"] == after
            for w in self.results["warnings"]
        )


def load_grid(root: Path) -> list[GridRun]:
    """Every completed run below ``root`` (others are listed by the multirun summaries)."""
    runs = []
    for path in sorted(Path(root).rglob("results.json")):
        try:
            results = load_results(path)
        except ResultsError:
            continue
        if results["status"] == "completed":
            runs.append(GridRun(path.parent, results))
    return runs


def default_sampling(run: GridRun) -> bool:
    return run.sampling in (None, "inverted")


def choose_learning_rates(runs: Iterable[GridRun]) -> dict[str, float]:
    """Per adapter method, the rate with the best mean final validation accuracy (over
    seeds and ranks; ties to the smaller rate). Controls and ablations take no part.

    Rates are compared on the (seed, rank) pairs that every candidate rate of the method
    finished, so a grid stopped part-way (or one that ran the chosen rate's seeds first)
    never compares a three-seed mean with a one-seed number; without such a pair, on all.
    """
    scores: dict[str, dict[float, dict[tuple[int, Any], float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for run in runs:
        value = run.final_validation_accuracy()
        if run.method in CONTROLS or not default_sampling(run) or value is None:
            continue
        scores[run.method][run.lr][(run.seed, run.rank)] = value

    def best(by_lr: dict[float, dict[tuple[int, Any], float]]) -> float:
        common = set.intersection(*(set(v) for v in by_lr.values()))

        def mean(lr: float) -> float:
            keys = common or set(by_lr[lr])
            return sum(by_lr[lr][k] for k in keys) / len(keys)

        return max(sorted(by_lr), key=mean)

    return {method: best(by_lr) for method, by_lr in scores.items()}


def by_seed(runs: Iterable[GridRun]) -> dict[int, GridRun]:
    return {run.seed: run for run in runs}


@dataclass
class Setting:
    """The runs of one column of Table 1: a method at a rank (and its chosen rate)."""

    label: str
    runs: dict[int, GridRun]

    def summary(self, value: Any) -> Summary:
        return summarize(value(run) for run in self.runs.values())


def table_settings(runs: Sequence[GridRun], lrs: dict[str, float]) -> list[Setting]:
    settings = []
    methods = sorted({r.method for r in runs if r.method in lrs})
    for method in methods:
        for rank in sorted({r.rank for r in runs if r.method == method and r.rank is not None}):
            chosen = [
                r
                for r in runs
                if r.method == method
                and r.rank == rank
                and math.isclose(r.lr, lrs[method])
                and default_sampling(r)
            ]
            if chosen:
                settings.append(Setting(f"{method} r{rank} (lr {lrs[method]:g})", by_seed(chosen)))
    for control in CONTROLS:
        found = [r for r in runs if r.method == control]
        if found:
            settings.append(Setting(control, by_seed(found)))
    return settings
