"""The one atomic file writer: every file a run leaves is written through it.

A file is written to a temporary name *in its destination directory*, flushed and fsynced,
then renamed over the final name with ``os.replace`` (atomic on one filesystem), and the
directory entry is fsynced. A crash or a kill at any moment leaves the old file or the new
one, never half of one. Writing the temporary file elsewhere (``$TMPDIR``, what fsspec and
so Lightning's default checkpoint writer do) would make the final step a cross-filesystem
copy, which a kill can leave half-done under the final name.

A killed write leaves its temporary file (``.<name>.<random>.tmp``) behind;
:func:`remove_stale_temp_files` clears them when a run directory is opened again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


class OutputError(RuntimeError):
    """A run output could not be written (disk full, read-only, permissions); names the file."""

    def __init__(self, path: Path, error: BaseException) -> None:
        self.path = Path(path)
        self.error = error
        super().__init__(f"could not write {path}: {type(error).__name__}: {error}")


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temp file beside ``path``, fsync it, rename it onto
    ``path``. Raises :class:`OutputError` naming ``path`` when the filesystem refuses."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run outputs are meant to be shared
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(path.parent)
    except OSError as error:
        raise OutputError(path, error) from error
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temp files that killed writes left below ``directory``; returns them.

    Only call this on a directory this process owns (the run directory under its lock):
    another process's write in progress would look the same.
    """
    stale = [p for p in Path(directory).rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
