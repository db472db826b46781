"""Verdicts on the paper's claims from a grid's runs (rules in the module docstring of
``curlora.reporting.reproduction``): paired differences by seed, 95 % intervals, margins."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from curlora.reporting.grid import Setting
from curlora.reporting.stats import Summary, summarize

ACCURACY_MARGIN = 0.02  # "keeps" / "matches": within 2 points of accuracy
PPL_MARGIN = 1.05  # "keeps perplexity": a final / initial ratio below 1.05


def learned_tasks(setting: Setting, head_only: Setting | None) -> tuple[list[int], list[str]]:
    """Tasks whose accuracy right after their training is above both controls (on the
    mean over seeds), and the names of those that are not."""
    any_run = next(iter(setting.runs.values()))
    tasks, majority = any_run.tasks, any_run.results["majority_baseline"]
    learned: list[int] = []
    not_learned: list[str] = []
    for j, task in enumerate(tasks):
        own = setting.summary(lambda r, j=j: r.diagonal()[j]).mean
        probe = head_only.summary(lambda r, j=j: r.diagonal()[j]).mean if head_only else -math.inf
        if own > max(majority[j], probe):
            learned.append(j)
        else:
            not_learned.append(task)
    return learned, not_learned


def _paired(a: Setting, b: Setting, value: Any) -> Summary:
    seeds = sorted(set(a.runs) & set(b.runs))
    diffs = []
    for seed in seeds:
        x, y = value(a.runs[seed]), value(b.runs[seed])
        diffs.append(None if x is None or y is None else x - y)
    return summarize(diffs)


def _bwt_on_learned(setting: Setting, head_only: Setting | None) -> tuple[Summary, str]:
    """BWT over the tasks ``setting`` learned (above both controls), and a note naming
    the tasks it did not learn (a task never learned cannot be forgotten)."""
    learned, missed = learned_tasks(setting, head_only)
    bwt = setting.summary(lambda r: r.learned_bwt(learned))
    return bwt, f" (not learned: {', '.join(missed)})" if missed else ""


def _verdict(holds: bool, fails: bool) -> str:
    return "holds" if holds else ("does not hold" if fails else "inconclusive")


def verdicts(settings: Sequence[Setting]) -> list[tuple[str, str, str]]:
    """``(claim, verdict, evidence)`` rows; see the module docstring for the rules."""
    by_method: dict[str, list[Setting]] = defaultdict(list)
    for s in settings:
        by_method[s.label.split(" ")[0]].append(s)
    head = by_method.get("head_only", [None])[0]
    out: list[tuple[str, str, str]] = []
    for cur in by_method.get("curlora", []):
        rank = cur.label.split(" ")[1]
        bwt, note = _bwt_on_learned(cur, head)
        out.append(
            (
                f"C1 CURLoRA keeps earlier tasks' accuracy ({rank})",
                _verdict(
                    bwt.low is not None and bwt.low > -ACCURACY_MARGIN,
                    bwt.high is not None and bwt.high < -ACCURACY_MARGIN,
                )
                if bwt.n
                else "inconclusive",
                f"BWT on learned tasks {bwt}, 95 % CI {bwt.interval()}{note}",
            )
        )
        cur_ppl = cur.summary(lambda r: r.ppl_ratio())
        for lora in [
            s
            for m in ("lora", "lora_paper")
            for s in by_method.get(m, [])
            if s.label.split(" ")[1] == rank
        ]:
            name = lora.label.split(" ")[0]
            bwt_l, note_l = _bwt_on_learned(lora, head)
            out.append(
                (
                    f"C2 {name} loses earlier tasks' accuracy ({rank})",
                    _verdict(
                        bwt_l.high is not None and bwt_l.high < -ACCURACY_MARGIN,
                        bwt_l.low is not None and bwt_l.low > -ACCURACY_MARGIN,
                    )
                    if bwt_l.n
                    else "inconclusive",
                    f"BWT on learned tasks {bwt_l}, 95 % CI {bwt_l.interval()}{note_l}",
                )
            )
            lora_ppl = lora.summary(lambda r: r.ppl_ratio())
            diff = _paired(lora, cur, lambda r: r.ppl_ratio())
            keeps = cur_ppl.high is not None and cur_ppl.high < PPL_MARGIN
            grows = lora_ppl.low is not None and lora_ppl.low > PPL_MARGIN
            contradicted = (cur_ppl.low is not None and cur_ppl.low > PPL_MARGIN) or (
                lora_ppl.high is not None and lora_ppl.high < PPL_MARGIN
            )
            out.append(
                (
                    f"C3 CURLoRA keeps perplexity while {name}'s grows ({rank})",
                    _verdict(keeps and grows, contradicted),
                    f"ratio CURLoRA {cur_ppl} CI {cur_ppl.interval()}, {name} {lora_ppl} CI "
                    f"{lora_ppl.interval()}; paired difference {diff} CI {diff.interval()}",
                )
            )
            tasks = next(iter(cur.runs.values())).tasks
            diffs = [_paired(cur, lora, lambda r, j=j: r.diagonal()[j]) for j in range(len(tasks))]
            out.append(
                (
                    f"C4 CURLoRA matches {name} on each new task ({rank})",
                    _verdict(
                        all(d.low is not None and d.low > -ACCURACY_MARGIN for d in diffs),
                        any(d.high is not None and d.high < -ACCURACY_MARGIN for d in diffs),
                    ),
                    "; ".join(
                        f"{t}: {d} CI {d.interval()}" for t, d in zip(tasks, diffs, strict=True)
                    ),
                )
            )
        if head is not None:
            tasks = next(iter(cur.runs.values())).tasks
            gains = [_paired(cur, head, lambda r, j=j: r.diagonal()[j]) for j in range(len(tasks))]
            out.append(
                (
                    f"C5 CURLoRA's accuracy comes from the adapter, not the head ({rank})",
                    _verdict(
                        all(g.low is not None and g.low > 0 for g in gains),
                        all(g.high is not None and g.high <= ACCURACY_MARGIN for g in gains),
                    ),
                    "gain over head_only right after each task: "
                    + "; ".join(
                        f"{t}: {g} CI {g.interval()}" for t, g in zip(tasks, gains, strict=True)
                    ),
                )
            )
    return out


def inert_methods(settings: Sequence[Setting]) -> list[str]:
    """Methods that beat ``head_only`` on no task (right after its training, on the mean)."""
    head = next((s for s in settings if s.label == "head_only"), None)
    if head is None:
        return []
    out = []
    for s in settings:
        if s is head:
            continue
        tasks = next(iter(s.runs.values())).tasks
        gains = [_paired(s, head, lambda r, j=j: r.diagonal()[j]).mean for j in range(len(tasks))]
        if not any(g > 0 for g in gains if not math.isnan(g)):
            out.append(s.label)
    return out
