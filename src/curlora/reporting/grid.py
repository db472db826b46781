"""The runs of a reproduction grid, grouped as the report reads them.

``load_grid`` reads every completed ``results.json`` below a grid directory; a
:class:`GridRun` exposes what the report needs of one (method, rank, learning rate,
sampling, seed, the diagonal of its accuracy matrix, its validation accuracy);
``choose_learning_rates`` picks each method's rate on the validation carves; a
:class:`Setting` is one column of Table 1 (a method at a rank and its chosen rate, by seed).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from curlora.reporting.results import ResultsError, load_results
from curlora.reporting.stats import Outcomes, Summary, outcome_arrays, summarize
from curlora.reporting.untrusted import shown

# What a damaged JSON file a reader parses can raise: ValueError (not UTF-8, not JSON, an int
# past Python's digit limit), KeyError/TypeError (another shape), OverflowError (an int past
# float's range, 10**400, given to float()), RecursionError (nesting too deep to parse).
DAMAGED_JSON = (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError)

CONTROLS = ("head_only",)
log = logging.getLogger("curlora")


@dataclass(frozen=True)
class Rules:
    """What the grid fixed before its runs (``grid.yaml``): margins, the bootstrap, the
    headline methods and the parameter-matched controls."""

    accuracy_margin: float = 0.02
    ppl_margin: float = 1.05
    replicates: int = 2000
    bootstrap_seed: int = 0
    headline_methods: tuple[str, ...] = ("curlora", "lora", "lora_paper")
    matched_controls: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()
    seeds: tuple[int, ...] = ()
    selection: tuple[tuple[str, str], ...] = ()

    @classmethod
    def read(cls, grid_file: Path) -> Rules:
        """The rules in ``grid_file``; the defaults above where it is missing or silent."""
        path = Path(grid_file)
        try:
            grid = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            return cls()
        except (OSError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
            return cls._damaged(path, f"{type(error).__name__}: {' '.join(str(error).split())}")
        if not isinstance(grid, dict):
            return cls._damaged(path, f"a YAML {type(grid).__name__}, not a mapping")
        try:
            margins = grid.get("margins") or {}
            boot = grid.get("bootstrap") or {}
            return cls(
                accuracy_margin=float(margins.get("accuracy", cls.accuracy_margin)),
                ppl_margin=float(margins.get("ppl_ratio", cls.ppl_margin)),
                replicates=int(boot.get("replicates", cls.replicates)),
                bootstrap_seed=int(boot.get("seed", cls.bootstrap_seed)),
                headline_methods=tuple(grid.get("headline_methods") or cls.headline_methods),
                matched_controls=tuple(grid.get("matched_controls") or ()),
                ranks=tuple(int(r) for r in grid.get("ranks") or ()),
                seeds=tuple(int(r) for r in grid.get("seeds") or ()),
                # printed in the report as they are written: made safe to show
                selection=tuple(
                    (shown(k), shown(v)) for k, v in (grid.get("selection") or {}).items()
                ),
            )
        except (AttributeError, TypeError, ValueError, OverflowError) as error:
            return cls._damaged(path, f"{type(error).__name__}: {error}")

    @classmethod
    def _damaged(cls, path: Path, why: str) -> Rules:
        log.warning("%s is damaged (%s); using the default rules", shown(path), shown(why))
        return cls()


@dataclass(frozen=True, eq=False)
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
        """The method's sampling mode as the config names it (shown(): reports print it)."""
        sampling = self.results["config"]["method"].get("sampling")
        return None if sampling is None else shown(sampling)

    @property
    def strategy(self) -> str:
        """The continual-learning strategy's name (``sequential`` unless the run set one)."""
        target = shown((self.results["config"].get("strategy") or {}).get("_target_", ""))
        return target.split(".")[-2] if target.count(".") >= 2 else "sequential"

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

    @property
    def answers_in_words(self) -> bool:
        """Whether the run was head=words (the language model answered in words)."""
        return bool(self.results.get("head"))

    def score_rows(self, score: str = "acc") -> list[list[float | None]]:
        """The stored evaluation rows of ``score`` (before training, then after each task):
        ``acc`` (accuracy; rank classification under head=words) or ``em`` (head=words'
        whole-vocabulary exact match)."""
        if score == "em":
            head = self.results.get("head") or {}
            if not head:
                return []
            return [head["initial_exact_match"], *head["exact_match_matrix"]]
        return [self.results["initial_accuracy"], *self.results["accuracy_matrix"]]

    def score_outcomes(self, score: str = "acc") -> Outcomes | None:
        """Per-example outcomes of ``score`` (see :meth:`score_rows`), None when not recorded."""
        return self.outcomes if score == "acc" else self.exact_match_outcomes

    @functools.cached_property
    def outcomes(self) -> Outcomes | None:
        """Per-example outcomes at every evaluation point (``outcomes.json``), None when
        the run did not record them."""
        return self._outcomes("eval")

    @functools.cached_property
    def exact_match_outcomes(self) -> Outcomes | None:
        """head=words: per-example exact matches at every evaluation point, None when the
        run did not record them."""
        return self._outcomes("eval_exact_match")

    def _outcomes(self, key: str) -> Outcomes | None:
        path = self.path / "outcomes.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if key != "eval" and key not in data:
                return None
            return outcome_arrays({t: data[key][t] for t in self.tasks})
        except FileNotFoundError:
            return None
        except DAMAGED_JSON as error:
            log.warning(
                "%s is damaged (%s); the run counts as not recording its outcomes",
                shown(path),
                _why(error),
            )
            return None

    def elapsed_s(self) -> float:
        """The run's wall time as ``progress.json`` recorded it (0 when unknown)."""
        path = self.path / "progress.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            elapsed = float(data["elapsed_s"])
        except FileNotFoundError:
            return 0.0
        except DAMAGED_JSON as error:
            log.warning("%s is damaged (%s); its wall time counts as 0", shown(path), _why(error))
            return 0.0
        return elapsed if math.isfinite(elapsed) and elapsed >= 0 else 0.0

    def ppl_ratio(self) -> float | None:
        return self.results["metrics"]["ppl_ratio_final"]

    def one_class(self, task: str, after: str) -> bool:
        return any(
            w["reason"] == "single_class" and w["task"] == task and w["evaluated_after"] == after
            for w in self.results["warnings"]
        )


