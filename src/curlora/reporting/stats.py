"""Summaries over seeds with 95 % intervals that carry seed and test-example noise.

A number in the report is a mean over seeds. Two things make it uncertain:

- **training randomness** (the seed): the sample variance of the per-seed values, s²;
- **the test sample**: every seed is scored on the *same* fixed evaluation subset (e.g.
  200 records: a binomial SE of ≈ 0.03 per accuracy), so the spread over seeds does not
  contain this noise at all. Its variance ``v_test`` is estimated by a bootstrap over the
  test rows: each replicate draws the rows of every task's split with replacement, once,
  shared by every seed and every method of a comparison (so paired differences stay paired
  by example too), and recomputes the whole statistic from the per-example outcomes.

The interval is ``mean ± t(0.975, n − 1) · √(s² / n + v_test)``: the two sources are
independent (one varies training, the other the test sample), so their variances add; the
t quantile with n − 1 degrees of freedom keeps it conservative for 3–5 seeds. Without
per-example outcomes ``v_test`` is unknown and the interval is the seeds' alone (the
report says so). ``None`` values (not measured) are left out; a non-finite value (a
perplexity that blew up) makes the summary non-finite, so it shows instead of disappearing.

Ratios (perplexity) are summarised on the log scale (:func:`summarize_log`): the interval
of the mean log ratio, mapped back with exp, is the interval of the geometric mean ratio
and can never go below zero.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Two-sided 95 % quantiles of Student's t by degrees of freedom (standard tables).
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042,
}  # fmt: skip


MIN_SEEDS = 3
"""The fewest seeds a report gives an interval, or rests a verdict, on. On two seeds a 95 %
t-interval has t(1) = 12.7: it either says nothing (it spans most of [0, 1]) or, where the
two seeds happen to agree, is narrow by that chance alone."""


def t_quantile(df: int) -> float:
    """t(0.975, df); between table rows the next smaller df (a slightly wider interval)."""
    if df < 1:
        raise ValueError(f"t quantile needs at least 1 degree of freedom, got {df}")
    if df >= 30:
        return 1.96 if df > 120 else T_975[30]
    return T_975[max(k for k in T_975 if k <= df)]


@dataclass(frozen=True)
class Summary:
    """n values: their mean, sample std and the 95 % interval (None when n < 2).
    ``test_noise``: whether the interval includes the test-example variance."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    test_noise: bool = False

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if not math.isfinite(self.mean):
            return str(self.mean)
        return f"{self.mean:.3f}" + (f" ± {self.std:.3f}" if self.std is not None else "")

    def interval(self) -> str:
        if self.low is None or self.high is None:
            return "n/a (one seed)" if self.n == 1 else "n/a"
        return f"[{self.low:+.3f}, {self.high:+.3f}]"


