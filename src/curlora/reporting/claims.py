"""Verdicts from a grid's runs: the headline question and the paper's claims.

Every verdict reads a 95 % interval (``curlora.reporting.stats``: seeds and test examples)
against a margin fixed in the grid config before the runs:

- it **holds** when the interval lies entirely on the claim's side of the margin,
- it **does not hold** when it lies entirely on the other side,
- otherwise there is **no evidence of a difference** (one wording for the headline and the
  claims), followed by what the interval still allows ("CURLoRA may forget up to 7.0
  points more or 4.8 less").

Comparisons between methods are paired by seed (the seeds both ran) and by test example
(one bootstrap draw of rows serves both). Ratios (perplexity) are compared on the log
scale. **Learned tasks** have one definition (:func:`learned_tasks`): a task is learned in
a comparison when *every* method compared beats both controls on it, on the mean over
seeds of its accuracy right after its own training, by the accuracy margin: above the
majority-class rate and above ``head_only`` (same heads, frozen backbone). Forgetting is
counted on that one task set, the same for every method compared, and BWT over all tasks
is reported beside it.

The headline question — does CURLoRA forget less than LoRA? — is answered with paired
differences CURLoRA − other in BWT (learned tasks) and in log perplexity ratio, worded
"forgets less", "forgets more" (each saying whether it holds beyond the margin or only
beyond zero), "equivalent within the margin" or "no evidence of a difference" (the
interval straddles zero and reaches past the margin). No verdict rests on fewer than
:data:`~curlora.reporting.stats.MIN_SEEDS` paired seeds: below it the answer is "no evidence
of a difference (no interval)", whatever two seeds show. Where few seeds carry a verdict (t
with ≤ 2 degrees of freedom), each seed's own value is printed beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from curlora.reporting.grid import GridRun, Rules, Setting
from curlora.reporting.stats import (
    MIN_SEEDS,
    LogSummary,
    Summary,
    interval_text,
    seed_summary,
    summarize,
    summarize_log,
)

Row = tuple[str, str, str]  # (claim, verdict, numbers)
NO_EVIDENCE = "no evidence of a difference"
FEW_SEEDS = 3
"""Up to this many seeds (t with ≤ 2 degrees of freedom: t(0.975) ≥ 4.3) the per-seed
values are printed beside a verdict: a wide interval can hide seeds that all agree."""


def verdict(holds: bool, fails: bool, allows: str = "") -> str:
    """ "holds", "does not hold", or :data:`NO_EVIDENCE` and what the interval allows."""
    if holds or fails:
        return "holds" if holds else "does not hold"
    return f"{NO_EVIDENCE}: {allows}" if allows else NO_EVIDENCE


def points(value: float) -> str:
    """An accuracy difference in percentage points, unsigned (0.07 → "7.0")."""
    return f"{abs(value) * 100:.1f}"


def bwt_task_names(tasks: Sequence[str], learned: Sequence[int]) -> str:
    """The tasks a BWT over ``learned`` covers: the learned ones before the last (the last
    task is never revisited, so it has no BWT); "none" when none is."""
    return ", ".join(tasks[j] for j in learned if j < len(tasks) - 1) or "none"


# ---------------------------------------------------------------- statistics of runs
def _bwt(learned: Sequence[int], tasks: int) -> Callable[[np.ndarray], np.ndarray]:
    """A[..., point, task] -> mean over learned earlier tasks j of R[T-1][j] − R[j][j]
    (point 0 is before training, point i + 1 after task i). NaN when no task counts."""
    earlier = [j for j in learned if j < tasks - 1]

    def statistic(a: np.ndarray) -> np.ndarray:
        if not earlier:
            return np.full(a.shape[:-2], np.nan)
        return np.mean([a[..., tasks, j] - a[..., j + 1, j] for j in earlier], axis=0)

    return statistic


def _diagonal(j: int) -> Callable[[np.ndarray], np.ndarray]:
    """A[..., point, task] -> R[j][j], task j's accuracy right after its own training."""
    return lambda a: a[..., j + 1, j]


def _stored(
    run: GridRun, statistic: Callable[[np.ndarray], np.ndarray], score: str = "acc"
) -> float | None:
    """``statistic`` on a run's stored ``score`` rows (no per-example outcomes)."""
    rows = run.score_rows(score)
    if not rows or any(v is None for row in rows for v in row):
        return None
    value = float(statistic(np.array(rows, dtype=float)))
    return None if math.isnan(value) else value