def _why(error: Exception) -> str:
    """The cause in one safe line (a KeyError's message is the file's own key)."""
    if isinstance(error, (KeyError, TypeError)):
        return shown(f"not the expected JSON object: {type(error).__name__}: {error}")
    return shown(f"{type(error).__name__}: {error}")


def load_grid(root: Path) -> list[GridRun]:
    """Every completed run below ``root`` (others are listed by the multirun summaries)."""
    runs = []
    for path in sorted(Path(root).rglob("results.json")):
        try:
            results = load_results(path)
        except ResultsError:
            continue
        if results["status"] != "completed":
            continue
        problem = _grid_fields_problem(results)
        if problem is not None:  # a received file: named, never a traceback in the report
            log.warning("%s is damaged (%s); left out of the report", shown(path), problem)
            continue
        runs.append(GridRun(path.parent, results))
    return runs


def _finite(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _grid_fields_problem(results: dict[str, Any]) -> str | None:
    """What a grid report reads beyond the results validator (the run's learning rate, its
    method section and final perplexity ratio), or None when those can be read."""
    config = results["config"]
    optimizer = config.get("optimizer")
    if not isinstance(optimizer, dict) or not _finite(optimizer.get("lr")):
        return "config.optimizer.lr is not a finite number"
    if not isinstance(config.get("method"), dict):
        return "config.method is not a mapping"
    ratio = (results.get("metrics") or {}).get("ppl_ratio_final")
    if ratio is not None and not isinstance(ratio, int | float):
        return "metrics.ppl_ratio_final is not a number"
    return None


def default_sampling(run: GridRun) -> bool:
    return run.sampling in (None, "inverted")


def lr_grid_runs(runs: Iterable[GridRun], rules: Rules) -> list[GridRun]:
    """The runs the learning-rate choice may read: the grid's seeds and ranks only (the
    extra headline seeds and the rank sweep run *at* the chosen rate, so counting them
    would favour it)."""
    return [
        r
        for r in runs
        if (not rules.seeds or r.seed in rules.seeds)
        and (not rules.ranks or r.rank is None or r.rank in rules.ranks)
        and r.strategy == "sequential"  # the references (replay, joint) choose nothing
    ]


def selection_scores(
    runs: Iterable[GridRun],
) -> dict[str, dict[float, dict[tuple[int, Any], float]]]:
    """method -> lr -> (seed, rank) -> final mean validation accuracy (default sampling,
    controls left out): every candidate's evidence for the learning-rate choice."""
    scores: dict[str, dict[float, dict[tuple[int, Any], float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for run in runs:
        value = run.final_validation_accuracy()
        if run.method in CONTROLS or not default_sampling(run) or value is None:
            continue
        scores[run.method][run.lr][(run.seed, run.rank)] = value
    return scores


def compared_on(by_lr: dict[float, dict[tuple[int, Any], float]]) -> set[tuple[int, Any]]:
    """The (seed, rank) pairs every candidate rate finished."""
    return set.intersection(*(set(v) for v in by_lr.values()))


def choose_learning_rates(runs: Iterable[GridRun]) -> dict[str, float]:
    """Per adapter method, the rate with the best mean final validation accuracy (over
    seeds and ranks; ties to the smaller rate). Controls and ablations take no part.

    Rates are compared on the (seed, rank) pairs that every candidate rate of the method
    finished, so a grid stopped part-way (or one that ran the chosen rate's seeds first)
    never compares a three-seed mean with a one-seed number; without such a pair, on all.
    """
    scores = selection_scores(runs)

    def best(by_lr: dict[float, dict[tuple[int, Any], float]]) -> float:
        common = compared_on(by_lr)

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
    method: str = ""
    rank: int | None = None
    lr: float | None = None

    @property
    def tasks(self) -> list[str]:
        return next(iter(self.runs.values())).tasks

    @property
    def majority(self) -> list[float]:
        return list(next(iter(self.runs.values())).results["majority_baseline"])

    def summary(self, value: Any) -> Summary:
        return summarize(value(run) for run in self.runs.values())


def table_settings(
    runs: Sequence[GridRun],
    lrs: dict[str, float],
    methods: Sequence[str] | None = None,
    ranks: Sequence[int] | None = None,
) -> list[Setting]:
    """The settings at the chosen rates (default sampling), by method and rank, then the
    controls; ``methods`` / ``ranks`` keep only those (None: every one found)."""
    settings = []
    found = sorted({r.method for r in runs if r.method in lrs})
    for method in [m for m in (methods or found) if m in found]:
        method_ranks = sorted({r.rank for r in runs if r.method == method and r.rank is not None})
        for rank in [k for k in method_ranks if ranks is None or k in ranks]:
            chosen = [
                r
                for r in runs
                if r.method == method
                and r.rank == rank
                and math.isclose(r.lr, lrs[method])
                and default_sampling(r)
                and r.strategy == "sequential"
            ]
            if chosen:
                settings.append(
                    Setting(
                        f"{method} r{rank} (lr {lrs[method]:g})",
                        by_seed(chosen),
                        method,
                        rank,
                        lrs[method],
                    )
                )
    for control in CONTROLS:
        controls = [r for r in runs if r.method == control]
        if controls:
            settings.append(Setting(control, by_seed(controls), control))
    return settings
