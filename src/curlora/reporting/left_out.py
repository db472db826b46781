"""What a grid report could not use, said in the report itself.

A file the report cannot use is named in a warning as it is read, but a warning goes to
the terminal and the report stays: its numbers would then read as the grid's own. So a
``grid.yaml`` whose rules were replaced by the defaults, and each run whose per-example
outcomes were left out (its intervals then carry no test-example variance), are named at
the top of ``REPORT.md`` and of ``summary.md`` (the README's block) as well. Nothing is
added for files that can be used: a report of genuine files reads as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from curlora.reporting.grid import GridRun, Rules
from curlora.reporting.untrusted import shown


def _name(path: Path, store: Path) -> str:
    """``path`` below the grid's store (the report's own place does not matter), shown."""
    try:
        return shown(path.relative_to(store))
    except ValueError:
        return shown(path)


def left_out_lines(rules: Rules, runs: Sequence[GridRun], store: Path) -> list[str]:
    """The warnings for a report on ``runs`` under ``rules`` (both read from ``store``),
    each a paragraph followed by a blank line; none when every file could be used."""
    lines = []
    if rules.damaged is not None:
        lines += [
            f"**Warning:** `grid.yaml` is damaged ({rules.damaged}): this report uses the "
            "default rules (margins, bootstrap, seeds, ranks), not the grid's.",
            "",
        ]
    left = [(run, run.outcomes_left_out) for run in runs if run.outcomes_left_out is not None]
    if left:
        named = "; ".join(
            f"`{_name(run.path / 'outcomes.json', store)}` ({why})" for run, why in left
        )
        lines += [
            f"**Warning:** per-example outcomes left out of {len(left)} run(s): {named}. "
            "Every interval over such a run is over seeds alone (no test-example variance).",
            "",
        ]
    return lines