def paired_seeds(a: Setting, b: Setting | None = None) -> list[int]:
    return sorted(set(a.runs) & set(b.runs)) if b is not None else sorted(a.runs)


def statistic_summary(
    rules: Rules,
    a: Setting,
    statistic: Callable[[np.ndarray], np.ndarray],
    b: Setting | None = None,
    score: str = "acc",
) -> Summary:
    """``statistic`` of ``a``'s runs (minus ``b``'s, paired by seed) over seeds, with the
    test-example variance when every run has its per-example outcomes; ``score``: ``acc``
    or, under head=words, ``em`` (``GridRun.score_rows``)."""
    seeds = paired_seeds(a, b)
    if not seeds:
        return summarize([])
    mine = [a.runs[s] for s in seeds]
    other = [b.runs[s] for s in seeds] if b is not None else None
    everything = [*mine, *(other or [])]
    tasks = a.tasks
    if all(r.score_outcomes(score) is not None for r in everything):
        return seed_summary(
            [r.score_outcomes(score) for r in mine],
            tasks,
            statistic,
            rules.replicates,
            rules.bootstrap_seed,
            baseline=None if other is None else [r.score_outcomes(score) for r in other],
        )
    values = []
    for k, run in enumerate(mine):
        x = _stored(run, statistic, score)
        y = _stored(other[k], statistic, score) if other is not None else 0.0
        values.append(None if x is None or y is None else x - y)
    return summarize(values)


def ppl_summary(a: Setting) -> LogSummary:
    return summarize_log(r.ppl_ratio() for r in a.runs.values())


def paired_log_ratio(a: Setting, b: Setting) -> Summary:
    """log(ratio of a) − log(ratio of b) per common seed: < 0 means a's LM drifted less."""

    def log(x: float | None) -> float | None:
        if x is None:
            return None
        return math.log(x) if x > 0 and not math.isnan(x) else math.nan

    diffs = []
    for seed in paired_seeds(a, b):
        x, y = log(a.runs[seed].ppl_ratio()), log(b.runs[seed].ppl_ratio())
        diffs.append(None if x is None or y is None else x - y)
    return summarize(diffs)


# ---------------------------------------------------------------- learned tasks
def learned_tasks(
    settings: Sequence[Setting], head_only: Setting | None, margin: float
) -> tuple[list[int], list[str]]:
    """Tasks every setting learned: its mean accuracy right after the task's training
    beats the majority rate and ``head_only``'s mean by ``margin``. Returns the learned
    task indices and, for each other task, why it is not counted."""
    tasks, majority = settings[0].tasks, settings[0].majority
    learned: list[int] = []
    notes: list[str] = []
    # Name settings by method, and by rank too where one method appears at several.
    by_method = len({s.method for s in settings}) == len(settings)
    for j, task in enumerate(tasks):
        bar = majority[j]
        if head_only is not None:
            bar = max(bar, head_only.summary(lambda r, j=j: r.diagonal()[j]).mean)
        short = [
            f"{s.method if by_method else f'{s.method} r{s.rank}'} "
            f"{s.summary(lambda r, j=j: r.diagonal()[j]).mean:.3f}"
            for s in settings
            if not s.summary(lambda r, j=j: r.diagonal()[j]).mean > bar + margin
        ]
        if short:
            notes.append(f"{task} (bar {bar + margin:.3f}: {', '.join(short)})")
        else:
            learned.append(j)
    return learned, notes


def bwt_summary(
    rules: Rules,
    a: Setting,
    learned: Sequence[int] | None,
    b: Setting | None = None,
    score: str = "acc",
) -> Summary:
    """BWT of ``score`` over ``learned`` tasks (None: all tasks) of ``a`` (minus ``b``'s,
    paired)."""
    tasks = len(a.tasks)
    chosen = list(range(tasks) if learned is None else learned)
    if not [j for j in chosen if j < tasks - 1]:
        return summarize([])  # no earlier task counts: nothing could be forgotten
    return statistic_summary(rules, a, _bwt(chosen, tasks), b, score)


