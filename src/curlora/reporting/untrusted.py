"""Text from a file someone else made, made safe to print.

A ``results.json`` (or a directory name, a config value) is data: printed raw, an escape
sequence in it (``\\x1b[7A``, ``\\r``) would move the cursor and redraw the rows above with
numbers the file invented. :func:`shown` is what every print of such text goes through;
:func:`is_safe_name` is the rule the results validator applies to method and task names.
"""

from __future__ import annotations

NAME_MAX_LENGTH = 200


def _escaped(char: str) -> str:
    """A non-printable character as its Python escape (``\\x1b``, ``\\r``, ``\\u202e``)."""
    return ascii(char)[1:-1]


def shown(text: object) -> str:
    """``text`` (any object, as ``str``) with every non-printable character escaped.

    Non-printable is Python's ``str.isprintable``: control characters (escape, carriage
    return, newline, tab, DEL, C1), bidirectional overrides and line separators, so what is
    printed is one line that reads as it is stored. Printable text comes back unchanged, so
    reports made of ordinary names stay byte for byte what they were.
    """
    text = str(text)
    if text.isprintable():  # the common case, no copy
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def is_safe_name(name: object) -> bool:
    """Whether ``name`` can stand as a method or task name in a table: a non-empty string of
    printable characters without surrounding spaces, at most NAME_MAX_LENGTH long.

    Deliberately no narrower (say ``[a-z0-9_]+``): a run writes its results.json through
    the same validator, and a task the data config accepts must not fail the run at the end.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= NAME_MAX_LENGTH
        and name.isprintable()
        and name == name.strip()
    )
