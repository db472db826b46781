"""Continual metrics against hand-computed matrices.

Definitions (as implemented in ``curlora.metrics.continual``): ACC, BWT, FWT from
Lopez-Paz & Ranzato 2017 (GEM); forgetting (max − last) from Chaudhry et al. 2018 (RWalk)
restricted to rows l >= j; forgetting (first − last) as in Avalanche; average incremental
accuracy from Rebuffi et al. 2017 (iCaRL). The arithmetic of every expected number is
written next to it.
"""

from __future__ import annotations

import json
import math

import pytest

from curlora.metrics.continual import (
    METRIC_KEYS,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting_first,
    forgetting_max,
    forward_transfer,
    perplexity_ratio,
    summarize,
    trained_rows,
)

# R[i][j] = accuracy on task j after training task i. R[0][1] = 0.95 is an untrained head
# that happens to score high: forgetting's maximum is taken over rows l >= j only, so it
# is excluded.
R3 = [
    [0.80, 0.95, 0.40],
    [0.85, 0.90, 0.45],
    [0.60, 0.85, 0.75],
]
B3 = [0.50, 0.50, 0.35]


def test_average_accuracy_is_mean_of_last_row() -> None:
    # ACC = mean_j R[T][j] = (0.60 + 0.85 + 0.75) / 3 = 2.20 / 3
    assert average_accuracy(R3) == pytest.approx(2.20 / 3)


def test_backward_transfer() -> None:
    # BWT = mean_{j<T} (R[T][j] − R[j][j]) = ((0.60 − 0.80) + (0.85 − 0.90)) / 2 = −0.125
    assert backward_transfer(R3) == pytest.approx(-0.125)


def test_forgetting_max_starts_at_the_row_where_the_task_was_trained() -> None:
    # f_0 = max(R[0][0], R[1][0]) − R[2][0] = max(0.80, 0.85) − 0.60 = 0.25
    # f_1 = max(R[1][1]) − R[2][1] = 0.90 − 0.85 = 0.05   (R[0][1] = 0.95 is excluded: l >= j)
    # mean = (0.25 + 0.05) / 2 = 0.15   (an unrestricted max over l < T would give 0.175)
    assert forgetting_max(R3) == pytest.approx(0.15)


def test_forgetting_max_stops_at_the_row_before_last() -> None:
    # Task 0 improves after task 1 trains: f_0 = max_{0<=l<=0} R[l][0] − R[1][0]
    # = 0.70 − 0.75 = −0.05. Including the last row in the max would clip it to 0.
    assert forgetting_max([[0.70, 0.50], [0.75, 0.80]]) == pytest.approx(-0.05)


def test_forgetting_first_minus_last() -> None:
    # Avalanche: mean_j (R[j][j] − R[T][j]) = ((0.80 − 0.60) + (0.90 − 0.85)) / 2 = 0.125
    assert forgetting_first(R3) == pytest.approx(0.125)


def test_forward_transfer() -> None:
    # FWT = mean_{j>=2} (R[j−1][j] − b_j) = ((0.95 − 0.50) + (0.45 − 0.35)) / 2 = 0.275
    assert forward_transfer(R3, B3) == pytest.approx(0.275)


def test_average_incremental_accuracy() -> None:
    # mean_k mean_{j<=k} R[k][j] = (0.80 + (0.85 + 0.90)/2 + (0.60 + 0.85 + 0.75)/3) / 3
    expected = (0.80 + 1.75 / 2 + 2.20 / 3) / 3
    assert average_incremental_accuracy(R3) == pytest.approx(expected)


def test_perplexity_ratio() -> None:
    # final / initial = 12.5 / 10.0
    assert perplexity_ratio(10.0, 12.5) == pytest.approx(1.25)
    assert perplexity_ratio(None, 12.5) is None
    assert perplexity_ratio(0.0, 12.5) is None
    # A measured non-finite perplexity is a result: the ratio shows it.
    assert math.isnan(perplexity_ratio(10.0, float("nan")))
    assert perplexity_ratio(10.0, math.inf) == math.inf