# ---------------------------------------------------------------- the headline question
def difference_words(
    d: Summary,
    margin: float,
    above: str,
    below: str,
    unit: str,
    allows: Callable[[float, float], str] | None = None,
) -> str:
    """The wording of a paired difference's interval: entirely above zero or entirely
    below (saying whether it also clears the margin), inside ±margin (equivalent), or
    none of these: no evidence of a difference, and ``allows(low, high)``, what the
    interval still allows. Below :data:`MIN_SEEDS` seeds there is no interval to read."""
    if d.low is None or d.high is None or d.n < MIN_SEEDS:
        return f"{NO_EVIDENCE} (no interval)"
    if d.low > 0 or d.high < 0:
        words, near = (above, d.low) if d.low > 0 else (below, d.high)
        if abs(near) > margin:
            return f"{words}, beyond the {unit} margin"
        return (
            f"{words}, but not beyond the {unit} margin (the interval's nearer end, "
            f"{near:+.3f}, lies within ±{margin:.3f})"
        )
    if -margin < d.low and d.high < margin:
        return f"equivalent within ±{unit}"
    return NO_EVIDENCE + (f": {allows(d.low, d.high)}" if allows is not None else "")


def per_seed(values: Sequence[float | None], fmt: Callable[[float], str]) -> str:
    """ "; per seed: a, b, c" for a verdict on few seeds (:data:`FEW_SEEDS`), else ""."""
    if not values or len(values) > FEW_SEEDS:
        return ""
    return "; per seed: " + ", ".join("n/a" if v is None else fmt(v) for v in values)


def headline(
    rules: Rules, settings: Sequence[Setting], head_only: Setting | None
) -> tuple[list[Row], list[int], list[str]]:
    """CURLoRA against each other headline method at the same rank, paired by seed:
    Δ BWT (learned tasks; CURLoRA − other: > 0 means CURLoRA forgets less) and Δ log
    perplexity ratio (< 0: CURLoRA's language model drifts less). Returns the rows, the
    common learned task set and the notes on tasks not counted."""
    compared = [s for s in settings if s.method in rules.headline_methods]
    if not compared:
        return [], [], []
    learned, notes = learned_tasks(compared, head_only, rules.accuracy_margin)
    return question_rows(rules, compared, learned), learned, notes


def question_rows(
    rules: Rules,
    compared: Sequence[Setting],
    learned: Sequence[int],
    exact_match: bool = False,
) -> list[Row]:
    """The headline question's two rows (forgetting, drift) for every CURLoRA setting in
    ``compared`` against each other method's setting at the same rank, on ``learned``;
    with ``exact_match`` (head=words) a third, forgetting in exact match, after the first."""
    rows: list[Row] = []
    curlora = [s for s in compared if s.method == "curlora"]
    covered = bwt_task_names(compared[0].tasks, learned) if compared else "none"
    for cur in curlora:
        for other in [s for s in compared if s.method != "curlora" and s.rank == cur.rank]:
            seeds = paired_seeds(cur, other)
            rows.append(_forgetting_row(rules, cur, other, learned, covered, "acc"))
            if exact_match:
                rows.append(_forgetting_row(rules, cur, other, learned, covered, "em"))
            p = paired_log_ratio(cur, other)
            log_margin = math.log(rules.ppl_margin)
            name = other.method
            rows.append(
                (
                    f"Does CURLoRA's language model drift less than {name}'s? "
                    f"(r{cur.rank}, log perplexity ratio CURLoRA − {name})",
                    difference_words(
                        p,
                        log_margin,
                        "CURLoRA's perplexity grows more",
                        "CURLoRA's perplexity grows less",
                        f"{(rules.ppl_margin - 1) * 100:g} % (log {rules.ppl_margin:g})",
                        lambda low, high, name=name: (
                            f"CURLoRA's perplexity ratio may be from ×{math.exp(low):.3f} to "
                            f"×{math.exp(high):.3f} {name}'s"
                        ),
                    ),
                    f"{p} CI {interval_text(p)} (as a ratio of ratios: {_exp_interval(p)}); "
                    f"seeds {_seeds(seeds)}"
                    + per_seed(_ratio_of_ratios(cur, other, seeds), lambda v: f"×{v:.2f}"),
                )
            )
    return rows


