"""Every entry of a given name below a directory a report reads, links included.

``Path.rglob("results.json")`` lists an entry only when it exists *through* it: a symbolic
link whose target is gone (a received directory's link into someone else's disk) is not
listed at all, so a report would leave that run out without a word. :func:`entries_named`
lists every directory entry of the name, whatever it is: the readers then refuse a link
or anything but a regular file with one named line (``curlora.reporting.regular_file``),
as they refuse every other file they will not open.

It searches what ``rglob`` searches: every directory below the root, without entering a
linked directory (``os.walk`` without ``followlinks``, like ``rglob``), and in the same
sorted order the callers used, so a directory of regular files gives the same list.
"""

from __future__ import annotations

import os
from pathlib import Path


def entries_named(root: str | os.PathLike[str], name: str) -> list[Path]:
    """Every entry called ``name`` below ``root`` (``root``'s own included), sorted: regular
    files, directories, FIFOs and symbolic links, dangling or not."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        # a link to a directory is listed among the subdirectories, a dangling one a file
        if name in files or name in subdirectories:
            found.append(Path(directory) / name)
    return sorted(found)
