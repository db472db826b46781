"""Results as W&B objects: the accuracy matrix as a ``wandb.Table`` and a flat run summary.

``wandb`` is imported lazily, inside the one function that needs it, and its absence is
not an error: the table helper returns None, everything else needs no wandb at all. A
missing or broken logger must never cost a run its ``results.json``, and
importing wandb costs seconds that runs with ``logger=csv`` or ``logger=none`` should not pay.

Key names: ``final/<metric>``, ``final/<task>/acc``, ``lm/ppl_final``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from curlora.metrics.continual import METRIC_KEYS, last_measured
from curlora.reporting.results import final_accuracies

log = logging.getLogger(__name__)
TABLE_COLUMNS = ["after_task", "task", "accuracy"]


def accuracy_rows(R: Sequence[Sequence[float | None]], tasks: Sequence[str]) -> list[list[Any]]:
    """``[after_task, task, accuracy]`` per evaluated cell (row i -> ``tasks[i]``); cells
    not evaluated (None/NaN) are left out, so the table holds only real evaluations."""
    rows = []
    for i, row in enumerate(R):
        for j, value in enumerate(row):
            if value is not None and math.isfinite(float(value)):
                rows.append([tasks[i], tasks[j], float(value)])
    return rows


def accuracy_table(R: Sequence[Sequence[float | None]], tasks: Sequence[str]) -> Any | None:
    """``wandb.Table`` with columns ``[after_task, task, accuracy]``; None without wandb."""
    try:
        import wandb
    except ImportError:
        log.info("wandb is not installed; no accuracy table")
        return None
    return wandb.Table(columns=TABLE_COLUMNS, data=accuracy_rows(R, tasks))


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
