"""The degenerate-result guard: fires on a constant predictor, not on a perfect one.

Expected numbers are counts over the small label lists written in each test; the MRPC case
uses the GLUE MRPC validation split's class counts (129 "not equivalent", 279 "equivalent").
"""

from __future__ import annotations

import pytest
import torch

from curlora.metrics.degenerate import (
    AT_OR_BELOW_MAJORITY,
    SINGLE_CLASS,
    WARNING_KEYS,
    degenerate_warnings,
    describe,
    majority_baseline,
    prediction_stats,
    top_class_share,
)

LABELS = [0, 1, 1, 0, 1, 1, 0, 1, 1, 1]  # 3 zeros, 7 ones


def record(stats, task: str = "sst2", after: int | str = 0) -> dict:
    return {
        "task": task,
        "evaluated_after": after,
        "accuracy": stats.accuracy,
        "majority_baseline": stats.majority_baseline,
        "top_class_share": stats.top_class_share,
    }


def test_stats_of_a_constant_predictor() -> None:
    stats = prediction_stats(torch.tensor(LABELS), torch.ones(10, dtype=torch.long))
    assert stats.accuracy == pytest.approx(0.7)  # 7 ones of 10
    assert stats.majority_baseline == pytest.approx(0.7)  # majority class 1: 7 / 10
    assert stats.top_class_share == 1.0  # every prediction is class 1
    assert stats.label_counts == {0: 3, 1: 7}
    assert stats.prediction_counts == {1: 10}


def test_helpers_accept_lists_and_tensors() -> None:
    assert majority_baseline(LABELS) == pytest.approx(0.7)
    assert majority_baseline(torch.tensor([[2, 2], [0, 1]])) == pytest.approx(0.5)  # 2 of 4
    assert top_class_share([0, 0, 0, 1]) == pytest.approx(0.75)  # 3 of 4 predict 0
    with pytest.raises(ValueError, match="labels but"):
        prediction_stats([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        majority_baseline([])


def test_fires_on_a_constant_predictor() -> None:
    stats = prediction_stats(LABELS, [1] * 10)
    warnings = degenerate_warnings([record(stats)])
    # share 1.0 >= 0.95, and accuracy 0.7 <= majority 0.7
    assert [w["reason"] for w in warnings] == [SINGLE_CLASS, AT_OR_BELOW_MAJORITY]
    assert all(tuple(w) == WARNING_KEYS for w in warnings)
    assert warnings[0]["task"] == "sst2" and warnings[0]["evaluated_after"] == 0
    assert "sst2" in describe(warnings[0])


def test_silent_on_a_perfect_predictor() -> None:
    stats = prediction_stats(LABELS, LABELS)  # accuracy 1.0 > 0.7, top share 0.7 < 0.95
    assert degenerate_warnings([record(stats)]) == []


def test_paper_mrpc_signature() -> None:
    # GLUE MRPC validation: 129 label 0, 279 label 1. Predicting 0 everywhere scores
    # 129 / 408 = 0.316, the paper's LoRA MRPC number, below the 279 / 408 = 0.684 baseline.
    labels = [0] * 129 + [1] * 279
    stats = prediction_stats(labels, [0] * 408)
    assert stats.accuracy == pytest.approx(0.316, abs=5e-4)
    reasons = {w["reason"] for w in degenerate_warnings([record(stats, "mrpc")])}
    assert reasons == {SINGLE_CLASS, AT_OR_BELOW_MAJORITY}


def test_threshold_is_configurable_and_inclusive() -> None:
    # 19 of 20 predictions are class 1: share 0.95, accuracy 0.85 above majority 0.5
    labels = [0] * 10 + [1] * 10
    predictions = [0] * 1 + [1] * 19
    stats = prediction_stats(labels, predictions)
    assert stats.top_class_share == pytest.approx(0.95)  # 19 / 20
    assert stats.accuracy == pytest.approx(0.55)  # 1 zero right + 10 ones right = 11 / 20
    assert [w["reason"] for w in degenerate_warnings([record(stats)])] == [SINGLE_CLASS]
    assert degenerate_warnings([record(stats)], top_class_threshold=0.96) == []


def test_skips_untrained_heads_when_the_task_order_is_given() -> None:
    constant = prediction_stats(LABELS, [1] * 10)
    tasks = ["mrpc", "sst2", "s140"]
    records = [
        record(constant, "sst2", "initial"),  # untrained: skipped
        record(constant, "s140", 1),  # after task 1, task 2's head is untrained: skipped
        record(constant, "s140", "sst2"),  # same point named by task: skipped
        record(constant, "mrpc", "sst2"),  # trained head, evaluated after task 1: flagged
    ]
    warnings = degenerate_warnings(records, tasks=tasks)
    assert {(w["task"], w["evaluated_after"]) for w in warnings} == {("mrpc", "sst2")}
    assert len(degenerate_warnings(records)) == 8  # without tasks: all 4 checked, 2 reasons each


def test_missing_values_skip_checks() -> None:
    r = {
        "task": "t",
        "evaluated_after": 0,
        "accuracy": None,
        "majority_baseline": 0.5,
        "top_class_share": 1.0,
    }
    assert degenerate_warnings([r]) == []  # not evaluated
    r.update(accuracy=0.4, majority_baseline=float("nan"), top_class_share=None)
    assert degenerate_warnings([r]) == []  # nothing to compare with
