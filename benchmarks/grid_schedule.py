"""What the grid's scheduler saves over running a grid's steps one after another.

    python benchmarks/grid_schedule.py [--grid table2_words] [--workers 2] [--minute-s 0.005]

Every job of the grid sleeps for its recorded wall time (``elapsed_s`` of the job's
``progress.json`` in the grid's committed results; the median of those for a job not
stored yet), one recorded minute lasting ``--minute-s`` seconds here. The grid's own steps
(``curlora.reproduce.grid_steps``, at the rates its committed runs choose) then run twice
in this one process, with the same workers:

- **stages**: each step alone, the next starting once every part of the one before has
  ended (a barrier between stages, as ``curlora-reproduce`` ran before the scheduler);
- **scheduler**: ``curlora.grid.schedule.run_steps``, a free worker taking the first part
  that can start.

It prints each way's makespan and idle worker time in recorded hours, and their ratio.
The protocol check's jobs run before the steps either way and are left out. The sleeps
keep the cores idle, so other load on the machine hardly moves the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def grid_steps(grid_name: str, workers: int):
    """The grid's steps (each part split into its jobs when the grid splits them) and the
    committed results directory they are read from."""
    from curlora import reproduce
    from curlora.grid.parts import grid_parts, under
    from curlora.reporting.protocol_check import decided_prefix, read_checks

    cfg = reproduce.compose([f"reproduce={grid_name}", f"reproduce.workers={workers}"])
    grid = cfg.reproduce
    results_dir = REPO / "docs" / "reproduction" / grid_name
    extra: list[str] = []
    prefix = ""
    if grid.get("protocol_check"):  # the protocol its committed check decided on
        prefix = decided_prefix(read_checks(results_dir))
        if prefix is None:
            raise SystemExit(f"{grid_name}: its protocol check is not decided yet")
        if prefix:
            extra = list(grid.protocol_check.fallback_overrides)
    lrs = reproduce.chosen_rates(results_dir, prefix)
    lr_parts = under(prefix, grid_parts(grid, extra))
    steps = reproduce.grid_steps(grid, lr_parts, prefix, extra, lambda: lrs)
    if grid.get("split_jobs"):
        steps = reproduce.split_steps(steps)
    return steps, results_dir


def recorded_minutes(steps, results_dir: Path) -> dict[str, float]:
    """Each job's recorded wall time in minutes (stored jobs), the median for the rest."""
    from curlora.grid.results import RUNS, finished_jobs
    from curlora.run.state import read_progress

    known: dict[str, float] = {}
    parts = [p for step in steps for p in step.build()]
    for subdir, _overrides in parts:
        for job in finished_jobs(results_dir / RUNS / subdir):
            known[subdir] = read_progress(results_dir / RUNS / subdir / job).elapsed_s / 60
    median = statistics.median(known.values())
    return {subdir: known.get(subdir, median) for subdir, _ in parts}


def makespan(steps, workers: int, minutes: dict[str, float], minute_s: float, stages: bool):
    """Wall seconds to run ``steps`` with every job sleeping its recorded time."""
    from curlora.grid.schedule import Step, run_steps

    def run(part) -> bool:
        time.sleep(minutes[part[0]] * minute_s)
        return True

    start = time.perf_counter()
    if stages:
        for step in steps:  # one step at a time: the next waits for all of this one
            run_steps([Step(step.name, step.build)], workers, run)
    else:
        run_steps(steps, workers, run)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="table2_words")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minute-s", type=float, default=0.005)
    args = parser.parse_args()
    steps, results_dir = grid_steps(args.grid, args.workers)
    minutes = recorded_minutes(steps, results_dir)
    work_h = sum(minutes.values()) / 60
    print(
        f"{args.grid}: {len(minutes)} jobs in its steps, {work_h:.1f} h of recorded "
        f"job time, {args.workers} workers"
    )
    hours = {}
    for name, stages in (("stages", True), ("scheduler", False)):
        seconds = makespan(steps, args.workers, minutes, args.minute_s, stages)
        hours[name] = seconds / args.minute_s / 60
        idle = hours[name] * args.workers - work_h
        print(f"{name:>9}: makespan {hours[name]:.2f} h, idle worker time {idle:.2f} h")
    print(f"makespan ratio scheduler / stages {hours['scheduler'] / hours['stages']:.3f}")


if __name__ == "__main__":
    main()
