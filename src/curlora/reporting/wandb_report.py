"""Results as W&B objects: what a run logs at each evaluation point, and its summary.

At an evaluation point (``tasks_trained`` = k tasks done, 0 = before training),
:func:`evaluation_objects` gives:

- ``eval/forgetting_curve``: a ``wandb.plot.line_series`` chart, x = tasks trained, one
  line per task's accuracy, and the majority-class rate as reference;
- ``lm/perplexity_curve``: the perplexity against tasks trained (same chart type);
- ``eval/accuracy_matrix``: a table, one row per evaluated cell, with an integer
  ``tasks_trained`` column and the before-training row;
- ``eval/<task>/confusion``: ``wandb.plot.confusion_matrix`` of each head at this point;

and :func:`running_metrics` the numbers: ``eval/avg_acc`` (mean accuracy over the tasks
trained so far), ``eval/bwt`` (BWT over them, from the second task on) and, with the task
names, ``eval/<task>/forgetting`` of every task trained so far: its accuracy right after
it trained minus its accuracy now, R[j][j] − R[k][j] (Avalanche's per-experience
forgetting; 0 at the point the task itself trained, positive when it lost accuracy).

``wandb`` is imported lazily, inside the functions that need it, and its absence is not
an error for the table helper (None) and the summary (needs no wandb). A missing or
broken logger must never cost a run its ``results.json``, and importing wandb costs
seconds that runs with ``logger=csv`` or ``logger=none`` should not pay.

Summary key names: ``final/<metric>``, ``final/<task>/acc``, ``lm/ppl_final``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from curlora.metrics.continual import (
    METRIC_KEYS,
    average_accuracy,
    backward_transfer,
    last_measured,
)
from curlora.reporting.results import final_accuracies

log = logging.getLogger(__name__)
Row = Sequence[float | None]
TABLE_COLUMNS = ["tasks_trained", "after_task", "task", "accuracy", "majority"]
BEFORE_TRAINING = "before training"
TASK_AXIS = "tasks_trained"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def accuracy_rows(
    initial: Row | None,
    R: Sequence[Row],
    tasks: Sequence[str],
    majority: Sequence[float | None] | None = None,
) -> list[list[Any]]:
    """``[tasks_trained, after_task, task, accuracy, majority]`` per evaluated cell: the
    before-training row (``tasks_trained`` 0, ``after_task`` "before training") then row i
    of R (``tasks_trained`` i + 1, ``after_task`` ``tasks[i]``). Cells not evaluated
    (None/NaN) are left out, so the table holds only real evaluations."""
    majority = list(majority) if majority is not None else [None] * len(tasks)
    labelled = [(0, BEFORE_TRAINING, initial)] + [(i + 1, tasks[i], row) for i, row in enumerate(R)]
    return [
        [k, after, tasks[j], float(value), majority[j]]
        for k, after, row in labelled
        if row is not None
        for j, value in enumerate(row)
        if _finite(value)
    ]


def accuracy_table(
    initial: Row | None,
    R: Sequence[Row],
    tasks: Sequence[str],
    majority: Sequence[float | None] | None = None,
) -> Any | None:
    """``wandb.Table`` of :func:`accuracy_rows` (columns ``TABLE_COLUMNS``); None without
    wandb."""
    try:
        import wandb
    except ImportError:
        log.info("wandb is not installed; no accuracy table")
        return None
    return wandb.Table(columns=TABLE_COLUMNS, data=accuracy_rows(initial, R, tasks, majority))


def running_metrics(R: Sequence[Row], tasks: Sequence[str] = ()) -> dict[str, float]:
    """``eval/avg_acc`` and ``eval/bwt`` over the rows trained so far (R cut at the current
    evaluation point), and ``eval/<task>/forgetting`` for every task in ``tasks`` trained so
    far (module docstring); a metric that is not defined yet (BWT before a second task, a
    cell not evaluated) is left out."""
    values = {"eval/avg_acc": average_accuracy(R), "eval/bwt": backward_transfer(R)}
    if R and tasks:
        now = R[-1]
        for j, task in enumerate(tasks[: len(R)]):
            if _finite(R[j][j]) and _finite(now[j]):
                values[f"eval/{task}/forgetting"] = float(R[j][j]) - float(now[j])
    return {k: float(v) for k, v in values.items() if v is not None}


def forgetting_chart(
    initial: Row | None,
    R: Sequence[Row],
    tasks: Sequence[str],
    majority: Sequence[float | None],
) -> Any:
    """Accuracy of each task against tasks trained (0 = before training), one line per
    task, and the majority-class rate as reference: one line when every task has the same
    rate, else one per task."""
    import wandb

    rows = [initial, *R]
    xs, ys, keys = [], [], []
    for j, task in enumerate(tasks):
        points = [(k, r[j]) for k, r in enumerate(rows) if r is not None and _finite(r[j])]
        xs.append([k for k, _ in points])
        ys.append([float(v) for _, v in points])
        keys.append(task)
    span = [0, max(len(rows) - 1, 1)]
    rates = [m for m in majority if m is not None]
    if rates and max(rates) - min(rates) < 1e-9:
        xs.append(span)
        ys.append([rates[0], rates[0]])
        keys.append("majority-class rate")
    else:
        for task, rate in zip(tasks, majority, strict=True):
            if rate is not None:
                xs.append(span)
                ys.append([rate, rate])
                keys.append(f"{task} majority-class rate")
    return wandb.plot.line_series(
        xs, ys, keys=keys, title="Accuracy per task against tasks trained", xname=TASK_AXIS
    )


def perplexity_chart(perplexities: Sequence[float | None]) -> Any:
    """The LM perplexity against tasks trained (``perplexities[k]``: after k tasks)."""
    import wandb

    points = [(k, float(p)) for k, p in enumerate(perplexities) if _finite(p)]
    return wandb.plot.line_series(
        [[k for k, _ in points]],
        [[p for _, p in points]],
        keys=["perplexity"],
        title="LM perplexity against tasks trained",
        xname=TASK_AXIS,
    )


def confusion_chart(
    confusion: Sequence[Sequence[int]], title: str, class_names: Sequence[str] | None = None
) -> Any:
    """``wandb.plot.confusion_matrix`` from a count matrix ``confusion[true][predicted]``
    (expanded to one label pair per example, which is what the chart takes), its classes
    named by ``class_names`` (the task's ``class_names``; ``class <id>`` without)."""
    import wandb

    y_true = [t for t, row in enumerate(confusion) for p, n in enumerate(row) for _ in range(n)]
    preds = [p for t, row in enumerate(confusion) for p, n in enumerate(row) for _ in range(n)]
    names = list(class_names or [f"class {c}" for c in range(len(confusion))])
    return wandb.plot.confusion_matrix(y_true=y_true, preds=preds, class_names=names, title=title)


def evaluation_objects(
    initial: Row | None,
    R: Sequence[Row],
    tasks: Sequence[str],
    majority: Sequence[float | None],
    perplexities: Sequence[float | None],
    confusions: Mapping[str, Sequence[Sequence[int]]],
    class_names: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The tables and charts of one evaluation point (see the module docstring): ``R`` the
    rows trained so far, ``perplexities[k]`` after k tasks, ``confusions`` of this point,
    ``class_names`` per task for the confusion matrices."""
    k = len(R)
    objects: dict[str, Any] = {
        "eval/forgetting_curve": forgetting_chart(initial, R, tasks, majority),
        "eval/accuracy_matrix": accuracy_table(initial, R, tasks, majority),
        "lm/perplexity_curve": perplexity_chart(perplexities),
    }
    for task, confusion in confusions.items():
        title = f"{task}: confusion after {k} task(s) trained [true x predicted]"
        names = (class_names or {}).get(task)
        objects[f"eval/{task}/confusion"] = confusion_chart(confusion, title, names)
    return objects


def summary_metrics(results: Mapping[str, Any]) -> dict[str, float | int | str]:
    """Flat dict for the run summary from a results dict (``curlora.reporting.results``).

    Keys: ``final/<metric>`` for every metric, ``final/<task>/acc`` (last evaluated row),
    ``final/<task>/majority`` (its majority baseline), ``initial/<task>/acc`` (untrained
    head), ``lm/ppl_initial``, ``lm/ppl_final`` (last measured), ``lm/tokens``,
    ``trainable_params``, ``status`` and ``warnings`` (their count). Missing values (None)
    are left out rather than logged as nulls.
    """
    summary: dict[str, Any] = {f"final/{key}": results["metrics"][key] for key in METRIC_KEYS}
    tasks = results["tasks"]
    for task, final, majority, initial in zip(
        tasks,
        final_accuracies(results),
        results["majority_baseline"],
        results["initial_accuracy"],
        strict=True,
    ):
        summary[f"final/{task}/acc"] = final
        summary[f"final/{task}/majority"] = majority
        summary[f"initial/{task}/acc"] = initial
    perplexity = results["perplexity"]
    summary["lm/ppl_initial"] = perplexity["initial"]
    summary["lm/ppl_final"] = last_measured(perplexity["after_task"])
    summary["lm/tokens"] = perplexity["tokens"]
    summary["trainable_params"] = results["trainable_params"]
    summary["status"] = results["status"]
    summary["warnings"] = len(results["warnings"])
    return {key: value for key, value in summary.items() if value is not None}
