"""Run and sweep directories: never shared by accident, and a sweep that says how it went.

A Hydra callback (``configs/hydra/default.yaml`` registers it) that decides where Hydra
puts a run before Hydra creates anything:

- A *timestamped* directory (the defaults ``logs/runs/<time>_...`` and
  ``logs/multiruns/<time>``) is meant to be new. If it already exists, two commands started
  in the same second, a suffix ``_2``, ``_3``, ... is added; the directory is claimed with
  an exclusive ``mkdir``, so two processes can never get the same one.
- A *fixed* directory (``hydra.run.dir=...``, ``hydra.sweep.dir=...``, or a config that
  names one, like the reproduction grids) is used as given; the run itself then decides
  whether it may continue what is there (``curlora.run.guard``).
- ``resume=<run dir>``: Hydra's own files (its log, ``.hydra/``) go into the run being
  resumed, under ``.hydra/resume_<time>/``, so the original record is kept; unless the
  directory holds a symbolic link (:func:`unsafe_entry`): the run then refuses the resume,
  and Hydra writes nothing through the link.
- A sweep's W&B group (:func:`sweep_group`): its directory below the log directory and the
  keys it sweeps, ``multiruns/2026-12-04_17-05-14 over method,seed``.
- After a multirun, the one ``wandb sync`` command that uploads every job's offline W&B
  run (all sessions of a resumed one), and one summary line per job that did not
  complete (read from the job outcomes the jobs recorded, or from each job's
  ``results.json`` when the jobs ran in other processes), and :data:`SWEEP_FAILURES` so
  that the command exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from curlora.run.file_lock import open_lock_file

log = logging.getLogger("curlora")


@dataclass(frozen=True)
class JobOutcome:
    """How one job of a multirun ended: ``exit_code`` as the command would have exited."""

    directory: str
    overrides: tuple[str, ...]
    status: str
    exit_code: int


JOB_OUTCOMES: list[JobOutcome] = []
"""Outcomes recorded by the jobs of the current multirun (jobs that run in this process)."""
SWEEP_FAILURES: list[JobOutcome] = []
"""Jobs of the last multirun that did not complete; the command exits 1 when non-empty."""
CREATED_HERE: set[str] = set()
"""Run directories this process created (an exclusive mkdir before Hydra's): the only ones
a refused run may remove (``curlora.run.guard.remove_if_unused``). A fixed directory that
already existed may be another process's run, started a moment earlier."""
CREATED_PARENTS: dict[str, list[Path]] = {}
"""Run directory this process created -> the parent directories it created for it, deepest
first (``logs/runs``, ``logs`` on a fresh checkout): a refused run removes those left empty."""
USERS_LOCK = ".hydra/users.lock"
"""Every process that starts in a run directory holds a shared ``flock`` on this file for
its whole life (before Hydra writes anything there); a refused run removes its directory
only when it can lock it exclusively, i.e. when no other process has started in it."""
USING: dict[str, int] = {}
"""Run directory -> the descriptor holding this process's shared lock on it."""


def _unresolved(node: DictConfig, key: str) -> str:
    value = OmegaConf.to_container(node, resolve=False)[key]  # type: ignore[index]
    return str(value)


def claim_fresh_directory(path: Path) -> Path:
    """Create ``path`` (or ``path_2``, ``path_3``, ...) with an exclusive mkdir; return it."""
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.name}_{n}")
        for _ in range(3):  # a refused run elsewhere may remove an empty parent meanwhile
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                candidate.mkdir()
            except FileExistsError:
                break
            except FileNotFoundError:
                continue
            return candidate
    raise RuntimeError(f"no free directory name next to {path}")


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, deepest first."""
    missing = []
    parent = path.parent
    while parent != parent.parent and not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _set(config: DictConfig, dotted: str, value: str) -> None:
    with read_write(config), open_dict(config):
        OmegaConf.update(config, dotted, value, merge=False)


def _claim_if_timestamped(config: DictConfig, dotted: str) -> Path | None:
    """The directory claimed (created by this process), or None for a fixed one."""
    parent, _, key = dotted.rpartition(".")
    if "${now:" not in _unresolved(OmegaConf.select(config, parent), key):
        return None  # a fixed directory: used as given
    fresh = claim_fresh_directory(Path(str(OmegaConf.select(config, dotted))).absolute())
    _set(config, dotted, str(fresh))
    return fresh


def _create_if_absent(path: Path) -> bool:
    """Create ``path`` with an exclusive mkdir (its parents as needed); whether this call
    created it. Two processes racing for one new fixed directory: exactly one gets True."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except OSError:  # it exists, or cannot be made here (the run's own checks say why)
        return False
    return True