def test_blown_up_last_perplexity_is_not_replaced_by_an_earlier_one() -> None:
    # after_task = [11, 12, inf]: the model broke after the last task. The ratio is inf,
    # never 12 / 10 = 1.2 (the last *finite* value), and a missing entry still reads
    # "not measured".
    assert summarize(R3, B3, 10.0, [11.0, 12.0, math.inf])["ppl_ratio_final"] == math.inf
    assert summarize(R3, B3, 10.0, [11.0, 12.0, None])["ppl_ratio_final"] == pytest.approx(1.2)


def test_summarize_has_exactly_the_issue_keys() -> None:
    out = summarize(R3, B3, 10.0, [11.0, 12.0, 12.5])
    assert tuple(out) == METRIC_KEYS
    assert set(out) == {
        "avg_accuracy",
        "bwt",
        "forgetting_max",
        "forgetting_first",
        "fwt",
        "avg_incremental_accuracy",
        "ppl_ratio_final",
    }
    assert out["forgetting_max"] == pytest.approx(0.15)
    assert out["ppl_ratio_final"] == pytest.approx(1.25)  # 12.5 / 10.0


def test_single_task_gives_none_not_nan() -> None:
    out = summarize([[0.9]], [0.5], 10.0, [12.0])
    # ACC = R[0][0]; average incremental accuracy = mean(R[0][0]); ratio = 12.0 / 10.0
    assert out["avg_accuracy"] == pytest.approx(0.9)
    assert out["avg_incremental_accuracy"] == pytest.approx(0.9)
    assert out["ppl_ratio_final"] == pytest.approx(1.2)
    for key in ("bwt", "forgetting_max", "forgetting_first", "fwt"):
        assert out[key] is None
    json.dumps(out, allow_nan=False)  # no NaN sneaks into results.json


PARTIAL = [
    [0.80, 0.30, 0.40],
    [0.70, 0.90, 0.45],
    [None, None, None],  # the run stopped before task 2 finished
]


@pytest.mark.parametrize("R", [PARTIAL, PARTIAL[:2]], ids=["null-row", "missing-row"])
def test_partial_matrix_is_the_first_k_tasks(R: list[list[float | None]]) -> None:
    out = summarize(R, B3, 10.0, [11.0, 13.0, None])
    # K = 2 trained tasks; column 2 (never trained) is ignored.
    assert out["avg_accuracy"] == pytest.approx(0.80)  # (0.70 + 0.90) / 2
    assert out["bwt"] == pytest.approx(-0.10)  # 0.70 − 0.80
    assert out["forgetting_max"] == pytest.approx(0.10)  # max(0.80) − 0.70
    assert out["forgetting_first"] == pytest.approx(0.10)  # 0.80 − 0.70
    assert out["fwt"] == pytest.approx(-0.20)  # R[0][1] − b_1 = 0.30 − 0.50
    assert out["avg_incremental_accuracy"] == pytest.approx(0.80)  # (0.80 + (0.70+0.90)/2) / 2
    assert out["ppl_ratio_final"] == pytest.approx(1.3)  # last measured 13.0 / 10.0


def test_missing_cells_are_left_out_of_the_mean() -> None:
    R = [row[:] for row in R3]
    R[2][0] = None  # task 0 not evaluated at the end
    # BWT over j = 1 only: 0.85 − 0.90 = −0.05; forgetting_max over j = 1: 0.90 − 0.85
    assert backward_transfer(R) == pytest.approx(-0.05)
    assert forgetting_max(R) == pytest.approx(0.05)
    # ACC over the evaluated cells of the last row: (0.85 + 0.75) / 2
    assert average_accuracy(R) == pytest.approx(0.80)
    R[2][0] = math.nan  # a NaN is a measurement, not a gap: it propagates
    assert math.isnan(backward_transfer(R))


def test_empty_matrix() -> None:
    assert trained_rows([]) == []
    out = summarize([], [], None, [])
    assert all(v is None for v in out.values())


def test_malformed_matrices_raise() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        average_accuracy([[0.5, 0.5], [0.5]])
    with pytest.raises(ValueError, match="rows but only"):
        average_accuracy([[0.5], [0.5]])
    with pytest.raises(ValueError, match="initial has"):
        forward_transfer(R3, [0.5, 0.5])
