"""Fixtures for the reporting tests: fabricated run results (no training)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from curlora.reporting.results import build_results

TASKS = ["mrpc", "sst2", "sentiment140"]
# R[i][j]: accuracy on task j after training task i (same matrix as tests/metrics).
MATRIX = [
    [0.80, 0.95, 0.40],
    [0.85, 0.90, 0.45],
    [0.60, 0.85, 0.75],
]


def results_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of build_results for a completed 3-task run; override any."""
    kwargs: dict[str, Any] = {
        "method": "curlora",
        "rank": 16,
        "seed": 1311,
        "tasks": TASKS,
        "accuracy_matrix": MATRIX,
        "initial_accuracy": [0.50, 0.50, 0.35],
        "perplexity": {"initial": 10.0, "after_task": [11.0, 12.0, 12.5], "tokens": 4095},
        "majority_baseline": [0.684, 0.509, 0.501],
        "trainable_params": 24_576,
        "status": "completed",
        "config": {"method": {"name": "curlora"}, "strategy": {"name": "sequential"}, "rank": 16},
    }
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def results_args() -> Callable[..., dict[str, Any]]:
    """``results_args(**overrides)``: build_results keyword arguments of a 3-task run."""
    return results_kwargs


@pytest.fixture
def make_results() -> Callable[..., dict[str, Any]]:
    """``make_results(**overrides)``: a valid results dict built by build_results."""

    def make(**overrides: Any) -> dict[str, Any]:
        return build_results(**results_kwargs(**overrides))

    return make
