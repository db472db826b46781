"""Run a grid's steps, ``workers`` parts at a time, without stage barriers.

A grid is an ordered list of steps (the question's rate grid, its headline seeds, the next
methods' rate grid, ...). Some steps can only be planned once others have finished: the
headline seeds run at the rate chosen from their method's whole rate grid. Running the
steps one after another leaves a worker idle whenever a step's last part runs alone; here
each step's parts are built (``Step.build``) as soon as the steps it ``needs`` have
finished, and a free worker always takes the first part, in step order, that can start.
With one worker that is exactly the steps' order; with more, a later part fills a core
that would otherwise wait, and no part ever starts before the parts it depends on ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from curlora.grid.parts import Part


@dataclass(frozen=True)
class Step:
    """``build`` returns the step's parts; it is called once, after every step named in
    ``needs`` has finished (each of their parts ended, completed or not)."""

    name: str
    build: Callable[[], Sequence[Part]]
    needs: tuple[str, ...] = ()


class _Plan:
    """The steps' state, shared by the workers; every method runs under ``lock``."""

    def __init__(self, steps: Sequence[Step]) -> None:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"grid steps must have distinct names, got {names}")
        for step in steps:
            unknown = [n for n in step.needs if n not in names]
            if unknown:
                raise ValueError(f"step {step.name!r} needs unknown step(s) {unknown}")
        self.steps = list(steps)
        self.lock = threading.Condition()
        self.waiting: dict[str, list[Part]] = {}  # built steps' parts not yet started
        self.running: dict[str, int] = {}  # built steps' parts started and not ended
        self.finished: set[str] = set()
        self.stopped = False  # a worker raised: start nothing more

    def _build_ready(self) -> None:
        """Build every step whose needs have finished; a step built empty finishes at once,
        which can make further steps ready (hence the loop)."""
        progress = True
        while progress:
            progress = False
            for step in self.steps:
                if step.name in self.waiting or not self.finished.issuperset(step.needs):
                    continue
                self.waiting[step.name] = list(step.build())
                self.running[step.name] = 0
                if not self.waiting[step.name]:
                    self.finished.add(step.name)
                    progress = True

    def take(self) -> tuple[str, Part] | None:
        """The first part, in step order, that can start; None when there is none now."""
        self._build_ready()
        for step in self.steps:
            parts = self.waiting.get(step.name)
            if parts:
                self.running[step.name] += 1
                return step.name, parts.pop(0)
        if not self.done() and not any(self.running.values()):
            # Nothing runs that could finish a needed step: the needs form a cycle.
            blocked = [s.name for s in self.steps if s.name not in self.finished]
            raise ValueError(f"grid steps {blocked} need each other: none can start")
        return None

    def next_part(self) -> tuple[str, Part] | None:
        """``take``, waiting while only parts that others need are running; None once every
        step has finished (or a worker raised)."""
        while not self.done():
            taken = self.take()
            if taken is not None:
                return taken
            if not self.done():
                self.lock.wait()  # woken when a part ends
        # take() may itself have finished the last steps (built empty): wake the workers
        # that wait, so that they see it and return too.
        self.lock.notify_all()
        return None

    def done(self) -> bool:
        return self.stopped or len(self.finished) == len(self.steps)

    def end(self, name: str) -> None:
        self.running[name] -= 1
        if not self.running[name] and not self.waiting[name]:
            self.finished.add(name)


def run_steps(steps: Sequence[Step], workers: int, run: Callable[[Part], bool]) -> int:
    """Run every step's parts with ``run`` (True: every job of the part completed),
    ``workers`` at a time; returns how many parts did not complete. An exception from
    ``run`` or a ``build`` (an interrupted part) starts no further part and is raised once
    the parts already running have ended."""
    plan = _Plan(steps)
    failed = 0

    def worker() -> None:
        nonlocal failed
        try:
            while True:
                with plan.lock:
                    taken = plan.next_part()
                if taken is None:
                    return
                name, part = taken
                ok = run(part)
                with plan.lock:
                    failed += not ok
                    plan.end(name)
                    plan.lock.notify_all()
        except BaseException:
            with plan.lock:  # run or a build raised: the other workers start nothing more
                plan.stopped = True
                plan.lock.notify_all()
            raise

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(worker) for _ in range(max(1, workers))]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return failed