def _forgetting_row(
    rules: Rules,
    cur: Setting,
    other: Setting,
    learned: Sequence[int],
    covered: str,
    score: str,
) -> Row:
    """The forgetting question on ``score``: ``acc`` (accuracy; rank classification under
    head=words) or ``em`` (head=words' whole-vocabulary exact match)."""
    seeds = paired_seeds(cur, other)
    d = bwt_summary(rules, cur, learned, other, score=score)
    d_all = bwt_summary(rules, cur, None, other, score=score)
    seed_bwt = _paired_stored(cur, other, _bwt(learned, len(cur.tasks)), seeds, score=score)
    what, bwt = (
        ("earlier tasks", "BWT") if score == "acc" else ("earlier tasks' exact answers", "em-BWT")
    )
    return (
        f"Does CURLoRA forget {what} less than {other.method}? "
        f"(r{cur.rank}, {bwt} difference CURLoRA − {other.method})",
        difference_words(
            d,
            rules.accuracy_margin,
            "CURLoRA forgets less",
            "CURLoRA forgets more",
            f"{rules.accuracy_margin:g}",
            lambda low, high: (
                f"CURLoRA may forget up to {points(low)} points more or {points(high)} less"
            ),
        ),
        f"learned tasks ({covered}): {d} CI {interval_text(d)}; all tasks: {d_all} CI "
        f"{interval_text(d_all)}; seeds {_seeds(seeds)}"
        + per_seed(seed_bwt, lambda v: f"{v:+.3f}"),
    )


def _paired_stored(
    a: Setting,
    b: Setting,
    statistic: Callable[[np.ndarray], np.ndarray],
    seeds: Sequence[int],
    score: str = "acc",
) -> list[float | None]:
    """Per seed: ``statistic`` of a's stored ``score`` rows minus b's (the point values the
    interval is built around)."""
    out: list[float | None] = []
    for seed in seeds:
        x, y = _stored(a.runs[seed], statistic, score), _stored(b.runs[seed], statistic, score)
        out.append(None if x is None or y is None else x - y)
    return out


def _ratio_of_ratios(a: Setting, b: Setting, seeds: Sequence[int]) -> list[float | None]:
    """Per seed: a's perplexity ratio over b's (> 1: a's language model drifted more)."""
    out: list[float | None] = []
    for seed in seeds:
        x, y = a.runs[seed].ppl_ratio(), b.runs[seed].ppl_ratio()
        ok = x is not None and y is not None and y > 0 and math.isfinite(x / y)
        out.append(x / y if ok else None)
    return out


def _exp_interval(s: Summary) -> str:
    """A log-scale difference as a ratio, with its interval from :data:`MIN_SEEDS` seeds."""
    if s.low is None or s.high is None or s.n < MIN_SEEDS or not math.isfinite(s.mean):
        return f"×{math.exp(s.mean):.3f}" if s.n and math.isfinite(s.mean) else "n/a"
    return f"×{math.exp(s.mean):.3f} [×{math.exp(s.low):.3f}, ×{math.exp(s.high):.3f}]"


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds) + f" (n = {len(seeds)})"


