"""``curlora-reproduce --status``: how far a grid has got, read from its files alone.

A grid on a CPU runs for many hours and is often stopped and started again; this says,
without running or changing anything, which of its phases are done, which jobs are in
progress (or were interrupted and will resume from their checkpoints), whether a grid
process holds the grid now, and about how long the rest would take.

The phases are the ones ``curlora-reproduce`` runs, in its order (``curlora.reproduce``):
the protocol check (first protocol, then the fallback one when the first found forgetting
not measurable), the rate grid of the headline methods, the headline seeds, the
references, the rest of the rate grid, the rank sweep and sampling ablation. A job counts
as stored when the committed results directory holds it complete (what the report reads).

The time left is an estimate, said as one: the median wall time (``progress.json``'s
``elapsed_s``) of the stored jobs of the protocol now running, times the jobs left,
divided by the jobs run at once (``workers``). Jobs differ in cost (methods, rates, the
machine's load), and the phases after an undecided protocol check are not counted.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from curlora.grid.guard import LOCK_FILE
from curlora.grid.parts import (
    Part,
    first_methods,
    grid_parts,
    headline_groups,
    headline_parts,
    job_count,
    part_method,
    reference_parts,
    split_jobs,
    sweep_parts,
    under,
)
from curlora.grid.results import RUNS, finished_jobs
from curlora.run.guard import LOCK_FILE as RUN_LOCK_FILE
from curlora.run.record import RunRecord
from curlora.run.state import PROGRESS_FILE, DamagedFile, read_progress

log = logging.getLogger("curlora")


@dataclasses.dataclass(frozen=True)
class JobState:
    """One job directory of the working tree that is not stored complete."""

    path: str  # relative to the grid's working directory
    tasks_done: int
    tasks: int
    elapsed_s: float
    running: bool = False  # a process holds its run directory's lock now


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    planned: int
    stored: int
    stored_elapsed: tuple[float, ...]  # wall time of each stored job with a known one
    unfinished: tuple[JobState, ...]


def _progress(job_dir: Path) -> RunRecord | None:
    """A job's ``progress.json`` (``curlora.run.state.read_progress``); None when missing, or
    damaged (said in a warning naming it: the job is still counted, its progress unknown)."""
    try:
        return read_progress(job_dir)
    except DamagedFile as error:
        log.warning("grid status: %s; its progress is unknown", error)
        return None


def _unfinished(root: Path, subdir: str, stored: set[Path]) -> list[JobState]:
    """The jobs below ``root/subdir`` that started (a ``progress.json``) and are not stored."""
    base = root / subdir
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.rglob(PROGRESS_FILE)):
        job = path.parent
        if "checkpoints" in job.parts or job.relative_to(base) in stored:
            continue
        record = _progress(job)
        out.append(
            JobState(
                path=str(job.relative_to(root)),
                tasks_done=0 if record is None else sum(e is not None for e in record.after_task),
                tasks=0 if record is None else len(record.tasks),
                elapsed_s=0.0 if record is None else record.elapsed_s,
                running=lock_holder(job / RUN_LOCK_FILE) is not None,
            )
        )
    return out


def phase(name: str, parts: Sequence[Part], root: Path, results_dir: Path) -> Phase:
    """Count the planned, stored and unfinished jobs of ``parts`` (split as the grid runs
    them; ``split_jobs`` is applied by the caller)."""
    planned = stored_count = 0
    elapsed: list[float] = []
    unfinished: list[JobState] = []
    for subdir, overrides in parts:
        count = job_count(overrides)
        done = finished_jobs(results_dir / RUNS / subdir)
        planned += count
        stored_count += min(len(done), count)
        for job in done:
            record = _progress(results_dir / RUNS / subdir / job)
            if record is not None and math.isfinite(record.elapsed_s) and record.elapsed_s >= 0:
                elapsed.append(record.elapsed_s)
        unfinished += _unfinished(root, subdir, set(done))
    return Phase(name, planned, stored_count, tuple(elapsed), tuple(unfinished))


def grid_running(root: Path) -> str | None:
    """The holder line of the grid's lock when a process holds it now; None otherwise."""
    return lock_holder(root / LOCK_FILE)


