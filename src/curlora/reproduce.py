"""``curlora-reproduce``: the reproduction grid, one command, resumable, ending in REPORT.md.

    curlora-reproduce [reproduce=table1_cpu] [key=value ...]     (also: make reproduce)

The grid is a config of the ``reproduce`` group (``configs/reproduce/<name>.yaml``): seeds,
ranks, learning rates per method, controls and the sampling modes to ablate. It runs as
Hydra multiruns (``python -m curlora.cli -m ...``), one per part, each in a fixed sweep
directory under the grid's ``dir``:

1. ``lr_grid/s<seed>/<method>``: seed by seed, the controls (``head_only``), then each
   method × its learning rates × ranks.
2. The learning rate of each method is chosen on the validation carves of the training
   data: the best mean final average validation accuracy over the seeds every candidate
   rate finished; ties go to the smaller rate. Never the test split.
3. ``sampling``: CURLoRA's sampling modes at its chosen learning rate, × ranks × seeds.
4. ``REPORT.md`` and figures (``curlora.reporting.reproduction``).

Running the same command again is safe: a job whose directory holds the same experiment
is skipped when it completed and resumed from its checkpoints otherwise
(``curlora.run_guard``). Extra ``key=value`` arguments are added to every job (they are
part of the experiments, so change them only with a new ``reproduce.dir``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("curlora")


def compose(overrides: Sequence[str]) -> DictConfig:
    """The run config with the grid (``cfg.reproduce``) as ``curlora.cli`` composes it."""
    from curlora.grid_guard import compose_grid

    cfg = compose_grid(overrides)  # GridRefused: one line, exit 2
    if not cfg.get("reproduce"):
        grids = Path(__file__).with_name("configs") / "reproduce"
        names = sorted(p.stem for p in grids.glob("*.yaml"))
        raise SystemExit(f"error: no grid chosen: reproduce=<name>, one of {names}")
    return cfg


def _csv(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def multirun(sweep_dir: Path, overrides: Sequence[str]) -> int:
    """One Hydra multirun in ``sweep_dir``; returns its exit code (1: some job failed)."""
    command = [
        sys.executable,
        "-m",
        "curlora.cli",
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    log.info("running: %s", " ".join(command[3:]))
    return subprocess.run(command, check=False).returncode


def grid_parts(grid: DictConfig, extra: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The lr_grid part of the grid: ``(sweep subdirectory, overrides)`` per multirun.

    Seed by seed (``lr_grid/s<seed>/<method>``), so a grid stopped half-way holds every
    method and learning rate for the seeds it finished, not every seed of some methods.
    """
    common = [*grid.overrides, *extra]
    ranks = _csv(grid.ranks)
    parts: list[tuple[str, list[str]]] = []
    for seed in grid.seeds:
        parts += [
            (f"lr_grid/s{seed}/{control}", [f"method={control}", f"seed={seed}", *common])
            for control in grid.controls
        ]
        parts += [
            (
                f"lr_grid/s{seed}/{method}",
                [
                    f"method={method}",
                    f"optimizer.lr={_csv(lrs)}",
                    f"rank={ranks}",
                    f"seed={seed}",
                    *common,
                ],
            )
            for method, lrs in grid.lrs.items()
        ]
    return parts


class GridInterrupted(Exception):
    """A part's multirun was stopped by a signal (its exit code, 130 or 143)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"interrupted (exit code {exit_code})")
        self.exit_code = exit_code


def run_part(sweep_dir: Path, overrides: Sequence[str]) -> bool:
    """One part of the grid; True when every job completed. An interrupted part stops the
    grid (a scheduler's SIGTERM, Ctrl+C): the next parts would only be killed too."""
    code = multirun(sweep_dir, overrides)
    if code >= 128:
        raise GridInterrupted(code)
    return code == 0


def main(argv: Sequence[str] | None = None) -> int:
    from curlora.atomic import OutputError
    from curlora.grid_guard import GridRefused, release_grid_locks

    try:
        return _main(argv)
    except GridRefused as refused:  # bad arguments, an unknown grid, a grid in use
        print(f"error: {refused}", file=sys.stderr)
        return 2
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        code = 130
    except GridInterrupted as interrupt:
        code = interrupt.exit_code
    finally:
        release_grid_locks()
    print(
        "error: the grid was interrupted; run the same command again to continue "
        "(finished jobs are skipped, interrupted ones resume from their checkpoints)",
        file=sys.stderr,
    )
    return code


def _main(argv: Sequence[str] | None) -> int:
    from curlora.atomic import atomic_write_text
    from curlora.grid_guard import check_arguments, hold_grid_lock, write_grid_report
    from curlora.reporting.reproduction import choose_learning_rates, load_grid, write_report

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if (early := check_arguments(args, __doc__ or "")) is not None:  # --help, not key=value
        return early
    chosen = [a for a in args if a.startswith("reproduce=")] or ["reproduce=table1_cpu"]
    extra = [a for a in args if not a.startswith("reproduce=")]
    cfg = compose([*chosen, *extra])
    grid = cfg.reproduce
    root = Path(str(grid.dir)).absolute()
    hold_grid_lock(root)  # one invocation per grid; main releases it
    atomic_write_text(
        root / "grid.yaml",
        OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(grid, resolve=True))),
    )
    failed = 0
    for subdir, overrides in grid_parts(grid, extra):
        failed += not run_part(root / subdir, overrides)
    lrs = choose_learning_rates(load_grid(root))
    log.info("learning rates chosen on validation: %s", lrs)
    if "curlora" in lrs and grid.sampling:
        overrides = [
            "method=curlora",
            f"method.sampling={_csv(grid.sampling)}",
            f"optimizer.lr={lrs['curlora']}",
            f"rank={_csv(grid.ranks)}",
            f"seed={_csv(grid.seeds)}",
            *grid.overrides,
            *extra,
        ]
        failed += not run_part(root / "sampling", overrides)
    command = "curlora-reproduce " + " ".join(chosen + extra)
    report = write_grid_report(root, lambda: write_report(root, str(grid.name), command))
    if report is None:  # nothing completed, or the report failed: said in one line
        return 1
    print(f"report: {report}")
    if failed:
        print(
            f"error: {failed} part(s) of the grid had jobs that did not complete", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
