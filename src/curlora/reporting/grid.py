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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curlora.reporting.grid_rules import rules_problem
from curlora.reporting.named_entries import entries_named
from curlora.reporting.outcomes_check import eval_sizes, outcomes_problem
from curlora.reporting.regular_file import read_text
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
    headline methods and the parameter-matched controls. ``damaged``: why ``grid.yaml``
    could not be used, when these are the defaults in its place (a report says so)."""

    accuracy_margin: float = 0.02
    ppl_margin: float = 1.05
    replicates: int = 2000
    bootstrap_seed: int = 0
    headline_methods: tuple[str, ...] = ("curlora", "lora", "lora_paper")
    matched_controls: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()
    seeds: tuple[int, ...] = ()
    selection: tuple[tuple[str, str], ...] = ()
    damaged: str | None = field(default=None, compare=False)

    @classmethod
    def read(cls, grid_file: Path) -> Rules:
        """The rules in ``grid_file``; the defaults above where it is missing or silent.

        Every rule is checked before any is used (``curlora.reporting.grid_rules``): one
        that fails makes the file damaged, named in one warning with the key and what is
        valid, and the defaults stand in for all of them (``damaged`` says why)."""
        path = Path(grid_file)
        try:
            # a regular file only: a FIFO would hang the report, a link redirect it
            grid = yaml.safe_load(read_text(path)) or {}
        except FileNotFoundError:
            return cls()
        # ValueError: not UTF-8, or an int past Python's digit limit (PyYAML's int() of it)
        except (OSError, yaml.YAMLError, ValueError, RecursionError) as error:
            return cls._damaged(path, f"{type(error).__name__}: {' '.join(str(error).split())}")
        if not isinstance(grid, dict):
            return cls._damaged(path, f"a YAML {type(grid).__name__}, not a mapping")
        if (problem := rules_problem(grid)) is not None:
            return cls._damaged(path, problem)
        margins = grid.get("margins") or {}
        boot = grid.get("bootstrap") or {}
        return cls(
            accuracy_margin=float(margins.get("accuracy", cls.accuracy_margin)),
            ppl_margin=float(margins.get("ppl_ratio", cls.ppl_margin)),
            replicates=boot.get("replicates", cls.replicates),
            bootstrap_seed=boot.get("seed", cls.bootstrap_seed),
            headline_methods=tuple(grid.get("headline_methods") or cls.headline_methods),
            matched_controls=tuple(grid.get("matched_controls") or ()),
            ranks=tuple(grid.get("ranks") or ()),
            seeds=tuple(grid.get("seeds") or ()),
            # printed in the report as they are written: made safe to show
            selection=tuple((shown(k), shown(v)) for k, v in (grid.get("selection") or {}).items()),
        )

    @classmethod
    def _damaged(cls, path: Path, why: str) -> Rules:
        log.warning("%s is damaged (%s); using the default rules", shown(path), shown(why))
        return cls(damaged=shown(why))


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

    @property
    def outcomes(self) -> Outcomes | None:
        """Per-example outcomes at every evaluation point (``outcomes.json``), None when
        the run did not record them or they were left out (:attr:`outcomes_left_out`)."""
        return self._recorded[0].get("eval")

    @property
    def exact_match_outcomes(self) -> Outcomes | None:
        """head=words: per-example exact matches at every evaluation point, None when the
        run did not record them or they were left out (:attr:`outcomes_left_out`)."""
        return self._recorded[0].get("eval_exact_match")

    @property
    def outcomes_left_out(self) -> str | None:
        """Why this run's ``outcomes.json`` is not used (a warning named it), or None: used,
        or not recorded. The run's intervals are then over seeds alone, as for a run that
        recorded none."""
        return self._recorded[1]

    def leave_out_outcomes(self, why: str) -> None:
        """Use none of this run's outcomes, for ``why`` (:attr:`outcomes_left_out`; the
        caller names it in a warning). For what only a look at every run of a report can
        find (``curlora.reporting.row_counts``): the file was read alone before that."""
        # The reading is cached on the instance: replacing it keeps the one run object
        # every list of the report holds consistent (the dataclass is frozen otherwise).
        self.__dict__["_recorded"] = ({}, why)

    @functools.cached_property
    def _recorded(self) -> tuple[dict[str, Outcomes | None], str | None]:
        """``outcomes.json`` read once: each score's outcomes (``eval``, under head=words
        ``eval_exact_match``, and the retention suite's ``retention``), and why the whole
        file is left out (None when it is used).

        Each score must agree with the same score's rows in results.json
        (``curlora.reporting.outcomes_check``): outcomes that disagree would move the
        report's paired differences and intervals away from what the run measured."""
        path = self.path / "outcomes.json"
        try:
            data = json.loads(read_text(path))  # a regular file only, as every report read
            found: dict[str, Outcomes | None] = {}
            for key, score in (("eval", "acc"), ("eval_exact_match", "em")):
                if key != "eval" and key not in data:
                    continue
                strings = {t: data[key][t] for t in self.tasks}
                rows = self.score_rows(score)
                problem = outcomes_problem(strings, rows, self.tasks, eval_sizes(self.results))
                if problem is not None:
                    return _left_out(path, f"{key} disagrees with results.json: {problem}")
                found[key] = outcome_arrays(strings)
            # The writer's null is "not recorded", no disagreement, but a score with a null
            # point cannot be resampled. A completed run records every point, so the whole
            # file is left out and named, as the report's line on it says (every interval
            # over the run is then over seeds alone, whichever score it is of).
            partial = [key for key, arrays in found.items() if arrays is None]
            if partial:
                return _left_out(
                    path, f"{', '.join(partial)}: outcomes not recorded at some points"
                )
            retention = self._retention_outcomes(data)
            if isinstance(retention, str):
                return _left_out(path, retention)
            if retention is not None:
                found["retention"] = retention
            return found, None
        except FileNotFoundError:
            return {}, None
        except DAMAGED_JSON as error:
            log.warning(
                "%s is damaged (%s); the run counts as not recording its outcomes",
                shown(path),
                _why(error),
            )
            return {}, f"damaged: {_why(error)}"

    def _retention_outcomes(self, data: dict[str, Any]) -> Outcomes | str | None:
        """The retention suite's per-row outcomes of ``outcomes.json`` (suite task -> uint8
        [points, rows]); None when not recorded at every point (a run made before they were,
        or resumed across that change: its retention intervals are over seeds alone); a
        string saying where they disagree with results.json's retention matrix, which leaves
        the whole file out as any disagreement does."""
        retention = self.results.get("retention")
        if "retention" not in data or not retention:
            return None
        names = list(retention["tasks"])
        strings = {t: data["retention"][t] for t in names}
        problem = outcomes_problem(
            strings,
            retention["acc"],
            names,
            dict(zip(names, retention["n"], strict=True)),
            trained=self.tasks,
        )
        if problem is not None:
            return f"retention disagrees with results.json: {problem}"
        return outcome_arrays(strings)

    @property
    def retention_outcomes(self) -> Outcomes | None:
        """The retention suite's per-row outcomes at every evaluation point, by suite task
        (uint8 [points, rows]); None when the run did not record them at every point or its
        outcomes were left out (:attr:`outcomes_left_out`)."""
        return self._recorded[0].get("retention")

    def elapsed_s(self) -> float:
        """The run's wall time as ``progress.json`` recorded it (0 when unknown)."""
        path = self.path / "progress.json"
        try:
            data = json.loads(read_text(path))
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


def _first_problem(error: ResultsError) -> str:
    """A ResultsError in one safe line: the file and its first problem (the message lists
    every problem, one a line)."""
    first, *problems = str(error).splitlines()
    if not problems:
        return shown(first)
    more = f"; and {len(problems) - 1} more" if len(problems) > 1 else ""
    return shown(f"{first.rstrip(':')} ({problems[0].removeprefix('- ')}{more})")


def load_grid(root: Path) -> list[GridRun]:
    """Every completed run below ``root`` (others are listed by the multirun summaries)."""
    runs = []
    # every entry so named, a dangling link too: the reader names what it will not open
    for path in entries_named(root, "results.json"):
        try:
            results = load_results(path)
        except ResultsError as error:  # a file that cannot be used: named, never skipped unsaid
            log.warning("%s; left out of the report", _first_problem(error))
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


def _left_out(path: Path, why: str) -> tuple[dict[str, Outcomes | None], str]:
    """Leave a run's whole ``outcomes.json`` out for ``why``, named in one warning."""
    why = shown(why)
    log.warning(
        "%s %s; this run's outcomes are left out (its intervals are over seeds alone)",
        shown(path),
        why,
    )
    return {}, why


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
