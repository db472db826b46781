"""What keeps ``curlora-reproduce`` to one line per failure: its arguments, its lock, its report.

- :func:`check_arguments`: ``--help`` prints the usage; anything that is not a
  ``key=value`` override is refused in one line (Hydra's parser would print a traceback),
  and so are two of the command's modes at once or two grids (:func:`check_choices`).
- :func:`compose_grid`: Hydra's composition errors (``reproduce=bogus``, a mistyped key)
  become a :class:`GridRefused` naming the key and the valid options.
- :func:`check_grid`: a ``reproduce.*`` key of the wrong type or range (``workers=0``, a
  grid without seeds; ``curlora.grid.settings``) is refused before any part runs, and so
  are extra settings every job would refuse (``rank=-1``; :func:`check_shared_settings`);
  the jobs' whole run checks follow before the grid starts (``curlora.grid.prechecks``).
- :class:`GridLock` (:func:`hold_grid_lock`): an exclusive lock on ``<grid dir>/.lock``.
  Two invocations on one grid would run the same jobs, refuse each other's run directories
  and each report the other's jobs as failed; the second one is refused instead, naming
  the process that holds it.
- :func:`write_grid_report`: the report is written only from completed runs. A grid none
  of whose jobs completed, or a report that cannot be written, leaves no ``REPORT.md``
  claiming to be current: a previous one is moved aside to ``REPORT.stale.md``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("curlora")
LOCK_FILE = ".lock"
REPORT_FILE, STALE_REPORT_FILE = "REPORT.md", "REPORT.stale.md"
EXIT_OK, EXIT_CONFIG = 0, 2


class GridRefused(ValueError):
    """The grid cannot run as asked (exit 2); the message is one line saying why."""


def check_arguments(args: Sequence[str], usage: str, flags: Sequence[str] = ()) -> int | None:
    """An exit code when the arguments end the command here (help, or refused); else None.
    ``flags``: the command's own options (``--name``), accepted as they are."""
    if any(arg in ("-h", "--help") for arg in args):
        print(usage.strip())
        return EXIT_OK
    for arg in args:
        if arg in flags:
            continue
        if arg.startswith("-") or ("=" not in arg and not arg.startswith("~")):
            print(
                f"error: {arg!r} is not a key=value override; curlora-reproduce takes "
                "reproduce=<grid> and key=value overrides (see --help)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    return None


def check_choices(args: Sequence[str], modes: Sequence[str]) -> None:
    """GridRefused for two of ``modes`` (``--status --report-only``: which one was meant?)
    or two grids (``reproduce=tiny reproduce=tiny_words``: Hydra would silently take the
    last one)."""
    given = [mode for mode in modes if mode in args]
    if len(given) > 1:
        raise GridRefused(
            f"{' and '.join(given)} cannot be combined; valid: one of {', '.join(modes)}, "
            "or neither (run the grid)"
        )
    grids = [arg for arg in args if arg.startswith("reproduce=")]
    if len(set(grids)) > 1:
        raise GridRefused(
            f"{' and '.join(grids)}: one grid per command; valid: a single reproduce=<name> "
            "(run each grid with its own command)"
        )


def compose_grid(overrides: Sequence[str]) -> DictConfig:
    """The run config with the grid, as ``curlora.cli`` composes it; GridRefused when Hydra
    cannot compose it (an unknown grid or choice, a key that does not exist)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from curlora.composition import describe_composition_error, unknown_key

    try:
        with initialize_config_module(config_module="curlora.configs", version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))
    except HydraException as error:
        line = unknown_key(error, overrides, False) or describe_composition_error(error)
        raise GridRefused(f"invalid configuration: {line}") from None


def check_grid(cfg: DictConfig) -> list[str]:
    """GridRefused, before any job runs, for a grid that cannot run as written (a
    ``reproduce.*`` key of the wrong type or range: ``workers=0``, no seeds, a rank of 0;
    ``curlora.grid.settings``); else the overrides every job of the grid gets
    (``reproduce.overrides``), resolved. ``cfg``: the grid composed alone."""
    from curlora.checks.config import ConfigError
    from curlora.grid.settings import check_grid_keys
    from curlora.reporting.protocol_check import check_config as check_protocol

    grid = cfg.reproduce
    try:
        try:
            plain_grid = OmegaConf.to_container(grid, resolve=True)
        except Exception as error:  # ${nope}, a resolver that fails
            why = " ".join(str(error).split())
            raise ValueError(f"reproduce does not resolve: {why}") from None
        check_grid_keys(plain_grid)
        check_protocol(grid)
    except (ValueError, ConfigError) as error:
        raise GridRefused(f"invalid configuration: {error}") from None
    return [str(override) for override in plain_grid["overrides"]]


def check_shared_settings(cfg: DictConfig) -> None:
    """GridRefused for extra settings every job would refuse (``rank=-1``: each job failed
    in turn, after all the parts ran), checked as a job checks its plain values (the
    paths, loggers, data and callbacks aside: they resolve only inside a run).

    ``cfg``: the grid composed with its own overrides and then the extra ones, as every
    job composes them (``reproduce=tiny``'s jobs log to CSV: ``logger.csv.*`` is theirs).
    These checks are cheap (no torch); the jobs' whole run checks, the groups left out
    here included, are ``curlora.grid.prechecks.check_jobs``."""
    from curlora.checks.config import ConfigError, check_settings

    try:
        plain = {
            key: OmegaConf.to_container(cfg[key], resolve=True)
            if isinstance(cfg[key], DictConfig)
            else cfg[key]
            for key in cfg
            if key not in ("paths", "reproduce", "logger", "data", "callbacks")
        }
        check_settings(plain)
    except (ValueError, ConfigError) as error:
        raise GridRefused(f"invalid configuration: {error}") from None


def in_use(place: Path, holder: str | None) -> GridRefused:
    """The refusal of a grid whose lock another process holds (``holder``: its line)."""
    return GridRefused(
        f"the grid {place} is in use by {holder or 'another process'}; "
        "wait for it to finish (or stop it), then run the same command again to continue"
    )


class GridLock:
    """Exclusive ``fcntl`` lock on ``<grid dir>/.lock`` (see the module docstring).

    Held from :meth:`acquire` until :meth:`release`, the end of a ``with`` block, or the
    object being dropped; the operating system releases it when the process dies.
    """

    def __init__(self, grid_dir: Path) -> None:
        self.path = Path(grid_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> GridLock:
        from curlora.composition import unusable_directory

        problem = unusable_directory(self.path.parent)
        if problem is not None:
            raise GridRefused(f"reproduce.dir={self.path.parent} cannot hold the grid: {problem}")
        from curlora.run.file_lock import LockHeld, acquire

        since = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {since}"
        try:
            self._fd = acquire(self.path, f"{holder} ({' '.join(sys.argv)})")
        except LockHeld as held:
            raise in_use(self.path.parent, held.holder) from None
        except OSError as error:  # ELOOP: the lock file is a symbolic link (never followed)
            why = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
            raise GridRefused(
                f"{self.path} cannot be the grid's lock file: {why}; remove it and run the same "
                "command again"
            ) from None
        return self

    def release(self) -> None:
        from curlora.run.file_lock import release

        if self._fd is not None:
            release(self._fd)
            self._fd = None

    def __enter__(self) -> GridLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


HELD: list[GridLock] = []
"""Grid locks this process holds (``curlora-reproduce`` releases them when it ends)."""


def hold_grid_lock(grid_dir: Path) -> GridLock:
    """Lock ``grid_dir`` until :func:`release_grid_locks` (or the process ends)."""
    lock = GridLock(grid_dir).acquire()
    HELD.append(lock)
    return lock


def release_grid_locks() -> None:
    while HELD:
        HELD.pop().release()


def _move_stale_report(report_dir: Path) -> Path | None:
    report = report_dir / REPORT_FILE
    if not report.exists():
        return None
    stale = report_dir / STALE_REPORT_FILE
    with contextlib.suppress(OSError):
        os.replace(report, stale)
        return stale
    return None


def write_grid_report(
    root: Path,
    write: Callable[[], Path],
    report_dir: Path | None = None,
    work_dir: Path | None = None,
    start: str | None = None,
) -> Path | None:
    """``write()`` the report when some run stored below ``root`` completed; else, or when
    writing fails, print one line, move a previous report (in ``report_dir``, default
    ``root``) aside and return None. A write the disk refuses re-raises its OutputError.

    ``work_dir`` (the grid's working directory, where the jobs' logs are) and ``start`` (the
    command that runs the grid) tell a grid that never ran from one whose jobs failed."""
    from curlora.reporting.reproduction import load_grid
    from curlora.run.atomic import OutputError

    root = Path(root)
    report_dir = Path(report_dir) if report_dir is not None else root
    try:
        if not load_grid(root):
            why = _nothing_completed(root, work_dir, start)
        else:
            return write()
    except OutputError:  # the disk: exit 5 like any output, and no stale report either
        _move_stale_report(report_dir)
        raise
    except Exception as error:  # a data file or the disk: the report is a reading of both
        log.debug("the report failed", exc_info=True)
        why = "the report could not be written: " + " ".join(
            f"{type(error).__name__}: {error}".split()
        )
        why += f" (see the jobs' logs under {work_dir or root})"
    stale = _move_stale_report(report_dir)
    aside = f"; the previous report was moved to {stale}" if stale else ""
    print(f"error: {why}{aside}", file=sys.stderr)
    return None


def _nothing_completed(root: Path, work_dir: Path | None, start: str | None) -> str:
    """Why there is no report: the grid never ran here (no working directory and no
    ``grid.yaml``, which every run of the grid writes first), or none of its jobs completed
    (their logs are in the working directory, when there is one)."""
    logs = Path(work_dir) if work_dir is not None else root
    if start is not None and not logs.exists() and not (root / "grid.yaml").exists():
        return (
            f"the grid has not run yet ({logs} does not exist), so there is nothing to report; "
            f"start it with `{start}`, and see how far it has got with `{start} --status`"
        )
    why = "no job of the grid completed, so there is nothing to report"
    return f"{why} (see the jobs' logs under {logs})" if logs.exists() else why
