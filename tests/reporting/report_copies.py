"""Copies of stored grids to damage, and the reports run on them in process.

``table1_cpu`` is the committed CPU grid (its report is committed too, so a number the
damage moved shows against it); ``tiny_words`` the small words-grid store the pipeline
tests keep, for damage whose effect is a line rather than a number.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tests.conftest import REPO_ROOT

TABLE1 = REPO_ROOT / "docs" / "reproduction" / "table1_cpu"
COMMITTED_REPORT = REPO_ROOT / "docs" / "reproduction"
TINY_WORDS = REPO_ROOT / "tests" / "fixtures" / "tiny_words_store"
# A run of CURLoRA's headline setting (r16 at its chosen rate): its outcomes feed the
# headline question and Table 1.
HEADLINE_RUN = Path("runs/headline/s1315/curlora/run/0_run")


def copy_store(source: Path, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(source, store)
    return store


def report_only(grid: str, store: Path, report: Path) -> int:
    """``curlora-reproduce --report-only reproduce=<grid>`` on ``store`` (its exit code),
    writing into ``report`` and no README."""
    from curlora import reproduce

    return reproduce.main(
        [
            "--report-only",
            f"reproduce={grid}",
            f"reproduce.results_dir={store}",
            f"reproduce.report_dir={report}",
            "reproduce.readme=null",
        ]
    )


def without_warnings(report: str) -> str:
    """``report`` less its warnings of what it could not use (``curlora.reporting.
    left_out``): each a ``**Warning:**`` paragraph and the blank line after it."""
    lines = report.split("\n")
    kept = []
    skip = False
    for line in lines:
        if line.startswith("**Warning:**"):
            skip = True
            continue
        if not (skip and line == ""):
            kept.append(line)
        skip = False
    return "\n".join(kept)


class Blocked(Exception):
    """Raised into a call that blocked (not an OSError: no reader may take it for damage)."""


@contextmanager
def no_hang(seconds: int = 20) -> Iterator[None]:
    """Fail, rather than wait forever, when what runs inside blocks (reading a FIFO that
    has no writer never returns): SIGALRM interrupts the blocked call with an error."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise Blocked(f"blocked for {seconds} s: a read that never returns")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
