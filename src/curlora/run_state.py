"""Crash-safe run state: progress file, task-boundary checkpoints, atomic writes.

Layout inside a run directory::

    progress.json                    what is done: initial evaluation, tasks completed,
                                     the accuracy matrix and perplexities so far
    checkpoints/task_<i>.ckpt        after task i trained and was evaluated (trainable
                                     tensors + heads + optimizer-free module state)
    checkpoints/task_<i>_steps/last.ckpt   every N steps inside task i (Lightning format:
                                     optimizer, scheduler, loop position, data position)

Every file is written to a temporary name in the same directory and renamed, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.json"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same filesystem: atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")

    atomic_write(path, write)


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / PROGRESS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def task_checkpoint(run_dir: Path, index: int) -> Path:
    return run_dir / "checkpoints" / f"task_{index}.ckpt"


def step_checkpoint_dir(run_dir: Path, index: int) -> Path:
    return run_dir / "checkpoints" / f"task_{index}_steps"
