"""Real ``debug=tiny`` runs for the tests of received and damaged run directories: each
test copies one (:func:`copy_run`) and tampers with the copy, never the original."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from curlora.train import run
from tests.conftest import TINY, compose_run_config
from tests.pipeline import faults

# A crash at the first step of the second task: a resume continues from task 1's checkpoint.
CRASH_IN_REVIEWS = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: reviews, step: 1, "
    "marker: '%s'}"
)


def crashed_tiny_run(root: Path, overrides: Sequence[str] = ()) -> Path:
    """The directory of a tiny run in ``root`` that crashed in its second task."""
    cfg = compose_run_config(root, [*TINY, *overrides, CRASH_IN_REVIEWS % (root / "crashed")])
    with pytest.raises(faults.SimulatedCrash):
        run(cfg)
    return Path(cfg.paths.output_dir)


def completed_tiny_run(root: Path, overrides: Sequence[str] = ()) -> Path:
    """The directory of a completed tiny run (three tasks) in ``root``."""
    cfg = compose_run_config(root, [*TINY, *overrides])
    assert run(cfg)["status"] == "completed"
    return Path(cfg.paths.output_dir)


def copy_run(source: Path, destination: Path) -> Path:
    """A copy of the run directory ``source`` at ``destination`` (links copied as links)."""
    shutil.copytree(source, destination, symlinks=True)
    return destination
