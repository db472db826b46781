"""Reading a file a report was given: a regular file, never through a symbolic link.

The reports read directories someone else may have made (a received run, a grid's store),
and two entries there defeat them without one bad byte: a FIFO named ``results.json``
(reading it waits for a writer that never comes, so the report hangs) and a symbolic link
(the report would read, and print, whatever file it points to, as if the run held it).

:func:`read_text` opens with ``O_NOFOLLOW | O_NONBLOCK``: the kernel refuses a link at the
open itself, and a FIFO opens at once instead of waiting for a writer. What was opened is
then checked with ``fstat``: the check is of the very file that is read, so nothing can
swap the entry between a check and the read. A link or anything but a regular file raises
:class:`NotRegularFile`, an ``OSError``, so every reader names it in one line as it names
a file it cannot read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# What fstat can find instead of a regular file, in words for the line naming it.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegularFile(OSError):
    """The entry a report was to read is a symbolic link or not a regular file. ``str()``
    is the reason alone (readers add the path themselves)."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.EINVAL, why, str(path))

    def __str__(self) -> str:
        return str(self.strerror)


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of the regular file ``path``, read as ``Path.read_text`` reads it
    (universal newlines). FileNotFoundError when there is no such entry; NotRegularFile
    when it is a symbolic link (dangling or not) or not a regular file; UnicodeDecodeError
    when it is not UTF-8.

    Named like ``Path.read_text`` on purpose: the fault-injection suite finds read sites
    by that name, so every reader calling this stays one of its sites."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        # ELOOP (EMLINK on the BSDs) is how O_NOFOLLOW refuses a link; a loop of links
        # further up the path gives ELOOP too, so the entry itself is checked.
        if error.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink():
            raise NotRegularFile(path, "a symbolic link, not followed") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise NotRegularFile(path, f"not a regular file ({kind})")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, encoding="utf-8") as handle:  # owns fd: closes it
        return handle.read()
