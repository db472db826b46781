"""Intervals over seeds and test examples: hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curlora.reporting.stats import (
    outcome_arrays,
    resampled_accuracies,
    resampled_row_counts,
    seed_summary,
    summarize,
    summarize_log,
    t_quantile,
)


def test_t_quantiles_are_the_table_values() -> None:
    # Student's t, two-sided 95 % (any statistics table): df 1 → 12.706, 2 → 4.303,
    # 4 → 2.776; df 11 is not a row: the next smaller (10 → 2.228), a wider interval.
    assert t_quantile(1) == 12.706
    assert t_quantile(2) == 4.303
    assert t_quantile(4) == 2.776
    assert t_quantile(11) == 2.228
    assert t_quantile(40) == 2.042
    assert t_quantile(500) == 1.96
    with pytest.raises(ValueError, match="degree of freedom"):
        t_quantile(0)


def test_seed_interval_is_students_t() -> None:
    # 1, 2, 3: mean 2, sample std 1, half width 4.303 · 1 / √3 = 2.4844.
    s = summarize([1.0, None, 2.0, 3.0])  # None: not measured, left out
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    assert s.low == pytest.approx(2 - 2.48434, abs=1e-4)
    assert s.high == pytest.approx(2 + 2.48434, abs=1e-4)
    assert not s.test_noise


def test_test_variance_widens_the_interval() -> None:
    # s²/n = 1/3, v_test = 1/3: half width 4.303 · √(2/3) = 3.5134.
    s = summarize([1.0, 2.0, 3.0], test_variance=1 / 3)
    assert s.high - s.mean == pytest.approx(3.51340, abs=1e-4)
    assert s.test_noise


def test_one_seed_has_no_interval_and_a_blow_up_shows() -> None:
    one = summarize([0.7])
    assert one.low is None and one.interval() == "n/a (one seed)"
    blown = summarize([1.1, math.inf, 1.2])
    assert blown.mean == math.inf and blown.low is None and str(blown) == "inf"
    assert str(summarize([])) == "-"


def test_ratios_are_summarised_on_the_log_scale() -> None:
    # Ratios 1, e, e²: logs 0, 1, 2 → mean 1, std 1; geometric mean e, interval
    # exp(1 ± 4.303/√3) = [0.2174, 33.99]: never below zero, unlike the arithmetic
    # interval (mean 3.70, std 3.23 → [−4.33, 11.73]).
    s = summarize_log([1.0, math.e, math.e**2])
    assert s.geometric_mean == pytest.approx(math.e)
    assert s.low == pytest.approx(math.exp(1 - 2.48434), rel=1e-4)
    assert s.high == pytest.approx(math.exp(1 + 2.48434), rel=1e-4)
    assert s.arithmetic.low < 0 < s.low
    assert str(s) == "×2.718"
    assert summarize_log([1.0, math.inf]).geometric_mean == math.inf  # a blow-up shows
    assert math.isnan(summarize_log([1.0, 0.0]).log.mean)  # a ratio of 0 is no ratio


def _run(correct_rows: list[int], rows: int = 200, points: int = 4) -> dict[str, np.ndarray]:
    """One task ("t"): the same outcome vector at every evaluation point."""
    row = np.zeros(rows, dtype=np.uint8)
    row[correct_rows] = 1
    return {"t": np.tile(row, (points, 1))}


def test_bootstrap_variance_of_an_accuracy_is_binomial() -> None:
    # 100 of 200 right: the bootstrap variance of the accuracy is ≈ p(1 − p)/n = 0.00125
    # (SE 0.035). Two seeds with identical outcomes: s = 0, so the whole interval is test
    # noise: half width 12.706 · √0.00125 = 0.449. 4000 replicates estimate the variance
    # within a few per cent (relative SE √(2/B) ≈ 2.2 %).
    run = _run(list(range(100)))
    s = seed_summary([run, run], ["t"], lambda a: a[..., 1, 0], replicates=4000, seed=0)
    assert s.mean == 0.5 and s.std == 0.0
    half = s.high - s.mean
    assert half == pytest.approx(12.706 * math.sqrt(0.25 / 200), rel=0.06)


def test_rows_are_shared_so_identical_runs_differ_by_exactly_zero() -> None:
    run = _run(list(range(0, 200, 3)))
    boot = resampled_accuracies([run, run], ["t"], replicates=50, seed=1)
    assert boot.shape == (50, 2, 4, 1)
    assert np.array_equal(boot[:, 0], boot[:, 1])
    diff = seed_summary([run, run], ["t"], lambda a: a[..., 1, 0], 200, 0, baseline=[run, run])
    assert (diff.mean, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_shared_row_draws_are_the_fresh_ones_and_cannot_be_changed() -> None:
    """The report draws each task set's bootstrap rows once and shares them: every
    statistic must get exactly the draws it would have made itself (one generator stream,
    the tasks in order), and no caller may alter what the next one reads."""
    runs = [_run(list(range(0, 200, 3))), _run(list(range(0, 200, 5)))]
    two_tasks = [{"a": r["t"], "b": r["t"][:, :120]} for r in runs]
    resampled_row_counts.cache_clear()
    shared = resampled_accuracies(two_tasks, ["a", "b"], replicates=64, seed=7)
    again = resampled_accuracies(two_tasks, ["a", "b"], replicates=64, seed=7)
    assert resampled_row_counts.cache_info().hits == 1
    fresh = resampled_row_counts.__wrapped__(7, 64, (200, 120))
    rng = np.random.default_rng(7)  # the draws as written out by hand, task by task
    for counts, rows in zip(fresh, (200, 120), strict=True):
        idx = rng.integers(0, rows, size=(64, rows))
        assert np.array_equal(counts, np.stack([np.bincount(i, minlength=rows) for i in idx]))
    for j, task in enumerate(("a", "b")):
        scored = np.stack([r[task] for r in two_tasks]).astype(float)  # [run, point, rows]
        by_hand = np.einsum("bk,rpk->brp", fresh[j], scored) / scored.shape[-1]
        assert np.array_equal(shared[..., j], again[..., j])
        assert np.allclose(shared[..., j], by_hand, rtol=0, atol=1e-12)
    counts = resampled_row_counts(7, 64, (200, 120))[0]
    with pytest.raises(ValueError, match="read-only"):
        counts[0, 0] = 99.0


def test_a_paired_difference_is_less_noisy_than_its_parts() -> None:
    # Two methods that differ on 4 of 200 rows: alone each accuracy has SE ≈ 0.035; the
    # paired difference resamples the same rows for both and varies only through those 4.
    a = _run(list(range(104)))
    b = _run(list(range(100)))
    alone = seed_summary([a, a], ["t"], lambda x: x[..., 1, 0], 2000, 0)
    paired = seed_summary([a, a], ["t"], lambda x: x[..., 1, 0], 2000, 0, baseline=[b, b])
    assert paired.mean == pytest.approx(0.02)
    assert (paired.high - paired.mean) < (alone.high - alone.mean) / 3


def test_outcome_strings_become_arrays_or_none() -> None:
    arrays = outcome_arrays({"t": ["101", "111"]})
    assert arrays is not None and arrays["t"].tolist() == [[1, 0, 1], [1, 1, 1]]
    assert outcome_arrays({"t": ["101", None]}) is None  # a point not recorded
    assert outcome_arrays({"t": ["101", "11"]}) is None  # rows do not line up
