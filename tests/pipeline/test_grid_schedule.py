"""The grid's scheduler (curlora.grid.schedule): steps in order, no stage barrier.

Parts are ("name", []) pairs run by a recorder; where two workers must overlap, the
recorder holds a part until an event says it may end, so each order checked here is
forced, not a race that usually goes one way.
"""

from __future__ import annotations

import threading
import time

import pytest

from curlora.grid.schedule import Step, run_steps

WAIT_S = 10.0  # far above any step here; a part that waits this long is a hang: fail


def _parts(*names: str) -> list[tuple[str, list]]:
    return [(name, []) for name in names]


class Recorder:
    """Runs parts by recording "start"/"end" events; ``hold[name]`` keeps a part running
    until that event is set; ``fail`` names the parts that report a failed job."""

    def __init__(self, hold: dict[str, threading.Event] | None = None, fail: set | None = None):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.hold = hold or {}
        self.fail = fail or set()

    def __call__(self, part) -> bool:
        name = part[0]
        with self.lock:
            self.events.append(("start", name))
        if name in self.hold:
            assert self.hold[name].wait(WAIT_S), f"{name} was never released"
        with self.lock:
            self.events.append(("end", name))
        return name not in self.fail

    def started(self) -> list[str]:
        return [name for kind, name in self.events if kind == "start"]

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


def _wait_until(condition) -> bool:
    """Poll ``condition`` every 10 ms for up to WAIT_S; whether it came true."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_one_worker_runs_the_steps_in_order_and_builds_each_after_its_needs() -> None:
    built: list[tuple[str, list[str]]] = []
    run = Recorder()

    def build(name: str, parts: list[str]):
        def make():
            built.append((name, run.started()))  # what had run when the step was planned
            return _parts(*parts)

        return make

    steps = [
        Step("grid a", build("grid a", ["a1", "a2"])),
        Step("seeds a", build("seeds a", ["a3"]), ("grid a",)),
        Step("grid b", build("grid b", ["b1"])),
        Step("seeds b", build("seeds b", ["b2"]), ("grid b",)),
    ]
    assert run_steps(steps, 1, run) == 0
    assert run.started() == ["a1", "a2", "a3", "b1", "b2"]
    # A step is planned once, after its needs ended (its rate is read from their runs).
    assert [name for name, _ in built] == ["grid a", "grid b", "seeds a", "seeds b"]
    assert dict(built)["seeds a"] == ["a1", "a2"]
    assert dict(built)["seeds b"] == ["a1", "a2", "a3", "b1"]


def test_a_free_worker_starts_a_later_part_while_a_needed_part_runs() -> None:
    """The stage barrier this scheduler removes: while a2 (the last of grid a) runs, the
    other worker starts grid b rather than wait for a3, which needs a2; a3 starts only once
    a2 has ended, and before b2, the later part (b1 holds the other worker meanwhile)."""
    release = {"a2": threading.Event(), "b1": threading.Event()}
    run = Recorder(hold=release)
    steps = [
        Step("grid a", lambda: _parts("a1", "a2")),
        Step("seeds a", lambda: _parts("a3"), ("grid a",)),
        Step("grid b", lambda: _parts("b1", "b2")),
    ]
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(run_steps(steps, 2, run)))
    thread.start()
    try:
        # a1 ends at once; the two workers then hold a2 and b1 together.
        assert _wait_until(lambda: {"a2", "b1"} <= set(run.started())), run.events
        assert "a3" not in run.started()  # a2, which it needs, is still running
        release["a2"].set()
        assert _wait_until(lambda: "a3" in run.started()), run.events
        release["b1"].set()
    finally:
        for event in release.values():
            event.set()
        thread.join(WAIT_S)
    assert outcome == [0]
    assert run.index("end", "a2") < run.index("start", "a3") < run.index("start", "b2")


def _run_within(steps, workers: int, run) -> int:
    """run_steps on a daemon thread, failing (rather than hanging the suite) when it has
    not returned within WAIT_S."""
    outcome: list = []
    thread = threading.Thread(
        target=lambda: outcome.append(run_steps(steps, workers, run)), daemon=True
    )
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "run_steps did not return"
    return outcome[0]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_steps_that_end_built_empty_end_the_run(workers: int) -> None:
    """The last steps are planned from the runs before them and may hold nothing (a grid
    whose jobs all failed has no rate to run its sweep at): every worker still returns."""
    run = Recorder(fail={"a1", "a2"})
    steps = [
        Step("grid a", lambda: _parts("a1", "a2")),
        Step("seeds a", lambda: [], ("grid a",)),
        Step("sweep", lambda: [], ("grid a", "seeds a")),
    ]
    assert _run_within(steps, workers, run) == 2
    assert _run_within([Step("nothing", lambda: [])], workers, run) == 0


def test_failed_parts_are_counted_and_their_dependents_still_run() -> None:
    """A failed part ends its step like a completed one (the grid goes on; the rate is
    chosen from what completed), and an empty step finishes at once."""
    run = Recorder(fail={"a1"})
    steps = [
        Step("grid a", lambda: _parts("a1", "a2")),
        Step("nothing", lambda: [], ("grid a",)),
        Step("seeds a", lambda: _parts("a3"), ("nothing",)),
    ]
    assert _run_within(steps, 2, run) == 1
    assert sorted(run.started()) == ["a1", "a2", "a3"]


def test_an_interrupted_part_starts_no_further_part_and_is_raised() -> None:
    class Interrupted(Exception):
        pass

    started: list[str] = []

    def run(part) -> bool:
        started.append(part[0])
        if part[0] == "a2":
            raise Interrupted
        return True

    steps = [Step("grid a", lambda: _parts("a1", "a2", "a3", "a4"))]
    with pytest.raises(Interrupted):
        run_steps(steps, 1, run)
    assert started == ["a1", "a2"]


def test_steps_that_cannot_be_ordered_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown step"):
        run_steps([Step("a", lambda: [], ("b",))], 1, lambda part: True)
    with pytest.raises(ValueError, match="distinct names"):
        run_steps([Step("a", lambda: []), Step("a", lambda: [])], 1, lambda part: True)
    cycle = [Step("a", lambda: _parts("x"), ("b",)), Step("b", lambda: _parts("y"), ("a",))]
    with pytest.raises(ValueError, match="need each other"):
        run_steps(cycle, 2, lambda part: True)
