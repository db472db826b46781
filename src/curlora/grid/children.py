"""The grid's running jobs, and the signals that stop the grid while they run.

Each part of a grid is a child process (``python -m curlora.cli -m ...``) that trains for
minutes to hours. A signal sent to the grid process alone (``kill <pid>``, a scheduler
that signals the process it started) used to end the grid at once and leave its child
training, reparented to PID 1, holding no lock, its results never stored.

Here each child starts in its own process group (its own session), and the grid process
passes SIGTERM and SIGINT on to every running child's group (:class:`Children`): the
child saves its checkpoint and exits 143 or 130 (``curlora.run.interrupts``), the grid
waits for it, stores what finished, releases its locks and exits with the same code. A
Ctrl+C in a terminal reaches the grid process alone and is passed on once, so a child
never gets it twice (a second SIGINT would interrupt its checkpoint). SIGHUP (the terminal
closed) is passed on as SIGTERM, unless the grid runs under ``nohup``. No new part starts
once a signal arrived. SIGKILL cannot be passed on: a child of a killed grid runs on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

log = logging.getLogger("curlora")
# The signals the grid process passes on -> what its children get (they save their
# checkpoint on SIGTERM and SIGINT only).
PASSED_ON = {
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGINT: signal.SIGINT,
    signal.SIGHUP: signal.SIGTERM,
}


class GridInterrupted(BaseException):
    """The grid was stopped by a signal (its exit code: 128 + the signal's number).

    A BaseException, as KeyboardInterrupt is: raised wherever the grid process is when a
    signal arrives with no job running, it must not be taken for a failed report or part.
    """

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"interrupted (exit code {exit_code})")
        self.exit_code = exit_code


class Children:
    """The child processes running now, and the signal the grid received (if any)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._running: set[subprocess.Popen[bytes]] = set()
        # Each child is popped from here by whoever passes the signal on (the handler or
        # the thread that started it): set.pop is atomic, so no child gets it twice.
        self._unsignalled: set[subprocess.Popen[bytes]] = set()

    def run(self, command: Sequence[str], env: Mapping[str, str]) -> int:
        """Run ``command`` in its own process group until it exits; its exit code. After a
        signal, starts nothing: GridInterrupted."""
        if self.signum is not None:
            raise GridInterrupted(128 + self.signum)
        child = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
        self._running.add(child)
        self._unsignalled.add(child)
        try:
            if self.signum is not None:  # arrived while it started: the handler missed it
                self._pass_on()
            return child.wait()
        finally:
            self._running.discard(child)
            self._unsignalled.discard(child)

    def _pass_on(self) -> None:
        assert self.signum is not None
        sent = PASSED_ON.get(signal.Signals(self.signum), signal.SIGTERM)
        while True:
            try:
                child = self._unsignalled.pop()
            except KeyError:
                return
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, sent)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: pass the signal on to the running children and let the grid
        wait for them (their parts then end it); with none running, end the grid here."""
        if self.signum is None:
            self.signum = signum
        if not self._running:
            log.warning("received %s: stopping the grid", signal.Signals(signum).name)
            raise GridInterrupted(128 + self.signum)
        self._pass_on()
        log.warning(
            "received %s: passed on to %d running job(s); waiting for them to save their "
            "checkpoints",
            signal.Signals(signum).name,
            len(self._running),
        )


CHILDREN = Children()
"""The children of this process's grid (``curlora.reproduce.multirun`` starts them)."""


@contextlib.contextmanager
def passing_signals_on() -> Iterator[Children]:
    """A fresh :data:`CHILDREN`, with the handlers of :data:`PASSED_ON` installed (main thread
    only; a signal ignored when the grid started, as under ``nohup``, stays ignored) and
    the previous handlers restored at the end."""
    global CHILDREN
    CHILDREN = Children()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in PASSED_ON:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, CHILDREN.handle)
    try:
        yield CHILDREN
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
