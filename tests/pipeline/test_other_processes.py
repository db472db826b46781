"""Nothing deletes or overwrites what another process made: a refused run removes only a
directory it created itself, and a grid's lock also covers its results store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curlora.cli import EXIT_CONFIG
from curlora.run import dirs
from curlora.run.guard import RunLock, remove_if_unused
from tests.conftest import REPO_ROOT, TINY


def _hydra_files(run_dir: Path, overrides: list[str]) -> None:
    """What Hydra leaves in a run directory before the run itself writes anything."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run_dir / "train.log").write_text("[INFO] a run started\n")


def test_a_directory_this_process_did_not_create_is_never_removed(tmp_path: Path) -> None:
    run_dir = tmp_path / "D"
    _hydra_files(run_dir, ["alpha=nan"])
    assert str(run_dir) not in dirs.CREATED_HERE
    assert not remove_if_unused(run_dir, ["alpha=nan"])
    assert (run_dir / ".hydra" / "overrides.yaml").exists() and (run_dir / "train.log").exists()


def test_a_directory_another_run_has_locked_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even one this process created: a second process started in it and holds its lock
    (the lock is per open file, so this process's RunLock stands in for the other's)."""
    run_dir = tmp_path / "D"
    _hydra_files(run_dir, ["alpha=nan"])
    monkeypatch.setattr(dirs, "CREATED_HERE", {str(run_dir)})
    with RunLock(run_dir):
        assert not remove_if_unused(run_dir, ["alpha=nan"])
    assert (run_dir / ".lock").exists() and (run_dir / "train.log").exists()


def test_a_directory_another_process_started_in_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the lock and the record leave open: a second process started in the new
    directory, before it locked it and after this one's Hydra record was written. It holds
    a shared lock on ``.hydra/users.lock`` from its first moment (flock is per open file,
    so a second descriptor here stands in for it)."""
    import fcntl

    run_dir = tmp_path / "D"
    _hydra_files(run_dir, ["alpha=nan"])
    monkeypatch.setattr(dirs, "CREATED_HERE", {str(run_dir)})
    other = os.open(run_dir / dirs.USERS_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_SH)
    try:
        assert not remove_if_unused(run_dir, ["alpha=nan"])
    finally:
        os.close(other)
    assert (run_dir / "train.log").exists()
    assert remove_if_unused(run_dir, ["alpha=nan"])  # alone in it now: its own to remove


def test_a_directory_whose_hydra_record_is_another_commands_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "D"
    _hydra_files(run_dir, ["method=lora"])  # a second process rewrote Hydra's record
    monkeypatch.setattr(dirs, "CREATED_HERE", {str(run_dir)})
    assert not remove_if_unused(run_dir, ["alpha=nan"])
    assert (run_dir / ".hydra").is_dir()
    # Its own, unlocked and unshared: removed, as before.
    assert remove_if_unused(run_dir, ["method=lora"]) and not run_dir.exists()


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_refused_run_leaves_a_concurrent_runs_directory_alone(tmp_path: Path) -> None:
    """``train.py … hydra.run.dir=D & train.py … alpha=nan hydra.run.dir=D``: the refused
    command used to delete D when it held only Hydra's files (the good run lost its
    ``.hydra/``, ``train.log`` and ``.lock``). Here D is the good run's, caught at that
    moment; a refused run in a fresh directory still leaves nothing behind."""
    good = tmp_path / "D"
    _hydra_files(good, ["debug=tiny"])
    done = _train(*TINY, "logger=none", "alpha=nan", f"hydra.run.dir={good}", cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr[-2000:]
    assert (good / ".hydra").is_dir() and (good / "train.log").exists()
    fresh = tmp_path / "E"
    done = _train(*TINY, "logger=none", "alpha=nan", f"hydra.run.dir={fresh}", cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG and not fresh.exists()


def test_two_grids_sharing_one_results_store_are_refused(tmp_path: Path, capsys) -> None:
    """The CPU and GPU grids run from different working directories into one results
    store: the second invocation is refused (before it runs a job), naming the holder."""
    from curlora import reproduce
    from curlora.grid.guard import GridLock

    store = tmp_path / "store"
    with GridLock(store):  # the first grid, started in another working directory
        code = reproduce.main(
            ["reproduce=tiny", f"reproduce.dir={tmp_path / 'b'}", f"reproduce.results_dir={store}"]
        )
    assert code == EXIT_CONFIG
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"{store} is in use by pid {os.getpid()}" in line


def test_a_grid_lock_that_is_a_symbolic_link_is_one_line_and_never_followed(
    tmp_path: Path, capsys
) -> None:
    # A results store received with `.lock` linked to a file elsewhere: the lock would
    # truncate and overwrite that file; it is refused by name instead (exit 2).
    from curlora import reproduce

    store, outside = tmp_path / "store", tmp_path / "outside.txt"
    store.mkdir()
    outside.write_text("keep me")
    (store / ".lock").symlink_to(outside)
    code = reproduce.main(
        ["reproduce=tiny", f"reproduce.dir={store}", f"reproduce.results_dir={tmp_path / 'r'}"]
    )
    assert code == EXIT_CONFIG
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "is a symbolic link" in line
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize("place", ["file", "read-only"])
def test_a_grid_directory_that_cannot_hold_it_is_one_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, place: str
) -> None:
    """It used to be a FileExistsError traceback from ``mkdir``. As root (these machines)
    every directory is writable, so read-only is simulated where the check asks."""
    from curlora import reproduce

    if place == "file":
        where = tmp_path / "grid"
        where.write_text("not a directory")
    else:
        read_only = tmp_path / "ro"
        read_only.mkdir()
        where = read_only / "grid"
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode)
        )
    assert reproduce.main(["reproduce=tiny", f"reproduce.dir={where}"]) == EXIT_CONFIG
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: reproduce.dir=") and str(where) in line
    assert not (tmp_path / "ro" / "grid").exists()
