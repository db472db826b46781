"""Whether a run's ``outcomes.json`` is what its ``results.json`` says was measured.

A grid report's intervals resample the per-example outcomes (``curlora.reporting.stats``),
and a paired difference is computed from them, not from the accuracy matrix: outcomes
that disagree with the matrix would move a reported number (a forgetting difference, its
interval, a verdict) while every number of ``results.json`` stays as measured. They are
written together from one evaluation (``curlora.run.report``), so a genuine pair agrees
exactly: at every evaluation point the share of ``"1"`` in a task's string *is* the
accuracy stored there, and the string has one character per row of the task's eval split.
:func:`outcomes_problem` says where a pair does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# A stored accuracy is right / rows, computed in float64 and written at full precision:
# times rows it gives back the count of right answers to within far less than this, and
# two different counts are a whole 1 apart.
COUNT_TOLERANCE = 1e-6


def _point(k: int, tasks: Sequence[str]) -> str:
    return "before training" if k == 0 else f"after {tasks[k - 1]}"


def _agrees(accuracy: Any, outcomes: str) -> bool:
    """Whether ``accuracy`` is the share of ``"1"`` in ``outcomes`` (nan for no rows)."""
    if not isinstance(accuracy, int | float) or isinstance(accuracy, bool):
        return False
    if not outcomes:
        return math.isnan(accuracy)  # an empty split's accuracy is nan by definition
    # written so that a nan or inf accuracy is a disagreement, not a pass
    return abs(accuracy * len(outcomes) - outcomes.count("1")) <= COUNT_TOLERANCE


def eval_sizes(results: Mapping[str, Any]) -> dict[str, int]:
    """Each task's eval split size as ``results.json`` records it (``label_balance``; a
    task it does not record is left out: the rows are then checked against each other)."""
    sizes = {}
    for task, splits in (results.get("label_balance") or {}).items():
        size = ((splits if isinstance(splits, Mapping) else {}).get("eval") or {}).get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            sizes[task] = size
    return sizes


def outcomes_problem(
    strings: Mapping[str, Any],
    rows: Sequence[Sequence[Any]],
    tasks: Sequence[str],
    sizes: Mapping[str, int],
    trained: Sequence[str] | None = None,
) -> str | None:
    """Where ``strings`` (one score of ``outcomes.json``: task -> one string per evaluation
    point) disagrees with ``rows`` (the same score's stored rows in ``results.json``: before
    training, then after each task), or None when they agree. ``sizes``: each task's eval
    split size (:func:`eval_sizes`).

    A point whose string is null was not recorded: that is no disagreement (the run's
    outcomes are then left out all the same, and named: ``GridRun``). ``trained``: the
    run's trained tasks, which name the points, when ``tasks`` are not them (the retention
    suite's); a null row of ``rows`` (a point not evaluated) agrees with no string."""
    trained = tasks if trained is None else trained
    for j, task in enumerate(tasks):
        points = strings[task]
        if not isinstance(points, list):
            return f"{task}: not a list of evaluation points"
        if len(points) != len(rows):
            return f"{task}: {len(points)} evaluation points, results.json has {len(rows)}"
        lengths = set()
        for k, outcomes in enumerate(points):
            if outcomes is None:
                continue
            where = f"{task} {_point(k, trained)}"
            if not isinstance(outcomes, str) or not set(outcomes) <= {"0", "1"}:
                return f"{where}: not a string of 0 and 1"
            lengths.add(len(outcomes))
            if task in sizes and len(outcomes) != sizes[task]:
                return f"{where}: {len(outcomes)} rows, results.json's eval split has {sizes[task]}"
            if len(lengths) > 1:
                return f"{task}: the evaluation points have different numbers of rows"
            accuracy = None if rows[k] is None else rows[k][j]
            if not _agrees(accuracy, outcomes):
                return (
                    f"{where}: {outcomes.count('1')} of {len(outcomes)} right, "
                    f"results.json says {accuracy}"
                )
    return None