def summarize(values: Iterable[float | None], test_variance: float | None = None) -> Summary:
    """Mean, std and 95 % interval of per-seed values; ``test_variance`` (the bootstrap
    variance of the mean over the test rows) widens the interval when given."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Summary(0, math.nan, None, None, None)
    finite = all(math.isfinite(x) for x in xs)
    mean = statistics.fmean(xs) if finite else math.fsum(xs) / len(xs)
    if len(xs) < 2 or not math.isfinite(mean):
        return Summary(len(xs), mean, None, None, None)
    std = statistics.stdev(xs)
    variance = std**2 / len(xs) + (test_variance or 0.0)
    half = t_quantile(len(xs) - 1) * math.sqrt(variance)
    return Summary(len(xs), mean, std, mean - half, mean + half, test_variance is not None)


@dataclass(frozen=True)
class LogSummary:
    """A ratio summarised on the log scale: geometric mean and its 95 % interval."""

    log: Summary
    arithmetic: Summary

    @property
    def n(self) -> int:
        return self.log.n

    @property
    def geometric_mean(self) -> float:
        return math.exp(self.log.mean) if self.log.n else math.nan

    @property
    def low(self) -> float | None:
        return None if self.log.low is None else math.exp(self.log.low)

    @property
    def high(self) -> float | None:
        return None if self.log.high is None else math.exp(self.log.high)

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if not math.isfinite(self.log.mean):
            return str(self.geometric_mean)
        return f"×{self.geometric_mean:.3f}"

    def interval(self) -> str:
        if self.low is None or self.high is None:
            return "n/a (one seed)" if self.n == 1 else "n/a"
        return f"[×{self.low:.3f}, ×{self.high:.3f}]"


def _log(x: float | None) -> float | None:
    if x is None:
        return None
    if x <= 0 or math.isnan(x):
        return math.nan
    return math.log(x)  # +inf stays +inf: a blow-up shows


def summarize_log(ratios: Iterable[float | None]) -> LogSummary:
    """A positive ratio per seed (e.g. final / initial perplexity) on the log scale."""
    values = list(ratios)
    return LogSummary(summarize(_log(v) for v in values), summarize(values))


def interval_text(d: Summary | LogSummary, bounds: tuple[float, float] | None = None) -> str:
    """``d``'s 95 % interval for a report: "n/a (2 seeds)" below :data:`MIN_SEEDS` seeds,
    and clipped to ``bounds`` (an accuracy's [0, 1]) where given."""
    if 1 < d.n < MIN_SEEDS:
        return f"n/a ({d.n} seeds)"
    if bounds is None or d.low is None or d.high is None or isinstance(d, LogSummary):
        return d.interval()
    low, high = max(d.low, bounds[0]), min(d.high, bounds[1])
    return f"[{low:+.3f}, {high:+.3f}]"


# ---------------------------------------------------------------- test-example bootstrap
Outcomes = dict[str, np.ndarray]
"""One run's per-example outcomes: task -> uint8 array [points, rows] (1 = scored right;
points: before training, then after each task)."""


def outcome_arrays(outcomes: dict[str, list[str | None]]) -> Outcomes | None:
    """``outcomes.json``'s ``eval`` strings as arrays; None when any point is missing."""
    arrays: Outcomes = {}
    for task, strings in outcomes.items():
        if any(s is None for s in strings) or len({len(s) for s in strings}) != 1:
            return None
        arrays[task] = np.array([[c == "1" for c in s] for s in strings], dtype=np.uint8)
    return arrays


@functools.lru_cache(maxsize=2)
def resampled_row_counts(
    seed: int, replicates: int, rows: tuple[int, ...]
) -> tuple[np.ndarray, ...]:
    """How often each test row is drawn in each bootstrap replicate, per task.

    ``rows``: each task's row count, in the report's task order. Returns one read-only
    float64 array [replicates, rows_j] per task. The draws depend only on the seed, the
    replicate count and the row counts (each task's draws follow the previous tasks' in
    one generator stream), never on the runs, so every statistic of a report shares them.
    A report asks for the same draws dozens of times (one per comparison and per table
    cell); drawing them is most of a comparison's cost, hence the cache. Two entries: a
    report's tasks, and a second task set (the words grid's retention suite). A 2 000 × 2 000
    entry is 32 MB.
    """
    rng = np.random.default_rng(seed)
    counts = []
    for n in rows:
        idx = rng.integers(0, n, size=(replicates, n))  # [B, rows]
        # Counts per row make a resampled accuracy one product (exact: integer counts
        # times 0/1 outcomes, summed in float64).
        offsets = np.arange(replicates)[:, None] * n
        drawn = np.bincount((idx + offsets).ravel(), minlength=replicates * n)
        drawn = drawn.reshape(replicates, n).astype(np.float64)
        drawn.flags.writeable = False  # shared by every caller of the cache
        counts.append(drawn)
    return tuple(counts)


def resampled_accuracies(
    runs: Sequence[Outcomes], tasks: Sequence[str], replicates: int, seed: int
) -> np.ndarray:
    """Accuracies of ``runs`` under one shared bootstrap of each task's test rows.

    Returns A[b, run, point, task]: the accuracy of ``task`` at evaluation ``point`` in
    replicate b, every run scored on the same resampled rows in that replicate.
    """
    points = next(iter(runs[0].values())).shape[0]
    rows = tuple(runs[0][task].shape[1] for task in tasks)
    out = np.empty((replicates, len(runs), points, len(tasks)))
    every_count = resampled_row_counts(seed, replicates, rows)
    for j, (task, counts) in enumerate(zip(tasks, every_count, strict=True)):
        scored = np.concatenate([run[task] for run in runs]).astype(np.float64)  # [R*points, rows]
        sums = counts @ scored.T  # [B, R*points]
        out[:, :, :, j] = (sums / rows[j]).reshape(replicates, len(runs), points)
    return out


def observed_accuracies(runs: Sequence[Outcomes], tasks: Sequence[str]) -> np.ndarray:
    """A[run, point, task] from the full test rows (equals the runs' accuracy matrices)."""
    return np.stack(
        [np.stack([run[t].mean(axis=-1) for t in tasks], axis=-1) for run in runs]
    ).astype(float)


Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps accuracies [..., point, task] of one run to a value [...] (e.g. a BWT)."""


def seed_summary(
    runs: Sequence[Outcomes | None],
    tasks: Sequence[str],
    statistic: Statistic,
    replicates: int,
    seed: int,
    baseline: Sequence[Outcomes | None] | None = None,
) -> Summary:
    """The per-seed values of ``statistic`` (minus ``baseline``'s, paired by position:
    the same seed), summarised with the test-example variance of their mean.

    Every run must have outcomes; otherwise the caller summarises its stored numbers
    without test noise."""
    pairs = list(zip(runs, baseline, strict=True)) if baseline is not None else None
    mine = [p[0] for p in pairs] if pairs is not None else list(runs)
    other = [p[1] for p in pairs] if pairs is not None else []
    everything = [*mine, *other]
    if not everything or any(o is None for o in everything):
        raise ValueError("every run needs per-example outcomes")
    full = [o for o in everything if o is not None]
    observed = observed_accuracies(full, tasks)
    boot = resampled_accuracies(full, tasks, replicates, seed)
    n = len(mine)
    values = statistic(observed[:n])  # [n]
    draws = statistic(boot[:, :n])  # [B, n]
    if other:
        values = values - statistic(observed[n:])
        draws = draws - statistic(boot[:, n:])
    finite = np.isfinite(draws).all()
    test_variance = float(draws.mean(axis=1).var(ddof=1)) if finite else None
    return summarize([float(v) for v in values], test_variance)
