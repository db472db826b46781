"""Every baseline in ``configs/method`` and ``configs/strategy`` has a row in the README's
method or strategy table (the table is where a user looks for what exists and its paper).

The tables are the README's ``| `method` (what trains) | |`` and ``| `strategy` (how tasks
combine) | |`` blocks: one ``| `<name>` | ... |`` row per option, up to the first line that
is not a table row. A YAML added without a row fails here, naming the file to document.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import CONFIG_DIR, REPO_ROOT

README = REPO_ROOT / "README.md"
KINDS = ("method", "strategy")
HEADERS = {"method": "| `method` (what trains) |", "strategy": "| `strategy` (how tasks combine) |"}


def table_names(text: str, header: str) -> list[str]:
    """The `<name>` of every row of the table that starts with ``header``."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    assert start is not None, f"README.md has no table starting with {header!r}"
    names = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            break
        match = re.match(r"\| `([^`]+)` \|", line)
        if match:
            names.append(match.group(1))
    return names


def test_table_names_reads_rows_up_to_the_end_of_the_table() -> None:
    text = (
        "x\n| `method` (what trains) | |\n|---|---|\n| `a` | one |\n| `b` | two |\n\n| `c` | no |"
    )
    assert table_names(text, HEADERS["method"]) == ["a", "b"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_config_has_a_row_in_the_readme_table(kind: str) -> None:
    listed = set(table_names(README.read_text(), HEADERS[kind]))
    configs = sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))
    missing = [name for name in configs if name not in listed]
    assert not missing, (
        f"{', '.join(f'configs/{kind}/{n}.yaml' for n in missing)}: no row in the README's "
        f"{kind} table; add "
        f"'| `<name>` | what it does (authors year, arXiv link) |' under {HEADERS[kind]!r}"
    )
