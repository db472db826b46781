"""Whether the runs a report pairs by test example were scored on the same test rows.

The intervals resample each task's test rows once for every run of a comparison
(``curlora.reporting.stats``): row k of one run is paired with row k of every other, so
every run must have the same number of rows of each task. Each run's ``outcomes.json`` is
checked against its own ``results.json`` (``curlora.reporting.outcomes_check``), but two
received runs can each agree with themselves and still disagree with each other (one
file's every string doubled, its recorded split size doubled too): pairing them would stop
the whole report with an array error that names no file.

:func:`leave_out_odd_row_counts` compares the runs of one report: each run votes, per
task, with the rows it records (its eval split size in ``results.json``, else the length of
its outcome strings), and a run whose outcomes have another count than the most common one
is named in a warning and its outcomes are left out, as outcomes that disagree with
``results.json`` are: its intervals are over seeds alone and the report lists it. When no
count is the most common on its own (a tie), none can be trusted over another and every
run with outcomes of that task is left out. Genuine runs of one grid share their eval
splits, so this leaves nothing out of them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence

from curlora.reporting.grid import GridRun
from curlora.reporting.outcomes_check import eval_sizes
from curlora.reporting.untrusted import shown

log = logging.getLogger("curlora")


def _used_rows(run: GridRun) -> dict[str, set[int]]:
    """task -> the row counts of the run's outcomes the report would use (both scores)."""
    counts: dict[str, set[int]] = defaultdict(set)
    for outcomes in (run.outcomes, run.exact_match_outcomes):
        for task, array in (outcomes or {}).items():
            counts[task].add(int(array.shape[-1]))
    return counts


def _votes(runs: Sequence[GridRun]) -> dict[str, Counter[int]]:
    """task -> how many runs record each row count: the eval split size ``results.json``
    records, else the run's outcomes (a run whose two scores differ casts no vote)."""
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    for run in runs:
        recorded = eval_sizes(run.results)
        used = _used_rows(run)
        for task in run.tasks:
            counts = {recorded[task]} if task in recorded else used.get(task, set())
            if len(counts) == 1:
                votes[task][next(iter(counts))] += 1
    return votes


def _expected(counts: Counter[int]) -> int | None:
    """The most common row count, None when another is as common (or none is recorded)."""
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def _problem(run: GridRun, votes: dict[str, Counter[int]]) -> str | None:
    """Why ``run``'s outcomes cannot be paired with the others', or None when they can."""
    for task, counts in _used_rows(run).items():
        if len(counts) > 1:
            return f"{task}: eval and eval_exact_match have different numbers of rows"
        (rows,) = counts
        expected = _expected(votes[task])
        if expected is None:
            seen = ", ".join(f"{n} in {k}" for n, k in sorted(votes[task].items()))
            return f"{task}: the runs disagree on its test rows (runs with each count: {seen})"
        if rows != expected:
            return (
                f"{task}: {rows} test rows, where {votes[task][expected]} of the "
                f"{sum(votes[task].values())} runs record {expected}"
            )
    return None


def leave_out_odd_row_counts(runs: Sequence[GridRun]) -> None:
    """Leave out the outcomes of every run in ``runs`` (the runs of one report, whose
    outcomes it pairs by test example) that do not have the runs' common row count of each
    task; each one is named in a warning. Genuine runs of one grid are left as they are."""
    votes = _votes(runs)
    for run in runs:
        problem = _problem(run, votes)
        if problem is None:
            continue
        why = shown(f"cannot be paired with the other runs' rows: {problem}")
        log.warning(
            "%s %s; this run's outcomes are left out (its intervals are over seeds alone)",
            shown(run.path / "outcomes.json"),
            why,
        )
        run.leave_out_outcomes(why)
