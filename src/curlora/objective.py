"""What a hyperparameter search maximises (the value ``curlora.cli`` returns to a sweeper).

``objective`` (set by ``configs/hparams_search/optuna_*.yaml``):

    metric: validation_avg_accuracy   # the mean over tasks of the final row of the
                                      # validation accuracy matrix: the carves of the
                                      # training data, never the test split
    max_perplexity_ratio: 1.2         # a constraint: every 0.01 of final/initial
                                      # perplexity above it costs 0.01 of accuracy (null: none)

A run without validation carves has no objective (a search needs them, so the search
configs refuse to start without: ``curlora.checks.config``). A run whose perplexity went
to inf or NaN scores -inf: it is shown to the sweeper as the worst trial, never skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from curlora.metrics.continual import average_accuracy

METRICS = ("validation_avg_accuracy",)


def objective_value(results: Mapping[str, Any], objective: Mapping[str, Any]) -> float | None:
    """The value to maximise for one finished run (None without validation carves)."""
    validation = results.get("validation")
    if not validation:
        return None
    accuracy = average_accuracy(validation["accuracy_matrix"])
    if accuracy is None:
        return None
    limit = objective.get("max_perplexity_ratio")
    if limit is None:
        return float(accuracy)
    ratio = (results.get("metrics") or {}).get("ppl_ratio_final")
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        return -math.inf  # "inf"/"nan" (as results.json writes them), or not measured
    return float(accuracy) - max(0.0, float(ratio) - float(limit))