# ---------------------------------------------------------------- the paper's claims
def claims(
    rules: Rules,
    settings: Sequence[Setting],
    head_only: Setting | None,
    learned: Sequence[int],
    notes: Sequence[str],
) -> list[Row]:
    """C1–C5 at each rank CURLoRA ran (rules in the module docstring)."""
    m, ppl_margin = rules.accuracy_margin, rules.ppl_margin
    not_counted = f" (not counted: {'; '.join(notes)})" if notes else ""
    rows: list[Row] = []
    others = [s for s in settings if s.method in rules.headline_methods and s.method != "curlora"]
    for cur in [s for s in settings if s.method == "curlora"]:
        rank = f"r{cur.rank}"
        covered = bwt_task_names(cur.tasks, learned)
        bwt = bwt_summary(rules, cur, learned)
        rows.append(
            (
                f"C1 CURLoRA keeps earlier tasks' accuracy ({rank})",
                verdict(_above(bwt, -m), _below(bwt, -m), _bwt_allows("CURLoRA", bwt)),
                f"BWT on learned tasks ({covered}) {bwt} CI {bwt.interval()}{not_counted}",
            )
        )
        own = ppl_summary(cur)
        rows.append(
            (
                f"C3a CURLoRA keeps its perplexity: ratio below {ppl_margin:g} ({rank})",
                verdict(
                    _below(own, ppl_margin), _above(own, ppl_margin), _ratio_allows("its", own)
                ),
                f"ratio {own} CI {own.interval()} (geometric mean over seeds)",
            )
        )
        for other in [s for s in others if s.rank == cur.rank]:
            name = other.method
            bwt_o = bwt_summary(rules, other, learned)
            rows.append(
                (
                    f"C2 {name} loses earlier tasks' accuracy ({rank})",
                    verdict(_below(bwt_o, -m), _above(bwt_o, -m), _bwt_allows(name, bwt_o)),
                    f"BWT on learned tasks ({covered}) {bwt_o} CI {bwt_o.interval()}{not_counted}",
                )
            )
            d = paired_log_ratio(cur, other)
            theirs = ppl_summary(other)
            rows.append(
                (
                    f"C3b CURLoRA's perplexity grows less than {name}'s ({rank})",
                    verdict(
                        _below(d, 0.0),
                        _above(d, 0.0),
                        _log_allows(f"CURLoRA's ratio over {name}'s", d),
                    ),
                    f"paired log ratio CURLoRA − {name} {d} CI {d.interval()} "
                    f"({_exp_interval(d)}); {name}'s ratio {theirs} CI {theirs.interval()}",
                )
            )
            diffs = [
                statistic_summary(rules, cur, _diagonal(j), other) for j in range(len(cur.tasks))
            ]
            rows.append(
                (
                    f"C4 CURLoRA learns each new task as well as {name}, within {m:g} "
                    f"(not worse by more; better counts) ({rank})",
                    verdict(
                        all(_above(x, -m) for x in diffs),
                        any(_below(x, -m) for x in diffs),
                        _tasks_allows(cur.tasks, diffs, -m, f"CURLoRA − {name}"),
                    ),
                    "; ".join(
                        f"{t}: {x} CI {x.interval()}" for t, x in zip(cur.tasks, diffs, strict=True)
                    ),
                )
            )
        if head_only is not None:
            gains = [
                statistic_summary(rules, cur, _diagonal(j), head_only)
                for j in range(len(cur.tasks))
            ]
            rows.append(
                (
                    f"C5 CURLoRA's accuracy comes from the adapter, not the head: above "
                    f"head_only by {m:g} on each task ({rank})",
                    # The same bar both ways: the accuracy margin, as for "learned".
                    verdict(
                        all(_above(g, m) for g in gains),
                        any(_below(g, m) for g in gains),
                        _tasks_allows(cur.tasks, gains, m, "the gain over head_only"),
                    ),
                    "gain over head_only right after each task: "
                    + "; ".join(
                        f"{t}: {g} CI {g.interval()}" for t, g in zip(cur.tasks, gains, strict=True)
                    ),
                )
            )
    return rows


def _bwt_allows(who: str, s: Summary) -> str:
    if s.low is None or s.high is None:
        return ""
    if s.high > 0:
        return f"{who} may lose up to {points(s.low)} points or gain up to {points(s.high)}"
    return f"{who} may lose from {points(s.high)} to {points(s.low)} points"


def _ratio_allows(whose: str, s: LogSummary) -> str:
    if s.low is None or s.high is None:
        return ""
    return f"{whose} ratio may be anywhere from ×{s.low:.3f} to ×{s.high:.3f}"


def _log_allows(what: str, s: Summary) -> str:
    if s.low is None or s.high is None:
        return ""
    return f"{what} may be anywhere from ×{math.exp(s.low):.3f} to ×{math.exp(s.high):.3f}"


def _tasks_allows(tasks: Sequence[str], diffs: Sequence[Summary], bar: float, what: str) -> str:
    """What the intervals that straddle ``bar`` allow, task by task, in points."""
    open_ = [
        f"{t} from {x.low * 100:+.1f} to {x.high * 100:+.1f} points"
        for t, x in zip(tasks, diffs, strict=True)
        if x.low is not None and x.high is not None and x.low <= bar <= x.high
    ]
    return f"{what} may be {'; '.join(open_)}" if open_ else ""


def _above(s: Summary | LogSummary, bar: float) -> bool:
    """The whole 95 % interval lies above ``bar``."""
    return s.low is not None and s.low > bar


def _below(s: Summary | LogSummary, bar: float) -> bool:
    """The whole 95 % interval lies below ``bar``."""
    return s.high is not None and s.high < bar


def inert_methods(settings: Sequence[Setting], rules: Rules) -> list[str]:
    """Settings that beat ``head_only`` on no task (right after its training, mean)."""
    head = next((s for s in settings if s.method == "head_only"), None)
    if head is None:
        return []
    out = []
    for s in settings:
        if s is head:
            continue
        gains = [statistic_summary(rules, s, _diagonal(j), head).mean for j in range(len(s.tasks))]
        if not any(g > 0 for g in gains if not math.isnan(g)):
            out.append(s.label)
    return out
