"""The run checks of a grid's jobs, made once before the grid starts any of them.

Every job of a grid checks its own config when it starts (``curlora.cli``: the project's
``validate_config``) and refuses a bad one in one line. A setting that every job refuses
(``data.batch_size=0``) therefore let the grid start part after part, each job failing
seconds in, and leave a job directory per failure. Here each distinct composition of the
grid's jobs is composed as its job would compose it and checked the same way, so the grid
is refused in one line before anything is written.

Jobs that differ only in their seed or learning rate compose alike (the grid's seeds and
rates are checked as values: ``curlora.grid.settings``), so one of each is enough: the
controls, each method at each rank, the references' strategies, the sampling modes and the
protocol check's fallback settings. The checks import torch and Lightning (a few seconds,
which every job pays anyway); ``--status`` and ``--report-only`` run no job and skip them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig

from curlora.grid.parts import (
    Part,
    grid_parts,
    headline_parts,
    reference_parts,
    split_jobs,
    sweep_parts,
)

# Overrides whose values are checked as values (seed range, positive float32 rate), and
# which change nothing else a job composes.
VALUE_ONLY = ("seed=", "optimizer.lr=")


def planned_jobs(grid: DictConfig, extra: Sequence[str]) -> list[Part]:
    """One job per way the grid's jobs compose (``(its part's sweep subdirectory, its
    overrides)``), in the grid's order; the phases after the rate selection at each
    method's first rate."""
    lrs = {str(method): float(rates[0]) for method, rates in grid.lrs.items()}
    settings = [list(extra)]
    check = grid.get("protocol_check")
    if check:  # the grid may go on under the fallback protocol's settings
        settings.append([*extra, *check.fallback_overrides])
    parts: list[Part] = []
    for more in settings:
        parts += grid_parts(grid, more) + headline_parts(grid, lrs, more)
        parts += reference_parts(grid, lrs, more) + sweep_parts(grid, lrs, more)
    distinct: dict[tuple[str, ...], Part] = {}
    for subdir, swept in parts:
        for _job, overrides in split_jobs([(subdir, swept)]):
            key = tuple(sorted(o for o in overrides if not o.startswith(VALUE_ONLY)))
            distinct.setdefault(key, (subdir, overrides))
    return list(distinct.values())


def _composed(jobs: Sequence[Part], root: Path) -> Iterator[tuple[str, list[str], DictConfig]]:
    """Each job's config with Hydra's own, composed from the overrides its part's multirun
    gets (``curlora.reproduce.multirun``: no ``reproduce`` group, its sweep directory);
    GridRefused when Hydra cannot compose it (a method of ``reproduce.lrs`` with no config)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from curlora.composition import CONFIG_MODULE, CONFIG_NAME, describe_composition_error
    from curlora.grid.guard import GridRefused

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for subdir, overrides in jobs:
            job = [*overrides, f"hydra.sweep.dir={root / subdir}"]
            try:
                cfg = compose(config_name=CONFIG_NAME, overrides=job, return_hydra_config=True)
            except HydraException as error:
                raise GridRefused(
                    f"invalid configuration: {describe_composition_error(error)} (a job of "
                    f"the grid's part {subdir}: {' '.join(overrides)})"
                ) from None
            yield subdir, job, cfg


def check_jobs(grid: DictConfig, extra: Sequence[str], root: Path) -> None:
    """GridRefused naming the first setting a job of the grid would refuse at its start: a
    key that does not resolve, or a value the run's checks refuse (``validate_config``,
    the ranks against the model's layer sizes included), each made on the config Hydra will
    give the job (``curlora.job_checks``, as ``curlora-train`` checks its own jobs).
    Problems that are not the config's (a Hub that cannot be reached while a model's
    config is read) are left to the jobs, which say what they are."""
    from curlora.grid.guard import GridRefused
    from curlora.job_checks import checked_job, quiet_console, refused_before_loading
    from curlora.models.backbone import each_architecture_read_once

    with each_architecture_read_once(), quiet_console():
        for subdir, overrides, cfg in _composed(planned_jobs(grid, extra), root):
            with checked_job(cfg, overrides, num=0) as job:
                problem = job.unresolved
                if problem is None and job.task.get("resume") is None:
                    problem = refused_before_loading(job.task)
            if problem is not None:
                raise GridRefused(
                    f"invalid configuration: {problem} (a job of the grid's part {subdir} "
                    "would refuse it at its start)"
                )