def _register_use(run_dir: Path) -> None:
    """Hold a shared lock on ``run_dir``'s :data:`USERS_LOCK` until the process ends."""
    import fcntl

    try:
        path = run_dir / USERS_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_lock_file(path)  # never through a symbolic link
    except OSError:  # an unusable place (or a link): the run's own checks say why
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # a refused run is removing the directory this instant; Hydra remakes it
        os.close(fd)
        return
    USING[str(run_dir)] = fd


# The symbolic links W&B makes in a run's ``wandb/`` directory. It replaces the first ones
# by a rename at each start (never writing through them), relative links inside it; the
# last is W&B core's link from a finished session to its log in the user's cache, which
# nothing opens again (each session writes into a new ``offline-run-*`` directory).
WANDB_DIR = "wandb"
WANDB_RELATIVE_LINKS = ("latest-run", "debug.log", "debug-internal.log")
WANDB_CORE_LOG_LINK = ("logs", "debug-core.log")
# Where W&B core's link points (in the cache of whoever ran the session): nothing opens it,
# and a link of that name pointing at anything else is not W&B's.
WANDB_CORE_LOG_TARGET = re.compile(r"/(?:[^/]+/)*logs/core-debug-\d{8}_\d{6}\.log")


def unsafe_entry(run_dir: Path) -> str | None:
    """What makes ``run_dir`` unsafe to resume, in words, or None: an entry at any depth that
    is a symbolic link (the run would read, append, truncate or overwrite where it points:
    ``.lock``, ``train.log``, ``.hydra/``, ``checkpoints/`` ... of a directory received from
    someone else) or not a regular file or directory (reading a FIFO never returns). The only
    links accepted are W&B's own, by name and place (:data:`WANDB_RELATIVE_LINKS`), so a run
    that logged to W&B stays resumable."""
    root = Path(run_dir)
    for parent, dirs, files in os.walk(root):  # never follows a link: a linked dir is listed
        for name in sorted([*dirs, *files]):
            entry = Path(parent) / name
            if entry.is_symlink():
                if not _wandb_own_link(root, entry):
                    return f"{entry} is a symbolic link"
            elif not (entry.is_file() or entry.is_dir()):
                return f"{entry} is not a regular file or directory"
    return None


def resume_link_problem(run_dir: Path, key: str = "resume") -> str | None:
    """The one line refusing to continue the run in ``run_dir`` for :func:`unsafe_entry`,
    or None; ``key`` is how the command named it (``resume=``, or ``hydra.run.dir=`` /
    a sweep's job for a run continued in place)."""
    problem = unsafe_entry(run_dir)
    if problem is None:
        return None
    return (
        f"{key}={run_dir}: {problem}; a received run directory is data and continuing it "
        "would read or write through it: replace it with a copy of what it points to, or "
        "start a new run"
    )


def continued_link_problem(place: Path, multirun: bool) -> str | None:
    """:func:`resume_link_problem` for the runs a command continues in place: the run
    directory (``hydra.run.dir``) when it holds a saved run, or each job directory of a
    sweep directory that does (a job that is itself a link included)."""
    if not multirun:
        if not (place / "run_config.yaml").is_file():
            return None
        return resume_link_problem(place, "hydra.run.dir")
    if not place.is_dir():
        return None
    for job in sorted(place.iterdir()):
        if job.is_symlink() and (job / "run_config.yaml").exists():
            return f"hydra.sweep.dir={place}: {job} is a symbolic link; start a new sweep"
        if job.is_dir() and (job / "run_config.yaml").is_file():
            problem = resume_link_problem(job, "hydra.sweep.dir job")
            if problem is not None:
                return problem
    return None


