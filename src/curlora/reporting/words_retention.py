"""What the base model knew, in a words grid's report: the retention suite (lm-eval's
multiple-choice tasks, scored before training and after every task on the same fixed rows
for every run) read per setting.

- :func:`retention_ratio`: Table 2's column, the suite's mean accuracy after the last task
  over its mean before training;
- :func:`retention_rows`: the rule's question, CURLoRA against each other method on the
  suite's mean accuracy after the last task, paired by seed;
- :func:`retention_section`: each suite task on its own, and which suite tasks share their
  answer words with a task the sequence trains. Under ``head=words`` such a suite task is
  not only "what the base model knew": training a task that answers " positive" /
  " negative" trains the answer format of a suite task that asks for positive / negative,
  so its accuracy can rise with training and a method's retention mean then says as much
  about how well it learned the sequence as about what it kept. The section gives the
  question again over the other suite tasks, labelled as a reading beside the rule's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

from curlora.reporting.claims import difference_words, per_seed, points
from curlora.reporting.grid import GridRun, Rules, Setting
from curlora.reporting.stats import (
    MIN_SEEDS,
    Statistic,
    Summary,
    interval_text,
    seed_summary,
    summarize,
)
from curlora.reporting.tables import markdown
from curlora.retention.items import FIXED_ANSWERS


def resamplable(runs: Sequence[GridRun]) -> bool:
    """Whether every run recorded the suite's per-row outcomes at every point, on the same
    suite tasks with the same rows (as a grid's runs do: one ``limit`` for all), so one
    bootstrap of the suite's rows can be shared by all of them."""
    arrays = [run.retention_outcomes for run in runs]
    if not runs or any(a is None for a in arrays):
        return False
    shapes = {
        tuple((t, a[t].shape) for t in run.results["retention"]["tasks"])
        for run, a in zip(runs, arrays, strict=True)
    }
    return len(shapes) == 1


def suite_summary(
    rules: Rules,
    runs: Sequence[GridRun],
    value: Callable[[GridRun], float | None],
    statistic: Statistic,
    baseline: Sequence[GridRun] | None = None,
) -> Summary:
    """A retention statistic over seeds (minus ``baseline``'s, paired by position: the same
    seed). When every run recorded the suite's per-row outcomes (:func:`resamplable`), the
    interval also carries the rows' own noise: ``statistic`` (retention accuracies
    [..., point, suite task] -> [...]) is recomputed on one bootstrap of the suite's rows
    shared by every run, as the tasks' intervals are. Otherwise ``value`` (the same number
    from ``results.json``) gives an interval over seeds alone."""
    everything = [*runs, *(baseline or [])]
    if resamplable(everything):
        tasks = list(everything[0].results["retention"]["tasks"])
        return seed_summary(
            [run.retention_outcomes for run in runs],
            tasks,
            statistic,
            rules.replicates,
            rules.bootstrap_seed,
            baseline=None if baseline is None else [run.retention_outcomes for run in baseline],
        )
    if baseline is None:
        return summarize(value(run) for run in runs)
    diffs = []
    for mine, other in zip(runs, baseline, strict=True):
        a, b = value(mine), value(other)
        diffs.append(None if a is None or b is None else a - b)
    return summarize(diffs)


def kept_indices(run: GridRun, exclude: Collection[str]) -> list[int]:
    """Positions of the run's suite tasks not in ``exclude``."""
    tasks = (run.results.get("retention") or {}).get("tasks") or []
    return [i for i, task in enumerate(tasks) if task not in exclude]


def final_statistic(keep: Sequence[int]) -> Statistic:
    """The suite's mean accuracy after the last task over the tasks at ``keep``."""
    return lambda a: a[..., -1, :][..., list(keep)].mean(axis=-1)


def ratio_statistic(keep: Sequence[int]) -> Statistic:
    """The suite's mean accuracy after the last task over its mean before training."""
    return lambda a: (
        a[..., -1, :][..., list(keep)].mean(axis=-1) / a[..., 0, :][..., list(keep)].mean(axis=-1)
    )


def ratio_summary(rules: Rules, setting: Setting, exclude: Collection[str] = ()) -> Summary:
    """Table 2's retention ratio of ``setting`` (over the suite tasks not in ``exclude``)."""
    runs = list(setting.runs.values())
    keep = kept_indices(runs[0], exclude) if runs else []
    if not keep:
        return summarize([])
    return suite_summary(
        rules,
        runs,
        lambda run: retention_ratio(run, exclude),
        ratio_statistic(keep),
    )


def retention_ratio(run: GridRun, exclude: Collection[str] = ()) -> float | None:
    """Mean retention accuracy after the last task over its mean before training, over the
    suite tasks not in ``exclude`` (None when the run carried no retention suite, a point is
    missing or no task is left)."""
    retention = run.results.get("retention")
    if not retention:
        return None
    keep = kept_indices(run, exclude)
    first, last = retention["acc"][0], retention["acc"][-1]
    if not keep or first is None or last is None or not sum(first[i] for i in keep):
        return None
    return float(np.mean([last[i] for i in keep]) / np.mean([first[i] for i in keep]))


def final_retention(run: GridRun, exclude: Collection[str] = ()) -> float | None:
    """The retention suite's mean accuracy after the last task over its tasks not in
    ``exclude`` (None without the suite, its last point, or a task left)."""
    tasks = (run.results.get("retention") or {}).get("tasks") or []
    finals = [_final(run, task) for task in tasks if task not in exclude]
    if not finals or None in finals:
        return None
    return float(np.mean(finals))


def shared_answer_tasks(runs: Sequence[GridRun]) -> dict[str, list[str]]:
    """Suite task -> the trained tasks whose label words include one of its fixed answer
    words (case and the leading space ignored), for the suite tasks of ``runs`` that have
    such a task; empty under ``head=linear`` (no label words)."""
    trained: dict[str, set[str]] = {}
    suite: list[str] = []
    for run in runs:
        prompts = (run.results.get("head") or {}).get("prompts") or {}
        for task, prompt in prompts.items():
            words = {str(w).strip().casefold() for w in prompt.get("label_words") or []}
            trained.setdefault(task, set()).update(words)
        for task in (run.results.get("retention") or {}).get("tasks") or []:
            if task not in suite:
                suite.append(task)
    shared = {}
    for task in suite:
        answers = {w.casefold() for w in FIXED_ANSWERS.get(task, ())}
        if hits := [t for t, words in trained.items() if words & answers]:
            shared[task] = hits
    return shared


def retention_rows(
    rules: Rules,
    settings: Sequence[Setting],
    exclude: Collection[str] = (),
    reading: str = "",
) -> list[tuple[str, str, str]]:
    """Does CURLoRA keep more of what the base model knew than each other method? The
    paired difference (by seed) of the retention suite's mean accuracy after the last task
    (over the suite tasks not in ``exclude``); every run starts from the same base model on
    the same rows, so this is also the difference in how much each lost. The interval is
    over seeds only: the suite's rows are the same fixed subset for every run and their
    per-example outcomes are not stored. ``reading`` is added to the numbers column."""
    over = f" without {', '.join(sorted(exclude))}" if exclude else ""
    rows = []
    for cur in [s for s in settings if s.method == "curlora"]:
        for other in [s for s in settings if s.method != "curlora" and s.rank == cur.rank]:
            seeds = sorted(set(cur.runs) & set(other.runs))
            mine = [cur.runs[seed] for seed in seeds]
            keep = kept_indices(mine[0], exclude) if mine else []
            if not keep:
                continue
            d = suite_summary(
                rules,
                mine,
                lambda run: final_retention(run, exclude),
                final_statistic(keep),
                baseline=[other.runs[seed] for seed in seeds],
            )
            if not d.n:
                continue
            noise = (
                "over seeds and the suite's rows"
                if d.test_noise
                else "over seeds; the suite's fixed rows' own noise is not in it"
            )
            rows.append(
                (
                    f"Does CURLoRA keep more of what the base model knew than {other.method}"
                    f"{over}? (r{cur.rank}, retention accuracy after the last task, CURLoRA − "
                    f"{other.method})",
                    difference_words(
                        d,
                        rules.accuracy_margin,
                        "CURLoRA keeps more",
                        "CURLoRA keeps less",
                        f"{rules.accuracy_margin:g}",
                        lambda low, high: (
                            f"CURLoRA may keep up to {points(-low)} points less or "
                            f"{points(high)} more"
                        ),
                    ),
                    f"{d} CI {interval_text(d)} ({noise}); "
                    f"seeds {','.join(map(str, seeds))}"
                    + per_seed(_seed_differences(cur, other, seeds, exclude), lambda v: f"{v:+.3f}")
                    + reading,
                )
            )
    return rows


def _seed_differences(
    cur: Setting, other: Setting, seeds: Sequence[int], exclude: Collection[str]
) -> list[float | None]:
    """Each seed's CURLoRA − other retention after the last task (None where one is missing),
    printed beside a verdict on few seeds."""
    values = []
    for seed in seeds:
        mine, theirs = (final_retention(s.runs[seed], exclude) for s in (cur, other))
        values.append(None if mine is None or theirs is None else mine - theirs)
    return values


def shared_reading(shared: dict[str, list[str]]) -> str:
    """Why a question is asked again without the suite tasks in ``shared``, for its row."""
    why = "; ".join(
        f"{task}'s answers ({'/'.join(FIXED_ANSWERS[task])}) are label words of "
        f"{', '.join(trained)}"
        for task, trained in shared.items()
    )
    return (
        "; a reading beside the rule's verdict over the whole suite, added after the first "
        f"runs: {why}"
    )


def suite_table(rules: Rules, settings: Sequence[Setting]) -> str:
    """Each suite task's accuracy after the last task (mean ± std over seeds, 95 % CI:
    :func:`suite_summary`) per setting, with the base model's before training (the same rows
    for every run) in the header."""
    runs = [r for s in settings for r in s.runs.values() if r.results.get("retention")]
    if not runs:
        return "No run carried the retention suite."
    retention = runs[0].results["retention"]
    tasks, n, before = retention["tasks"], retention["n"], retention["acc"][0]
    header = ["setting", "seeds"] + [
        f"{task} (before {acc:.2f}, {rows} rows)"
        for task, acc, rows in zip(tasks, before, n, strict=True)
    ]
    rows = []
    for setting in settings:
        cells = []
        for j, task in enumerate(tasks):
            d = suite_summary(
                rules,
                list(setting.runs.values()),
                lambda r, task=task: _final(r, task),
                lambda a, j=j: a[..., -1, j],
            )
            cells.append(f"{d} {interval_text(d, (0.0, 1.0))}" if d.n else "-")
        rows.append([setting.label, ",".join(str(s) for s in sorted(setting.runs)), *cells])
    return markdown(header, rows)


def _final(run: GridRun, task: str) -> float | None:
    """``run``'s accuracy on suite task ``task`` after the last task (None without it)."""
    retention = run.results.get("retention")
    last = retention["acc"][-1] if retention else None
    if last is None or task not in retention["tasks"]:
        return None
    return float(last[retention["tasks"].index(task)])


def retention_section(
    rules: Rules, settings: Sequence[Setting], references: Sequence[Setting]
) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The report's retention section (its lines) and the questions it adds beside the
    rule's (the same question without the suite tasks the sequence trains, if any)."""
    every = [r for s in [*settings, *references] for r in s.runs.values()]
    shared = shared_answer_tasks(every)
    lines = [
        "## What the base model knew: the retention suite task by task",
        "",
        "Accuracy after the last task on each suite task (lm-eval, the same fixed rows for "
        f"every run; mean ± std over seeds, 95 % CI {_noise_words(every)}, none below "
        f"{MIN_SEEDS} seeds). Table 2's retention ratio and the rule's question average "
        f"them. {_row_noise_sentence(every)}",
        "",
        suite_table(rules, [*settings, *references]),
        "",
    ]
    extra: list[tuple[str, str, str]] = []
    if shared:
        for task, trained in shared.items():
            lines.append(
                f"- **{task} shares its answer words with the trained sequence**: its answers "
                f"({' / '.join(FIXED_ANSWERS[task])}) are label words of "
                f"{', '.join(trained)}. Training those tasks trains its answer format, so "
                "its accuracy can rise above the base model's, and a method's retention mean "
                "then also measures how well it learned the sequence. The question (CURLoRA "
                "against each other method) is asked again without it once such a pair has "
                "run, as a reading beside the rule's verdict, added after the first runs "
                "showed the rise (not fixed before them); Table 2's last column is the "
                "retention ratio without it."
            )
        lines.append("")
        extra = retention_rows(rules, settings, exclude=set(shared), reading=shared_reading(shared))
    return lines, extra


def _rows_recorded(runs: Sequence[GridRun]) -> tuple[int, int]:
    """(runs that carried the suite, those of them without per-row outcomes)."""
    suite = [r for r in runs if r.results.get("retention")]
    return len(suite), sum(r.retention_outcomes is None for r in suite)


def _noise_words(runs: Sequence[GridRun]) -> str:
    """What the section's intervals are over."""
    suite, without = _rows_recorded(runs)
    if suite and not without:
        return "over seeds and the suite's rows"
    if without < suite:
        return "over seeds, and over the suite's rows where every run of a cell recorded them"
    return "over seeds"


def _row_noise_sentence(runs: Sequence[GridRun]) -> str:
    """How the section's intervals treat the rows' own noise: resampled where every run of
    a cell recorded its per-row outcomes, else left out and sized (the binomial errors)."""
    suite, without = _rows_recorded(runs)
    if suite and not without:
        return (
            "The intervals carry the rows' own noise: one bootstrap of the suite's rows, "
            "shared by every run, as the trained tasks' intervals resample theirs."
        )
    where = (
        "The intervals leave out"
        if without == suite
        else f"Where a cell has a run without its per-row outcomes ({without} of {suite} "
        "runs), its interval leaves out"
    )
    return (
        f"{where} the rows' own noise (the same rows for every run): {_row_noise(runs)}, so "
        "a change from before smaller than about twice that is within the rows' noise."
    )


def _row_noise(runs: Sequence[GridRun]) -> str:
    """The binomial standard error of each suite task's accuracy before training,
    sqrt(p (1 - p) / rows): the noise of a fixed subset of that many rows."""
    retention = next((r.results["retention"] for r in runs if r.results.get("retention")), None)
    if not retention:
        return "no suite ran"
    errors = [
        f"{task} ±{np.sqrt(p * (1 - p) / n):.3f}"
        for task, p, n in zip(retention["tasks"], retention["acc"][0], retention["n"], strict=True)
    ]
    return "binomial standard errors before training " + ", ".join(errors)
