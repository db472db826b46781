"""Summaries over seeds: mean, sample standard deviation and a 95 % confidence interval.

The interval is Student's t interval for the mean, mean ± t(0.975, n − 1) · s / √n: with 3
seeds t = 4.303, so an interval is wide unless the seeds agree. ``None`` values (not
measured) are left out; a non-finite value (a perplexity that blew up) makes the summary
non-finite, so it shows instead of disappearing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

# Two-sided 95 % quantiles of Student's t by degrees of freedom (standard tables).
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042,
}  # fmt: skip


def t_quantile(df: int) -> float:
    """t(0.975, df); between table rows the next smaller df (a slightly wider interval)."""
    if df >= 30:
        return 1.96 if df > 120 else T_975[30]
    return T_975[max(k for k in T_975 if k <= df)]


@dataclass(frozen=True)
class Summary:
    """n values: their mean, sample std and the 95 % interval (None when n < 2)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if not math.isfinite(self.mean):
            return str(self.mean)
        return f"{self.mean:.3f}" + (f" ± {self.std:.3f}" if self.std is not None else "")

    def interval(self) -> str:
        if self.low is None or self.high is None:
            return "n/a (one seed)"
        return f"[{self.low:+.3f}, {self.high:+.3f}]"


def summarize(values: Iterable[float | None]) -> Summary:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Summary(0, math.nan, None, None, None)
    mean = statistics.fmean(xs) if all(math.isfinite(x) for x in xs) else math.fsum(xs) / len(xs)
    if len(xs) < 2 or not math.isfinite(mean):
        return Summary(len(xs), mean, None, None, None)
    std = statistics.stdev(xs)
    half = t_quantile(len(xs) - 1) * std / math.sqrt(len(xs))
    return Summary(len(xs), mean, std, mean - half, mean + half)
