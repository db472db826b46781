"""The one set of value checks every config-facing object uses (runs, methods, strategies).

Each check raises ``ValueError("<context><key>=<value> is not valid; valid: <what>")`` (the
caller's context names the object, e.g. ``method 'curlora': ``) and returns the value. A
bool is never an int here: ``True`` passed as a rank or a batch size is a mistake, although
Python counts ``bool`` as a subclass of ``int``.
"""

from __future__ import annotations

import math
from typing import Any


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or float (not a bool), finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fail(key: str, value: Any, valid: str, context: str = "") -> None:
    raise ValueError(f"{context}{key}={value!r} is not valid; valid: {valid}")


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '≥'} {low}"
    return f" {'<' if high_open else '≤'} {high}"


def _within(
    x: float, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    return high is None or (x < high if high_open else x <= high)


def check_int(
    key: str,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    allow_none: bool = False,
    context: str = "",
) -> Any:
    """An int in ``low..high`` (either bound optional), or None when ``allow_none``."""
    if value is None and allow_none:
        return None
    if not (is_int(value) and _within(value, low, high, False, False)):
        if low is not None and high is not None:
            what = f"an integer in {low}..{high}"
        else:
            what = "an integer" + _range(low, high, False, False)
        fail(key, value, what + (" or null" if allow_none else ""), context)
    return value


def check_real(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
    context: str = "",
) -> Any:
    """A finite number within the bounds (either optional, open or closed)."""
    if value is None and allow_none:
        return None
    if not (is_real(value) and _within(value, low, high, low_open, high_open)):
        bounded = low is not None and high is not None
        what = ("a number" if bounded else "a finite number") + _range(
            low, high, low_open, high_open
        )
        fail(key, value, what + (" or null" if allow_none else ""), context)
    return value


def check_bool(key: str, value: Any, context: str = "") -> bool:
    if not isinstance(value, bool):
        fail(key, value, "true or false", context)
    return value
