"""What makes a rule in ``grid.yaml`` unusable, in one line naming the key and what is valid.

The rules were fixed before the runs, and every verdict of a report rests on them: a
margin of ``.nan`` makes every comparison with it false (no task is "learned", forgetting
verdicts turn), a bootstrap of 0 replicates makes every interval nan, a negative one
fails the report deep inside numpy and a huge one exhausts memory. A report therefore
checks each rule it reads before using any (:func:`rules_problem`); a grid whose rule
fails is a damaged ``grid.yaml`` (``curlora.reporting.grid.Rules.read`` names it).

Types are checked as YAML loads them, not converted: ``16.5`` is no rank and ``"3"`` no
seed, where ``int()`` would have turned them into numbers the grid never held.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from curlora.reporting.untrusted import is_safe_name

# The bootstrap holds a few arrays of replicates × test rows (8 bytes each): 10 000
# replicates of a 1 000-row task are about 80 MB apiece. The grids use 2 000 and 200;
# past 10 000 the variance estimate changes by less than 2 % and only memory grows.
MAX_REPLICATES = 10_000
# Two draws at least: the test-example variance is their sample variance (ddof=1), nan
# from one.
MIN_REPLICATES = 2
_SHOWN_CHARS = 40  # of a rejected value: a 400-digit int is named, not printed whole


def _number(value: Any) -> float | None:
    """``value`` as a float when YAML gave a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past float's range (10**400)
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(value: Any, least: int | None = None) -> bool:
    return isinstance(value, list) and all(_int(v) and (least is None or v >= least) for v in value)


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(is_safe_name(v) for v in value)


def _learning_rates(value: Any) -> bool:
    """method -> a list of finite positive rates."""
    return isinstance(value, Mapping) and all(
        is_safe_name(method)
        and isinstance(rates, list)
        and all((x := _number(r)) is not None and x > 0 for r in rates)
        for method, rates in value.items()
    )


def _accuracy_margin(value: Any) -> bool:
    return (x := _number(value)) is not None and 0 <= x < 1


def _ppl_margin(value: Any) -> bool:
    return (x := _number(value)) is not None and x >= 1


def _replicates(value: Any) -> bool:
    return _int(value) and MIN_REPLICATES <= value <= MAX_REPLICATES


def _seed(value: Any) -> bool:
    return _int(value) and value >= 0  # numpy's generators take no negative seed


# key (dotted below a section) -> (its check, what is valid, in words). Absent keys are
# not checked: the report's defaults stand in for them, as before.
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "margins.accuracy": (_accuracy_margin, "a number in [0, 1)"),
    "margins.ppl_ratio": (_ppl_margin, "a finite number >= 1"),
    "bootstrap.replicates": (
        _replicates,
        f"an integer from {MIN_REPLICATES} to {MAX_REPLICATES}",
    ),
    "bootstrap.seed": (_seed, "an integer >= 0"),
    "seeds": (_ints, "a list of integers"),
    "headline_seeds": (_ints, "a list of integers"),
    "ranks": (lambda v: _ints(v, least=1), "a list of integers >= 1"),
    "headline_methods": (_names, "a list of method names"),
    "matched_controls": (_names, "a list of method names"),
    "lrs": (_learning_rates, "a mapping of method names to lists of finite positive numbers"),
    "selection": (lambda v: isinstance(v, Mapping), "a mapping"),
}
SECTIONS = ("margins", "bootstrap")
# A null list or mapping reads as absent (the report takes ``or ()`` of it); a null number
# is no number.
NULL_IS_ABSENT = frozenset(k for k in CHECKS if "." not in k)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def rules_problem(grid: Mapping[str, Any]) -> str | None:
    """The first rule of ``grid`` (``grid.yaml`` as loaded) a report cannot use, as
    ``<key> is <value>; valid: <what>``; None when every rule present can be used."""
    for section in SECTIONS:
        if grid.get(section) is not None and not isinstance(grid[section], Mapping):
            return f"{section} is {_shown(grid[section])}; valid: a mapping"
    for key, (check, valid) in CHECKS.items():
        section, _, name = key.rpartition(".")
        where = (grid.get(section) or {}) if section else grid
        if name not in where or (where[name] is None and key in NULL_IS_ABSENT):
            continue
        if not check(where[name]):
            return f"{key} is {_shown(where[name])}; valid: {valid}"
    return None
