"""A job's own checks of its config, made on the config Hydra will give it, before launch.

Hydra writes a run's directory, its ``.hydra/`` and its log file (under ``resume=``, into
the resumed run) before the job's first line runs, and a sweep launches one job after
another. A value only the job itself checked (``rank=abc``, an interpolation that does
not resolve, a resume that would change the experiment) was therefore refused after
those files were written, and in a sweep after the jobs before it had trained.
:func:`checked_job` builds the job's config as Hydra builds it (its output directory
set, ``HydraConfig`` holding it, the ``hydra`` node removed), so ``curlora.composition``
can make the job's checks first and refuse the command before anything is written. Each
job still makes them again when it starts (``curlora.cli.run_job``, ``curlora.run.guard``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict, read_write


def refused_before_loading(
    cfg: DictConfig, check_model: bool = True, unreachable_raises: bool = False
) -> str | None:
    """The check run() makes, made before torch, Lightning and datasets are imported (they
    take seconds), so that a bad value (a typo'd ``+key``, a wrong type) is refused at once:
    the ``ConfigError``'s message, or None. Any other error of the check is left to run(),
    which checks again and says what it is; ``unreachable_raises=True`` raises a
    ``HubUnreachableError`` instead (offline mode and data, a model or a retention task not
    cached: the command line's exit 3, before Hydra starts). Under ``resume=`` the saved
    config is the experiment (:func:`resume_problem`).
    ``check_model=False`` leaves out what depends on the model's architecture (a rank
    above its layer sizes, a target module it lacks)."""
    from curlora.checks.config import ConfigError, validate_config
    from curlora.data.unreachable import HubUnreachableError

    if cfg.get("resume") is not None:
        return None
    try:
        validate_config(cfg, check_model=check_model)
    except ConfigError as error:
        return str(error)
    except HubUnreachableError:  # offline mode, and data the run needs is not cached
        if unreachable_raises:
            raise
        return None
    except Exception:  # classified by run_job when run() meets it again
        return None
    return None


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """No library line on the console while a job is checked before Hydra sets up logging,
    so a refusal stays one line: Lightning, imported with no handler on the root logger,
    adds a console handler of its own and prints which devices exist for every Trainer the
    check builds. A handler that drops everything stands in for Hydra's meanwhile (so
    Lightning adds none, and its lines later reach Hydra's as in a run), and warnings are
    held back: the run meets and reports them again."""
    root = logging.getLogger()
    silent = logging.NullHandler()
    root.addHandler(silent)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(silent)


def settings_problem(cfg: DictConfig) -> str | None:
    """The top-level settings alone (``curlora.checks.config.check_settings``: rank, alpha,
    seed, optimizer, ...): plain values, no import, the first part of the run's whole check
    (:func:`refused_before_loading`), cheap enough to make for every job of a sweep first.
    None under ``resume=`` and where a value is left to set (``???``): the whole check
    names those."""
    from curlora.checks.config import ConfigError, check_settings

    try:
        if cfg.get("resume") is not None or OmegaConf.missing_keys(cfg):
            return None
        check_settings(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ConfigError as error:
        return str(error)
    except Exception:  # the whole check meets it again and says what it is
        return None
    return None


def resume_problem(cfg: DictConfig, overrides: Sequence[str]) -> str | None:
    """Why run() would refuse ``resume=`` in ``cfg`` (the job's config) with these command
    line ``overrides``, or None: the very plan run() makes (``curlora.run.guard.plan_resume``:
    a directory without a saved run, a link in it, a saved config that fails its integrity
    checks, an override that would change the experiment). It reads only the run's small
    files, as data, and writes nothing."""
    from curlora.checks.config import ConfigError
    from curlora.run.guard import plan_resume

    try:
        plan_resume(cfg, overrides)
    except ConfigError as error:
        return str(error)
    except Exception:  # not a refusal: run() meets it again and says what it is
        return None
    return None


@dataclass(frozen=True)
class Job:
    """One job as Hydra will start it: ``config`` with its hydra node (HydraConfig holds it),
    ``task`` the config the job function receives, and ``unresolved``: one line naming the
    key that does not resolve, or None."""

    config: DictConfig
    task: DictConfig
    unresolved: str | None


@contextlib.contextmanager
def checked_job(cfg: DictConfig, overrides: Sequence[str], num: int | None) -> Iterator[Job]:
    """The :class:`Job` of the composed ``cfg`` (with Hydra's config) as job ``num`` of a
    sweep (None: a single run); ``HydraConfig`` holds it inside the block, so that
    ``${hydra:...}`` resolves as in the job, and what it held before afterwards."""
    from hydra.core.hydra_config import HydraConfig

    job = copy.deepcopy(cfg)
    if num is not None:  # the sweeper sets these on each job it launches
        with read_write(job), open_dict(job):
            job.hydra.job.num = num
            job.hydra.job.id = str(num)
    holder = HydraConfig.instance()
    before = holder.cfg
    try:
        holder.set_config(job)
        try:
            place, failed = _output_dir(job, num is not None), None
        except Exception as error:  # named below, from the key of the job that fails
            place, failed = os.getcwd(), error  # a stand-in, to resolve the rest
        with read_write(job.hydra.runtime), open_dict(job.hydra.runtime):
            job.hydra.runtime.output_dir = os.path.abspath(place)
        holder.set_config(job)  # as Hydra does once it knows the output directory
        task = copy.deepcopy(job)
        with read_write(task), open_dict(task):
            del task["hydra"]
        unresolved = _unresolved(task, overrides)
        if unresolved is None and failed is not None:
            unresolved = does_not_resolve(failed, overrides)
        yield Job(job, task, unresolved)
    finally:
        holder.cfg = before


def _output_dir(job: DictConfig, multirun: bool) -> str:
    """The job's output directory as Hydra computes it (raises what resolving raises)."""
    if not multirun:
        return str(OmegaConf.select(job, "hydra.run.dir"))
    sweep = str(OmegaConf.select(job, "hydra.sweep.dir"))
    return os.path.join(sweep, str(OmegaConf.select(job, "hydra.sweep.subdir")))


def _unresolved(task: DictConfig, overrides: Sequence[str]) -> str | None:
    """:func:`does_not_resolve` for the first key of ``task`` that does not resolve; a
    ``???`` left to set is not this check's (the run's checks name it)."""
    try:
        OmegaConf.to_container(task, resolve=True, throw_on_missing=False)
    except Exception as error:
        return does_not_resolve(error, overrides)
    return None


def does_not_resolve(error: BaseException, overrides: Sequence[str]) -> str:
    """``rank does not resolve: Interpolation key 'nope' not found``: OmegaConf's error in
    one line, with its key; a key removed by ``~key`` that something refers to is named."""
    key = getattr(error, "full_key", None) or "the config"
    why = " ".join(str(error).split("\n", 1)[0].split())
    removed = [o.lstrip("~").split("=", 1)[0] for o in overrides if o.startswith("~")]
    gone = next((k for k in removed if f"Interpolation key '{k}' not found" in why), None)
    if gone is not None:
        why += f" (~{gone} removed it)"
    return f"{key} does not resolve: {why}"
