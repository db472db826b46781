"""A sha256 written beside every binary file a run reads back (its checkpoints).

``<file>.sha256`` holds ``<hex digest>  <file name>`` (the format ``sha256sum -c`` reads).
It is written right after the file, through the atomic writer; a kill in between leaves a
checksum that does not match, which readers treat like any damaged file: they fall back to
the previous good one. A file without its checksum is not trusted either: a flipped bit in
a checkpoint loads without complaint and changes the numbers of the resumed run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from curlora.run.atomic import atomic_write_text

SUFFIX = ".sha256"
_CHUNK = 1 << 20  # 1 MiB reads: a checkpoint of a 7B run is GBs, never read in one piece


class ChecksumMismatch(ValueError):
    """The file's bytes are not the ones its checksum was written for (or it has none)."""


def sidecar(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksum(path: Path) -> Path:
    """Write ``<path>.sha256`` for the file now at ``path``; returns the checksum's path."""
    path = Path(path)
    return atomic_write_text(sidecar(path), f"{file_sha256(path)}  {path.name}\n")


def verify_checksum(path: Path) -> None:
    """Raise ChecksumMismatch unless ``path`` matches the checksum saved beside it."""
    path = Path(path)
    try:
        expected = sidecar(path).read_text(encoding="utf-8").split()[0]
    except FileNotFoundError:
        raise ChecksumMismatch(f"it has no checksum ({sidecar(path).name} is missing)") from None
    except (OSError, ValueError, IndexError) as error:  # unreadable, not UTF-8, empty
        raise ChecksumMismatch(
            f"its checksum {sidecar(path).name} cannot be read ({type(error).__name__})"
        ) from None
    if file_sha256(path) != expected:
        raise ChecksumMismatch(f"its bytes do not match the checksum in {sidecar(path).name}")
