"""Continual-learning metrics over an accuracy matrix, as pure functions (no torch, no Lightning).

Notation (the README's metric table), with 0-based indices in the code:

- ``R[i][j]``: accuracy on task ``j`` after training task ``i``; a T × T matrix with ``None``
  where a head was not evaluated. ``R[i]`` is "row i", the evaluation after task ``i``.
- ``initial[j]`` (b_j): accuracy of task ``j``'s untrained head before any training.
- The last row is ``R[K-1]`` where K is the number of rows that exist (see below); the
  usual formulas are 1-based, so their ``R[T]`` is our ``R[K-1]`` and their ``j < T`` is our
  ``j < K-1``.

Partial matrices (a run stopped early after K < T tasks): trailing rows that are missing or
entirely ``None`` are dropped and every metric is computed as if the sequence had been the
first K tasks (columns ``j >= K`` are ignored: those tasks were never trained). Inside the
rows that exist, a ``None`` cell is "not evaluated" and its term is left out of the mean; a
metric with no term left is ``None``. A NaN or inf is a measurement, never "not evaluated":
it propagates into the metrics that use it (a perplexity that overflowed after the last
task makes ``ppl_ratio_final`` inf, instead of silently reporting an earlier ratio).

Metrics that need at least two trained tasks (BWT, both forgettings, FWT) are ``None``
for K = 1, never NaN, so that ``results.json`` stays valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]

METRIC_KEYS: tuple[str, ...] = (
    "avg_accuracy",
    "bwt",
    "forgetting_max",
    "forgetting_first",
    "fwt",
    "avg_incremental_accuracy",
    "ppl_ratio_final",
)


def _value(x: float | None) -> float | None:
    """A float, or None for a cell that was not evaluated (non-finite values stay as they are)."""
    return None if x is None else float(x)


def trained_rows(R: Matrix) -> list[list[float | None]]:
    """Rows that exist, as floats/None, with trailing all-missing rows dropped.

    Returns K rows of T entries (K <= T). Raises ValueError on ragged rows or more rows than
    columns, since row i only means something if it evaluates every one of the T tasks.
    """
    rows = [[_value(x) for x in row] for row in R]
    if not rows:
        return []
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        raise ValueError(f"accuracy matrix rows differ in length: {[len(r) for r in rows]}")
    if len(rows) > width:
        raise ValueError(f"accuracy matrix has {len(rows)} rows but only {width} tasks")
    while rows and all(x is None for x in rows[-1]):
        rows.pop()
    return rows


def _mean(terms: list[float | None]) -> float | None:
    present = [t for t in terms if t is not None]
    return sum(present) / len(present) if present else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def average_accuracy(R: Matrix) -> float | None:
    """ACC = mean_j R[K-1][j] over the K trained tasks (Lopez-Paz & Ranzato 2017).

    None when no row exists.
    """
    rows = trained_rows(R)
    if not rows:
        return None
    K = len(rows)
    return _mean(rows[-1][:K])


def backward_transfer(R: Matrix) -> float | None:
    """BWT = mean_{j<K-1} (R[K-1][j] − R[j][j]) (Lopez-Paz & Ranzato 2017, GEM).

    Negative BWT is forgetting. None for K < 2.
    """
    rows = trained_rows(R)
    K = len(rows)
    if K < 2:
        return None
    return _mean([_diff(rows[-1][j], rows[j][j]) for j in range(K - 1)])


def forgetting_max(R: Matrix) -> float | None:
    """Forgetting measure of Chaudhry et al. 2018 (RWalk), with the maximum starting at l = j.

    f_j = max_{j <= l <= K-2} R[l][j] − R[K-1][j], averaged over j < K-1: the best accuracy
    task ``j`` ever had, from the row right after it was trained (l = j) up to the row before
    the last, minus its final accuracy.

    Chaudhry et al. take the maximum over every earlier row, l in 0..K-2; here it starts
    at l = j because before task j is trained its head is untrained and says nothing (an
    untrained head that happens to beat the trained one would inflate f_j). None for K < 2.
    """
    rows = trained_rows(R)
    K = len(rows)
    if K < 2:
        return None
    terms: list[float | None] = []
    for j in range(K - 1):
        seen = [rows[row][j] for row in range(j, K - 1) if rows[row][j] is not None]
        terms.append(_diff(max(seen), rows[-1][j]) if seen else None)
    return _mean(terms)


def forgetting_first(R: Matrix) -> float | None:
    """Forgetting as first − last, Avalanche's convention (``avalanche.evaluation.metrics.
    forgetting_bwt.Forgetting``): mean_{j<K-1} (R[j][j] − R[K-1][j]).

    Equal to −BWT on a full matrix; kept separate because the two diverge once cells are
    missing and because papers report either. None for K < 2.
    """
    rows = trained_rows(R)
    K = len(rows)
    if K < 2:
        return None
    return _mean([_diff(rows[j][j], rows[-1][j]) for j in range(K - 1)])


def forward_transfer(R: Matrix, initial: Sequence[float | None]) -> float | None:
    """FWT = mean_{1<=j<=K-1} (R[j-1][j] − b_j) (Lopez-Paz & Ranzato 2017, GEM).

    How much training the earlier tasks helps task ``j`` before it is trained, against
    ``b_j = initial[j]``, the accuracy of its untrained head before any training. Uses
    ``initial`` of length T (one per task). None for K < 2.

    Read it with care: with one head per task, ``R[j-1][j]`` and ``b_j`` score the same
    *untrained* head j, so this FWT only sees how far the backbone's features drifted,
    through a random projection; it is exactly 0 for ``head_only`` (the backbone never
    changes) and says nothing about whether earlier tasks made task j easier to learn. A
    probe-based forward transfer (a fresh linear probe on frozen features) measures that.
    """
    rows = trained_rows(R)
    K = len(rows)
    if rows and len(initial) != len(rows[0]):
        raise ValueError(f"initial has {len(initial)} entries, accuracy matrix {len(rows[0])}")
    if K < 2:
        return None
    return _mean([_diff(rows[j - 1][j], _value(initial[j])) for j in range(1, K)])


def average_incremental_accuracy(R: Matrix) -> float | None:
    """mean_k mean_{j<=k} R[k][j] over the K rows (Rebuffi et al. 2017, iCaRL).

    The average, over the sequence, of the accuracy on the tasks seen so far. A row with no
    evaluated cell among j <= k is left out. None when no row exists.
    """
    rows = trained_rows(R)
    return _mean([_mean(row[: k + 1]) for k, row in enumerate(rows)])


def perplexity_ratio(initial: float | None, final: float | None) -> float | None:
    """final / initial perplexity: > 1 means the language model got worse.

    None when either is missing (or not positive, which no perplexity can be). A final
    perplexity that overflowed gives inf, a NaN one NaN: the ratio shows what happened.
    """
    a, b = _value(initial), _value(final)
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    if math.isinf(a):
        return math.nan  # inf / anything: no finite reference to compare with
    return b / a


def last_measured(values: Sequence[float | None]) -> float | None:
    """The last measured (non-None) entry of ``values``, inf and NaN included: e.g. the
    perplexity after the last trained task, whatever it came out as."""
    for v in reversed(values):
        if v is not None:
            return _value(v)
    return None


def summarize(
    R: Matrix,
    initial: Sequence[float | None],
    ppl_initial: float | None,
    ppl_after: Sequence[float | None],
) -> dict[str, float | None]:
    """All the metrics above in one dict with exactly the keys of :data:`METRIC_KEYS`.

    ``ppl_ratio_final`` compares the last measured entry of ``ppl_after`` with
    ``ppl_initial`` (so a run stopped early reports the ratio where it stopped).
    """
    return {
        "avg_accuracy": average_accuracy(R),
        "bwt": backward_transfer(R),
        "forgetting_max": forgetting_max(R),
        "forgetting_first": forgetting_first(R),
        "fwt": forward_transfer(R, initial),
        "avg_incremental_accuracy": average_incremental_accuracy(R),
        "ppl_ratio_final": perplexity_ratio(ppl_initial, last_measured(ppl_after)),
    }
