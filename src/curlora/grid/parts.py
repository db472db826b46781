"""The parts of a ``curlora-reproduce`` grid: ``(sweep subdirectory, overrides)`` per
Hydra multirun, phase by phase (the order they run in is ``curlora.reproduce``'s), and how
many jobs each sweeps. Planning only: nothing here runs, reads or writes anything, so the
grid runner and ``--status`` plan the same jobs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

Part = tuple[str, list[str]]  # (sweep subdirectory, overrides)


def _csv(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def _seed_parts(
    stage: str,
    seed: int,
    controls: Sequence[str],
    rates: dict[str, str],
    rank: str,
    common: Sequence[str],
) -> list[Part]:
    """One seed's parts: each control, then each method at its rate(s) (a comma list)."""
    parts: list[Part] = [
        (f"{stage}/s{seed}/{control}", [f"method={control}", f"seed={seed}", *common])
        for control in controls
    ]
    parts += [
        (
            f"{stage}/s{seed}/{method}",
            [f"method={method}", f"optimizer.lr={lr}", f"rank={rank}", f"seed={seed}", *common],
        )
        for method, lr in rates.items()
    ]
    return parts


def grid_parts(grid: DictConfig, extra: Sequence[str]) -> list[Part]:
    """The lr_grid part of the grid: ``(sweep subdirectory, overrides)`` per multirun.

    Seed by seed (``lr_grid/s<seed>/<method>``): within a group of methods that run
    together (:func:`headline_groups`), a grid stopped half-way holds every method and
    learning rate of the group for the seeds it finished.
    """
    common = [*grid.overrides, *extra]
    rates = {method: _csv(lrs) for method, lrs in grid.lrs.items()}
    parts: list[Part] = []
    for seed in grid.seeds:
        parts += _seed_parts("lr_grid", seed, grid.controls, rates, _csv(grid.ranks), common)
    return parts


def first_methods(grid: DictConfig) -> set[str]:
    """The methods whose learning-rate grid runs first: the headline comparison's methods
    and the controls (the question before the matched controls and the ablations)."""
    return {*(grid.get("headline_methods") or []), *grid.controls}


def headline_groups(grid: DictConfig) -> list[list[str]]:
    """The headline methods (and controls) in the order their runs come, as groups: the
    question first (the first two headline methods, CURLoRA and the method it is asked
    against first, with the controls), then the other headline methods. Each group's rate
    grid (every seed) and then its headline seeds at the chosen rates run before the next
    group's, so a grid stopped early holds the question answered over all its seeds rather
    than every method over some seeds."""
    methods = list(grid.get("headline_methods") or [])
    question = [*methods[:2], *(c for c in grid.controls if c not in methods[:2])]
    others = [m for m in methods[2:] if m not in question]
    return [question, others] if others else [question]


def part_method(part: Part) -> str | None:
    """The ``method=`` a part runs (None when it sets none)."""
    return next((o.partition("=")[2] for o in part[1] if o.startswith("method=")), None)


def headline_parts(grid: DictConfig, lrs: dict[str, float], extra: Sequence[str]) -> list[Part]:
    """The headline comparison's extra seeds (controls included) at the chosen rates."""
    common = [*grid.overrides, *extra]
    parts: list[Part] = []
    extra_seeds = [s for s in grid.get("headline_seeds") or [] if s not in grid.seeds]
    rates = {m: str(lrs[m]) for m in grid.get("headline_methods") or [] if m in lrs}
    for seed in extra_seeds:
        parts += _seed_parts("headline", seed, grid.controls, rates, str(grid.ranks[0]), common)
    return parts


def sweep_parts(grid: DictConfig, lrs: dict[str, float], extra: Sequence[str]) -> list[Part]:
    """The rank sweep, then CURLoRA's sampling ablation, at the chosen rates."""
    common = [*grid.overrides, *extra]
    parts: list[Part] = []
    sweep = grid.get("rank_sweep")
    if sweep:
        parts += [
            (
                f"ranks/{method}",
                [
                    f"method={method}",
                    f"optimizer.lr={lrs[method]}",
                    f"rank={_csv(sweep.ranks)}",
                    f"seed={_csv(grid.seeds)}",
                    *common,
                ],
            )
            for method in sweep.methods
            if method in lrs
        ]
    if "curlora" in lrs and grid.get("sampling"):
        parts.append(
            (
                "sampling",
                [
                    "method=curlora",
                    f"method.sampling={_csv(grid.sampling)}",
                    f"optimizer.lr={lrs['curlora']}",
                    f"rank={_csv(grid.ranks)}",
                    f"seed={_csv(grid.seeds)}",
                    *common,
                ],
            )
        )
    return parts


def reference_parts(grid: DictConfig, lrs: dict[str, float], extra: Sequence[str]) -> list[Part]:
    """The references (``references.strategies`` with ``references.method`` at its chosen
    rate, the grid's seeds): what a method that fights forgetting should approach."""
    refs = grid.get("references")
    if not refs or refs.method not in lrs:
        return []
    common = [*grid.overrides, *extra]
    return [
        (
            f"references/s{seed}/{strategy}",
            [
                f"method={refs.method}",
                f"strategy={strategy}",
                f"optimizer.lr={lrs[refs.method]}",
                f"rank={grid.ranks[0]}",
                f"seed={seed}",
                *common,
            ],
        )
        for seed in grid.seeds
        for strategy in refs.strategies
    ]


def under(prefix: str, parts: Sequence[Part]) -> list[Part]:
    """``parts`` stored under ``<prefix>/`` (the fallback protocol's jobs; "" : as they are)."""
    return [(f"{prefix}/{d}" if prefix else d, o) for d, o in parts]


def job_count(overrides: Sequence[str]) -> int:
    """How many jobs a multirun of ``overrides`` sweeps (the product of the comma lists)."""
    count = 1
    for override in overrides:
        _key, _, value = override.partition("=")
        if not value.startswith(("[", "{", "'", '"')):
            count *= len(value.split(","))
    return count


def split_jobs(parts: Sequence[Part]) -> list[Part]:
    """Each multirun part as single-job parts, ``<part>/<key_value__...>`` (the swept
    values): many small parts keep N workers busy where one job takes seconds (a GPU)."""
    out: list[Part] = []
    for subdir, overrides in parts:
        fixed = [o for o in overrides if job_count([o]) == 1]
        swept = [o for o in overrides if job_count([o]) > 1]
        choices = [
            [(o.partition("=")[0], v) for v in o.partition("=")[2].split(",")] for o in swept
        ]
        for combination in itertools.product(*choices):
            # No '=' or ',' in the name: it becomes part of a hydra.sweep.dir override.
            name = "__".join(f"{k}_{v}" for k, v in combination) or "run"
            out.append((f"{subdir}/{name}", [*(f"{k}={v}" for k, v in combination), *fixed]))
    return out
