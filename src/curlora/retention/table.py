"""The retention matrix as console lines (the run table's and ``curlora-report``'s block)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.3f}"


def retention_lines(retention: Mapping[str, Any] | None, labels: Sequence[str]) -> list[str]:
    """One line per evaluation point (``labels``: "before training", "after <task>", ...):
    lm-eval's ``acc`` per general-ability task, then the mean over tasks; [] when off."""
    if not retention:
        return []
    names = list(retention["tasks"])
    headers = [f"{t} (n={n})" for t, n in zip(names, retention["n"], strict=True)] + ["mean"]
    widths = [max(len(h), 5) for h in headers]
    label_width = max(len(label) for label in labels)

    def line(label: str, cells: Sequence[str]) -> str:
        body = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        return f"  {label.ljust(label_width)}  {body}"

    out = [
        "general-ability retention (lm-eval zero-shot acc on each task's first n rows)",
        line("", headers),
    ]
    for label, row in zip(labels, retention["acc"], strict=True):
        if row is None:
            out.append(line(label, ["-"] * len(headers)))
            continue
        finite = [v for v in row if v is not None and not math.isnan(v)]
        mean = sum(finite) / len(finite) if len(finite) == len(row) else None
        out.append(line(label, [*(_cell(v) for v in row), _cell(mean)]))
    return out
