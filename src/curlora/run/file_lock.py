"""One exclusive lock file per directory that a process owns (a run, a grid).

An ``fcntl.flock`` on ``<dir>/.lock``, taken without waiting: the operating system
releases it when the process dies, whatever killed it, so a crash never leaves a stale
lock. The holder writes a line saying who it is; a refused caller reads it back.

Lock files are opened with ``O_NOFOLLOW``: a directory received from someone else may hold
a ``.lock`` that is a symbolic link, and following it would truncate and overwrite the file
it points to (anywhere this user can write). Such a lock fails with ``OSError`` (ELOOP).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is the line it wrote ("" if none)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def open_lock_file(path: Path) -> int:
    """``path`` opened for reading and writing, created if absent, never through a symbolic
    link (``OSError`` with ``errno.ELOOP`` when it is one, dangling or not)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)


def acquire(path: Path, holder: str) -> int:
    """The descriptor of ``path``, exclusively locked, with ``holder`` written into it;
    LockHeld when another process has it, OSError when it cannot be opened (ELOOP: it is a
    symbolic link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held_by = os.pread(fd, 512, 0).decode(errors="replace").strip()
        os.close(fd)
        raise LockHeld(held_by) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{holder}\n".encode(), 0)
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
