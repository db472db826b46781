"""The one atomic file writer: every file a run leaves is written through it.

A file is written to a temporary name *in its destination directory*, flushed and fsynced,
then renamed over the final name with ``os.replace`` (atomic on one filesystem), and the
directory entry is fsynced. A crash or a kill at any moment leaves the old file or the new
one, never half of one. Writing the temporary file elsewhere (``$TMPDIR``, what fsspec and
so Lightning's default checkpoint writer do) would make the final step a cross-filesystem
copy, which a kill can leave half-done under the final name.

A killed write leaves its temporary file (``.<name>.<random>.tmp``) behind;
:func:`remove_stale_temp_files` clears them when a run directory is opened again.

A write that fails ends in one :class:`OutputError` naming the file and the cause, whatever
raised: ``OSError`` (full disk, permissions, read-only filesystem), ``RuntimeError`` (what
``torch.save`` raises when its stream cannot be written: "unexpected pos 64 vs 0") or
safetensors' ``SafetensorError``. The previous file under that name is left as it was, and
the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"
# What each errno means for someone whose run just stopped (the cause part of the message).
CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit, e.g. ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "the path is a directory",
    errno.ENOENT: "the directory does not exist (removed while the run was writing?)",
    errno.EIO: "input/output error (a failing disk or network filesystem)",
}
# Libraries that report an OS failure in their message only: safetensors writes
# "... (os error 28)", torch's zip writer "unexpected pos 64 vs 0" when a write came up short.
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)|\[Errno (\d+)\]")
_SHORT_WRITE = ("unexpected pos", "PytorchStreamWriter failed writing")


def write_failure_cause(error: BaseException) -> str:
    """A few words on why a write failed (``disk full``, ``permission denied``, ...)."""
    code = getattr(error, "errno", None)
    if code is None:
        match = _OS_ERROR_IN_TEXT.search(str(error))
        code = int(match.group(1) or match.group(2)) if match else None
    if code in CAUSES:
        return CAUSES[code]
    if any(marker in str(error) for marker in _SHORT_WRITE):
        return "the file could not be written in full (disk full or a file-size limit?)"
    return "the write failed"


def is_write_failure(error: BaseException) -> bool:
    """The failures a full, read-only or unreachable filesystem causes while writing: OSError,
    a RuntimeError (torch.save) or a SafetensorError (safetensors). Other exceptions are
    bugs in what is being written and keep their traceback."""
    return isinstance(error, (OSError, RuntimeError)) or type(error).__name__ == "SafetensorError"


class OutputError(RuntimeError):
    """A run output could not be written (disk full, read-only, permissions); the message is
    one line naming the file and the cause."""

    def __init__(self, path: Path, error: BaseException) -> None:
        self.path = Path(path)
        self.error = error
        detail = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        super().__init__(f"could not write {path}: {write_failure_cause(error)} ({detail})")


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
    except Exception as error:
        if isinstance(error, OutputError) or not is_write_failure(error):
            raise
        raise OutputError(path, error) from error
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # the directory may refuse this too
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