def lock_holder(path: Path) -> str | None:
    """The holder line of the lock file ``path`` (the grid's, or a run directory's) when a
    process holds it now; None otherwise (no file, or no holder).

    Probed with a shared, non-blocking ``flock`` on a read-only descriptor, released at
    once: nothing is written, and a process holding its exclusive lock refuses the probe."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def render(
    grid_name: str,
    phases: Sequence[Phase],
    current: Sequence[Phase],
    workers: int,
    holder: str | None,
    undecided: bool,
    notes: Sequence[str] = (),
) -> str:
    """The status text: one line per phase, the unfinished jobs, the grid process and the
    estimate from ``current`` (the phases of the protocol now running)."""
    planned = sum(p.planned for p in phases)
    stored = sum(p.stored for p in phases)
    lines = [f"{grid_name}: {stored} of {planned} planned jobs stored"]
    lines += [f"  {p.name}: {p.stored} of {p.planned}" for p in phases]
    lines += [f"  {note}" for note in notes]
    if undecided:
        lines.append(
            "  the rest of the grid: planned once the protocol check decides (its jobs above)"
        )
    unfinished = [job for p in phases for job in p.unfinished]
    # A job is running when a process holds its run directory's lock; one that stopped
    # (a signal, a grid stopped or running other parts first) resumes from its checkpoints.
    for job in sorted(unfinished, key=lambda j: not j.running):
        done = f"{job.tasks_done} of {job.tasks} tasks" if job.tasks else "starting"
        if round(job.elapsed_s / 60):  # a time under half a minute says nothing
            done += f"; {_duration(job.elapsed_s)} at its last evaluation point"
        state = "in progress" if job.running else "interrupted: resumes from its checkpoints"
        lines.append(f"  {state}: {job.path} ({done})")
    left = sum(p.planned - p.stored for p in current)
    if holder:
        lines.append(f"grid process: running ({holder})")
    elif left or undecided:
        lines.append("grid process: none; run the same curlora-reproduce command to continue")
    else:
        lines.append("grid process: none (every planned job is stored)")
    elapsed = [s for p in current for s in p.stored_elapsed]
    if left == 0:
        lines.append("time left: none in the planned phases")
    elif not elapsed:
        lines.append(
            f"time left: {left} job(s); no estimate until a job of this protocol is stored"
        )
    else:
        median = statistics.median(elapsed)
        lines.append(
            f"time left: about {_duration(left * median / max(workers, 1))} for {left} job(s) "
            f"at {workers} at once (an estimate: the median wall time of {len(elapsed)} "
            f"stored job(s) of this protocol, {_duration(median)}, times the jobs left)"
        )
    return "\n".join(lines) + "\n"


def grid_status(grid: DictConfig, extra: Sequence[str], root: Path, results_dir: Path) -> str:
    """The ``--status`` text of ``grid`` (its working and results directories)."""
    from curlora.reporting.protocol_check import DamagedCheck, decided_prefix, read_checks

    def split(parts: Sequence[Part]) -> list[Part]:
        return split_jobs(parts) if grid.get("split_jobs") else list(parts)

    phases: list[tuple[str, Phase]] = []  # (protocol, phase)
    seen: set[str] = set()

    def add(protocol: str, name: str, parts: Sequence[Part]) -> None:
        fresh = [p for p in split(parts) if p[0] not in seen]
        seen.update(p[0] for p in fresh)
        if fresh:
            phases.append((protocol, phase(name, fresh, root, results_dir)))

    protocol, prefix, undecided = "first", "", False
    notes: list[str] = []
    check = grid.get("protocol_check")
    if check:
        try:
            decided = decided_prefix(read_checks(results_dir))
        except DamagedCheck as error:
            decided = None
            notes.append(f"the protocol check's record cannot be read: {error}")
        check_parts = [p for p in grid_parts(grid, extra) if part_method(p) == check.method]
        add("first", "protocol check, first protocol", check_parts)
        undecided = decided is None
        if decided:
            protocol, prefix = "fallback", decided
            extra = [*extra, *check.fallback_overrides]
            fallback = [p for p in grid_parts(grid, extra) if part_method(p) == check.method]
            add(protocol, "protocol check, fallback protocol", under(prefix, fallback))
    if not undecided:
        lrs = {m: "chosen" for m in grid.lrs}  # the rate is not in a stored job's path
        lr_parts = under(prefix, grid_parts(grid, extra))
        first_set = first_methods(grid)
        seeds = under(prefix, headline_parts(grid, lrs, extra))
        for n, group in enumerate(headline_groups(grid)):
            which = f"{'the question' if n == 0 else 'other headline methods'} ({', '.join(group)})"
            add(protocol, f"rate grid, {which}", [p for p in lr_parts if part_method(p) in group])
            add(protocol, f"headline seeds, {which}", [p for p in seeds if part_method(p) in group])
        add(protocol, "references", under(prefix, reference_parts(grid, lrs, extra)))
        rest = [p for p in lr_parts if part_method(p) not in first_set]
        add(protocol, "rate grid, the rest", rest)
        add(protocol, "rank sweep and sampling", under(prefix, sweep_parts(grid, lrs, extra)))
    current = [ph for proto, ph in phases if proto == protocol]
    holder = grid_running(root)
    workers = int(grid.get("workers") or 1)
    every = [ph for _, ph in phases]
    return render(str(grid.name), every, current, workers, holder, undecided, notes)