def _wandb_own_link(root: Path, link: Path) -> bool:
    """Whether ``link`` is one W&B makes (:data:`WANDB_RELATIVE_LINKS`, relative and
    resolving inside ``<root>/wandb``; or :data:`WANDB_CORE_LOG_LINK` of a session)."""
    wandb_dir = root / WANDB_DIR
    if wandb_dir.is_symlink() or not link.is_relative_to(wandb_dir):
        return False
    parts = link.relative_to(wandb_dir).parts
    if len(parts) == 3 and parts[1:] == WANDB_CORE_LOG_LINK:
        try:  # W&B core's own log, in some user's cache: ``<cache>/logs/core-debug-<time>.log``
            target = os.readlink(link)
        except OSError:
            return False
        return os.path.isabs(target) and WANDB_CORE_LOG_TARGET.fullmatch(target) is not None
    if len(parts) != 1 or parts[0] not in WANDB_RELATIVE_LINKS:
        return False
    try:
        if os.path.isabs(os.readlink(link)):
            return False
        return link.resolve().is_relative_to(wandb_dir.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a loop of links
        return False


class RunDirectories(Callback):
    """See the module docstring."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        resume = config.get("resume")
        # A resumed directory holding a link gets none of Hydra's files (its log would be
        # appended through the link): Hydra uses a fresh directory, the run refuses.
        if (
            resume
            and (Path(str(resume)) / "run_config.yaml").is_file()
            and unsafe_entry(Path(str(resume))) is None
        ):
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            _set(config, "hydra.run.dir", str(Path(str(resume)).absolute()))
            _set(config, "hydra.output_subdir", f".hydra/resume_{stamp}")
            return
        try:
            run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
            missing = _missing_parents(run_dir)
        except Exception:  # a resolver that fails: Hydra reports it, nothing is created
            return
        claimed = _claim_if_timestamped(config, "hydra.run.dir")
        if claimed is None:
            fixed = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
            claimed = fixed if _create_if_absent(fixed) else None
        if claimed is not None:
            CREATED_HERE.add(str(claimed))
            CREATED_PARENTS[str(claimed)] = missing
        _register_use(Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        JOB_OUTCOMES.clear()
        SWEEP_FAILURES.clear()
        _claim_if_timestamped(config, "hydra.sweep.dir")
        _name_jobs_by_swept_keys(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        outcomes = list(JOB_OUTCOMES) or outcomes_on_disk(sweep_dir)
        failed = [o for o in outcomes if o.exit_code != 0]
        SWEEP_FAILURES[:] = failed
        done = len(outcomes) - len(failed)
        log.info("sweep %s: %d of %d jobs completed", sweep_dir, done, len(outcomes))
        if any(sweep_dir.glob(f"*/wandb/{OFFLINE_RUNS}")):
            log.info("W&B (offline), every job: wandb sync %s/*/wandb/%s", sweep_dir, OFFLINE_RUNS)
        for outcome in failed:
            log.error(
                "job %s (%s) did not complete: %s",
                Path(outcome.directory).name,
                " ".join(outcome.overrides),
                outcome.status,
            )


OFFLINE_RUNS = "offline-run-*"
"""W&B's offline run directories (one per session of a run) inside ``<run dir>/wandb``."""


def sweep_group(
    sweep_dir: Path, log_dir: Path, overrides: list[str], exclude_keys: list[str]
) -> str:
    """A readable W&B group shared by every job of a sweep (at most 128 characters): the
    sweep directory relative to the log directory, and the keys that vary between jobs
    (a job's overrides minus those every job shares, see :func:`_name_jobs_by_swept_keys`)."""
    sweep_dir, log_dir = Path(sweep_dir).absolute(), Path(log_dir).absolute()
    where = sweep_dir.relative_to(log_dir) if sweep_dir.is_relative_to(log_dir) else sweep_dir
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    swept = [k for k in dict.fromkeys(keys) if k not in exclude_keys]
    label = f"{where} over {','.join(swept)}" if swept else str(where)
    return label if len(label) <= 128 else "..." + label[-125:]


def _name_jobs_by_swept_keys(config: DictConfig) -> None:
    """Job directories named by what varies: the command line's fixed overrides join the
    keys left out of ``hydra.job.override_dirname`` (``0_method=curlora,rank=8``, not
    ``0_method=curlora,rank=8,model=tiny_llama,...``). Each job's config is composed again
    from the sweep's Hydra overrides, so the exclusion travels as one more of them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    parsed = OverridesParser.create().parse_overrides(task)
    fixed = [o.key_or_group for o in parsed if not o.is_sweep_override()]
    node = config.hydra.job.config.override_dirname
    exclude = list(dict.fromkeys([*node.exclude_keys, *fixed]))
    with read_write(config), open_dict(config):
        node.exclude_keys = exclude
        config.hydra.overrides.hydra.append(
            f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude)}]"
        )


def outcomes_on_disk(sweep_dir: Path) -> list[JobOutcome]:
    """Job outcomes read from the job directories of a sweep (jobs run elsewhere)."""
    outcomes = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        try:
            overrides = tuple(str(o) for o in OmegaConf.load(overrides_file))
        except Exception:  # damaged (not UTF-8, not YAML, not a list): the summary goes on
            overrides = (f"(unreadable {overrides_file})",)
        results = job_dir / "results.json"
        try:
            status = str(json.loads(results.read_text(encoding="utf-8"))["status"])
        except (OSError, ValueError, KeyError, TypeError):  # UnicodeDecodeError: a ValueError
            status = f"no readable results.json (see {job_dir}/*.log)"
        code = 0 if status in ("completed",) else 1
        outcomes.append(JobOutcome(str(job_dir), overrides, status, code))
    return outcomes
