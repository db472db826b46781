"""A grid's protocol check: is forgetting measurable in this protocol at all?

A grid whose config has ``protocol_check`` (``configs/reproduce/table2_words.yaml``) runs
one method's whole learning-rate grid before anything else. At that method's rate chosen
by the grid's ``selection`` rule (validation carves, never the test split), its all-task
BWT is summarised over the grid's seeds with the test-example variance
(``claims.bwt_summary``), for accuracy and, under head=words, for exact match. The rule
written in the config decides whether forgetting is measurable:

    acc_bwt_ci_high < -margins.accuracy

the upper end of the 95 % interval of the acc-BWT below minus the accuracy margin:
forgetting resolved beyond the margin. When it is not, the grid switches once to the
config's ``fallback_overrides`` (fixed before any run), runs the check again under
``<runs>/fallback/`` and goes on there; the report shows both checks.

``protocol_check.json`` in the results directory records each check as it was decided,
so a resumed grid (or a fresh clone) takes the same branch without re-deciding it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curlora.reporting.claims import bwt_summary
from curlora.reporting.grid import (
    GridRun,
    Rules,
    choose_learning_rates,
    lr_grid_runs,
    table_settings,
)
from curlora.reporting.regular_file import read_text
from curlora.reporting.row_counts import leave_out_odd_row_counts
from curlora.reporting.stats import Summary
from curlora.run.atomic import atomic_write_text

RULE = "acc_bwt_ci_high < -margins.accuracy"
CHECK_FILE = "protocol_check.json"
FALLBACK = "fallback"  # the part prefix of every job run under the fallback protocol


@dataclass(frozen=True)
class ProtocolCheck:
    """One protocol check as decided: the method, its chosen rate, its BWTs and the verdict."""

    protocol: str  # "first" or "fallback"
    method: str
    lr: float | None
    seeds: list[int]
    acc_bwt: dict[str, Any]  # Summary as a dict (n, mean, std, low, high, test_noise)
    em_bwt: dict[str, Any] | None
    margin: float
    measurable: bool

    def line(self) -> str:
        """One line for the log and the report."""
        acc, em = Summary(**self.acc_bwt), self.em_bwt and Summary(**self.em_bwt)
        rate = "no completed runs" if self.lr is None else f"lr {self.lr:g}"
        verdict = "measurable" if self.measurable else "not measurable"
        # mean ± std over seeds, then the 95 % interval the rule reads (seeds and test rows)
        em_text = f", em-BWT {em} (95 % CI {em.interval()})" if em is not None and em.n else ""
        return (
            f"protocol check ({self.protocol} protocol): sequential {self.method} ({rate}, "
            f"seeds {', '.join(map(str, self.seeds)) or '-'}): acc-BWT {acc} "
            f"(95 % CI {acc.interval()}){em_text}; "
            f"forgetting {verdict} by the rule `{RULE}` (margin {self.margin:g})"
            + ("" if self.measurable else self.power())
        )

    def power(self) -> str:
        """What a "not measurable" means with these seeds: the interval's half-width, and
        so the mean acc-BWT the rule could have resolved (forgetting smaller than that is
        not shown to be absent, only not resolved)."""
        acc = Summary(**self.acc_bwt)
        if acc.low is None or acc.high is None or not math.isfinite(acc.high - acc.low):
            return ""
        half = (acc.high - acc.low) / 2
        return (
            f": not resolved, which does not show it absent; with {acc.n} seeds the "
            f"interval's half-width is {half:.3f}, so the rule resolves only a mean acc-BWT "
            f"below {-(self.margin + half):+.3f}"
        )


def check_config(grid: Any) -> None:
    """ValueError when the grid's ``protocol_check`` asks for a rule this code does not
    implement or names no method of the grid (caught before any run)."""
    check = grid.get("protocol_check")
    if not check:
        return
    if str(check.get("measurable")) != RULE:
        raise ValueError(
            f"reproduce.protocol_check.measurable={check.get('measurable')!r}: "
            f"the implemented rule is {RULE!r}"
        )
    if check.get("method") not in (grid.get("lrs") or {}):
        raise ValueError(
            f"reproduce.protocol_check.method={check.get('method')!r}: not a method of "
            f"reproduce.lrs ({sorted(grid.get('lrs') or {})})"
        )


def protocol_runs(runs: Sequence[GridRun], runs_dir: Path, fallback: bool) -> list[GridRun]:
    """The runs of one protocol: under ``<runs_dir>/fallback/`` or everywhere else."""
    out = []
    for run in runs:
        try:
            first = run.path.relative_to(runs_dir).parts[0]
        except (ValueError, IndexError):
            first = ""
        if (first == FALLBACK) == fallback:
            out.append(run)
    return out


def decide(runs: Sequence[GridRun], grid_file: Path, protocol: str, method: str) -> ProtocolCheck:
    """The check of ``method`` on ``runs`` (one protocol's), by the rules in ``grid_file``."""
    rules = Rules.read(grid_file)
    mine = [r for r in lr_grid_runs(runs, rules) if r.method == method]
    leave_out_odd_row_counts(runs)  # the seeds are paired by test example
    lr = choose_learning_rates(mine).get(method)
    acc = em = None
    seeds: list[int] = []
    if lr is not None:
        setting = table_settings(mine, {method: lr}, [method])[0]
        seeds = sorted(setting.runs)
        acc = bwt_summary(rules, setting, None)
        if all(r.answers_in_words for r in setting.runs.values()):
            em = bwt_summary(rules, setting, None, score="em")
    high = None if acc is None else acc.high
    measurable = high is not None and math.isfinite(high) and high < -rules.accuracy_margin
    empty = asdict(Summary(0, math.nan, None, None, None))
    return ProtocolCheck(
        protocol=protocol,
        method=method,
        lr=lr,
        seeds=seeds,
        acc_bwt=asdict(acc) if acc is not None else empty,
        em_bwt=None if em is None else asdict(em),
        margin=rules.accuracy_margin,
        measurable=measurable,
    )


class DamagedCheck(ValueError):
    """``protocol_check.json`` is not what :func:`record` wrote (the message names it)."""


def read_checks(results_dir: Path) -> list[ProtocolCheck]:
    """The checks recorded so far (none when the file is missing); DamagedCheck when the
    file is not what :func:`record` wrote: a decision is never guessed from a damaged one."""
    path = Path(results_dir) / CHECK_FILE
    try:
        # a regular file only (a FIFO would hang the report, a link redirect it): else
        # damaged, as below
        data = json.loads(read_text(path))
        if not isinstance(data, list):
            raise TypeError(f"a JSON {type(data).__name__}, not a list of checks")
        checks = [ProtocolCheck(**entry) for entry in data]
        if any(c.protocol not in ("first", FALLBACK) for c in checks):
            raise ValueError("a protocol other than 'first' or 'fallback'")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        why = " ".join(str(error).split())
        raise DamagedCheck(
            f"{path} is damaged ({type(error).__name__}: {why}); restore it from git, or "
            "delete it to decide the protocol check again from the stored runs"
        ) from None
    return checks


def decided_prefix(checks: Sequence[ProtocolCheck]) -> str | None:
    """The part prefix the grid runs under after its recorded checks: "" when forgetting
    was measurable under the first protocol, ``FALLBACK`` when it was not (the grid then
    goes on under the fallback protocol, measurable there or not), None while the first
    protocol's check is not decided."""
    first = next((c for c in checks if c.protocol == "first"), None)
    if first is None:
        return None
    return "" if first.measurable else FALLBACK


def record(results_dir: Path, checks: Sequence[ProtocolCheck]) -> None:
    text = json.dumps([asdict(c) for c in checks], indent=1, allow_nan=True) + "\n"
    atomic_write_text(Path(results_dir) / CHECK_FILE, text)
