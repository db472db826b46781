"""The ``reproduce.*`` keys of a grid: each one's type and range, checked before anything runs.

A grid's keys reach the command line as Hydra parses it (``reproduce.workers=abc`` is the
string ``'abc'``), and the grid runner used them as they came: ``int('abc')`` failed after
the lock and ``grid.yaml`` were written, ``workers=0`` silently became 1, and a string where
a list belongs (``controls: head_only``) would have planned a part per letter. Every key is
checked here as it is used, one line naming the key, the value and what is valid
(:func:`grid_problem`); the report's rules (margins, bootstrap, selection) are checked by the
report's own checks (``curlora.reporting.grid_rules``), so both agree on what is valid.

Every shipped grid (``configs/reproduce``) passes: nothing here changes what a valid grid
means, it only refuses what could not have run as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from curlora import checks
from curlora.checks.config import FLOAT32_MAX, MAX_SEED

# Method, control, strategy and sampling names become ``key=value`` overrides and sweep
# folder names: a comma would make a sweep of one name, a '/' a folder, a space a new
# argument. The group options of configs/ are all of this shape.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
NAME_VALID = "a name of letters, digits, '_', '.' or '-'"
# The one control a grid may name besides ``controls``: the evaluation before training.
CONTROLS = ("zero_shot",)


def _fail(key: str, value: Any, valid: str) -> None:
    checks.fail(f"reproduce.{key}", value, valid)


def _name(key: str, value: Any) -> None:
    if not (isinstance(value, str) and NAME.match(value)):
        _fail(key, value, NAME_VALID)


def _names(key: str, value: Any, allow_empty: bool = True) -> list[str]:
    """A list of names (an empty one when ``allow_empty``); returns it."""
    what = "a list of names" if allow_empty else "a non-empty list of names"
    if not isinstance(value, list) or (not value and not allow_empty):
        _fail(key, value, f"{what} ({NAME_VALID})")
    for item in value:
        _name(key, item)
    return value


def _path(key: str, value: Any, allow_none: bool) -> None:
    """A folder or file name as Hydra parses it (``reproduce.dir=2024`` is an int)."""
    if value is None and allow_none:
        return
    if not ((isinstance(value, str) and value.strip()) or checks.is_int(value)):
        _fail(key, value, "a path" + (" or null" if allow_none else ""))


def _ints(key: str, value: Any, low: int, high: int | None, allow_empty: bool) -> None:
    what = "a list of integers" if allow_empty else "a non-empty list of integers"
    if not isinstance(value, list) or (not value and not allow_empty):
        _fail(key, value, what)
    for item in value:
        checks.check_int(f"reproduce.{key}", item, low, high)


def _overrides(key: str, value: Any) -> None:
    """``key=value`` overrides every job of the grid gets (as on the command line)."""
    if not isinstance(value, list):
        _fail(key, value, "a list of key=value overrides")
    for item in value:
        if not (isinstance(item, str) and ("=" in item or item.startswith("~"))):
            _fail(key, item, "a key=value override (as on the command line)")


def _known_methods(key: str, methods: list[str], lrs: Mapping[str, Any]) -> None:
    """Each of ``methods`` has rates in ``lrs``: the grid runs a method at its chosen rate,
    and a method without rates would be left out of its phase without a word."""
    for method in methods:
        if method not in lrs:
            _fail(key, method, f"a method of reproduce.lrs ({sorted(lrs)})")


def _learning_rates(grid: Mapping[str, Any]) -> Mapping[str, Any]:
    lrs = grid.get("lrs")
    if not isinstance(lrs, Mapping) or not lrs:
        _fail("lrs", lrs, "a mapping of method names to lists of learning rates")
    for method, rates in lrs.items():
        _name("lrs", method)
        if not isinstance(rates, list) or not rates:
            _fail(f"lrs.{method}", rates, "a non-empty list of learning rates")
        for rate in rates:
            # optimizer.lr of a job: a run refuses what does not fit a float32 tensor.
            checks.check_real(f"reproduce.lrs.{method}", rate, 0, FLOAT32_MAX, low_open=True)
    return lrs


def _sections(grid: Mapping[str, Any], lrs: Mapping[str, Any]) -> None:
    """``rank_sweep`` and ``references``: null, or a mapping of their keys."""
    sweep = grid.get("rank_sweep")
    if sweep is not None:
        if not isinstance(sweep, Mapping) or set(sweep) != {"methods", "ranks"}:
            _fail("rank_sweep", sweep, "null, or {methods: [...], ranks: [...]}")
        _known_methods("rank_sweep.methods", _names("rank_sweep.methods", sweep["methods"]), lrs)
        _ints("rank_sweep.ranks", sweep["ranks"], 1, None, allow_empty=False)
    refs = grid.get("references")
    if refs is not None:
        if not isinstance(refs, Mapping) or set(refs) != {"method", "strategies"}:
            _fail("references", refs, "null, or {method: <name>, strategies: [...]}")
        _name("references.method", refs["method"])
        _known_methods("references.method", [refs["method"]], lrs)
        _names("references.strategies", refs["strategies"], allow_empty=False)
    check = grid.get("protocol_check")
    if check is not None and not isinstance(check, Mapping):
        _fail("protocol_check", check, "null, or {method, measurable, fallback_overrides}")
    if check:
        _overrides("protocol_check.fallback_overrides", check.get("fallback_overrides") or [])


def _control(key: str, value: Any) -> None:
    if value not in CONTROLS:
        _fail(key, value, f"null or one of {list(CONTROLS)}")


def _seeds(key: str, value: Any) -> None:
    _ints(key, value, 0, MAX_SEED, allow_empty=True)


def _flag(key: str, value: Any) -> None:
    checks.check_bool(f"reproduce.{key}", value)


# The keys a grid may leave out (or set to null) -> the check of a value.
OPTIONAL: dict[str, Callable[[str, Any], Any]] = {
    "split_jobs": _flag,
    "sampling": _names,
    "verdicts": _names,
    "matched_controls": _names,
    "headline_methods": _names,
    "headline_seeds": _seeds,
    "control": _control,
}


def check_grid_keys(grid: Mapping[str, Any]) -> None:
    """ValueError naming the first ``reproduce.<key>`` whose value cannot run (``grid``:
    the grid resolved to plain containers); the report's rules are checked as the report
    checks them."""
    from curlora.reporting.grid_rules import rules_problem

    _name("name", grid.get("name"))
    _path("dir", grid.get("dir"), allow_none=False)
    for key in ("results_dir", "report_dir", "readme"):
        _path(key, grid.get(key), allow_none=True)
    if "workers" in grid:  # absent: one part at a time
        checks.check_int("reproduce.workers", grid["workers"], 1, None)
    _overrides("overrides", grid.get("overrides"))
    _ints("seeds", grid.get("seeds"), 0, MAX_SEED, allow_empty=False)
    _ints("ranks", grid.get("ranks"), 1, None, allow_empty=False)
    lrs = _learning_rates(grid)
    _names("controls", grid.get("controls"))
    for key, check in OPTIONAL.items():
        if grid.get(key) is not None:
            check(key, grid[key])
    _known_methods("headline_methods", grid.get("headline_methods") or [], lrs)
    _known_methods("matched_controls", grid.get("matched_controls") or [], lrs)
    _sections(grid, lrs)
    problem = rules_problem(grid)
    if problem is not None:
        raise ValueError(f"reproduce.{problem}")
