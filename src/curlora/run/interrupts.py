"""SIGTERM and SIGINT: stop at a safe point, keep what was done, say so, exit non-zero.

SLURM (and most schedulers) send SIGTERM before pre-empting or cancelling a job; Ctrl+C
sends SIGINT. :class:`InterruptGuard` records which arrived. The task loop checks it
between phases (:meth:`InterruptGuard.check` raises :class:`RunInterrupted`), and while a
task trains, :class:`CheckpointOnInterrupt` saves the step checkpoint at the end of the
batch in flight and stops the task, so a resumed run loses no finished step. Lightning
chains its own SIGTERM handler with this one while a Trainer runs, and turns Ctrl+C into
``SystemExit(1)``; the loop maps both back to the signal recorded here.

Exit codes (``curlora.cli``): 130 after SIGINT, 143 after SIGTERM (128 + the signal
number, the shell's convention), so a scheduler can tell an interrupted run, which
``resume=`` continues, from a finished one.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(BaseException):
    """The run was asked to stop by a signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class InterruptGuard:
    """Records SIGTERM/SIGINT while active (a context manager; main thread only).

    SIGTERM only sets the flag (the run stops at the next safe point). SIGINT sets it and
    raises ``KeyboardInterrupt`` at once, as Python does by default, so a Ctrl+C during a
    long evaluation does not wait for it to finish.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                previous = signal.signal(signum, self._handle)
                self._previous[signum] = previous
                self._take_over(previous)
        return self

    def _take_over(self, previous: Any) -> None:
        """Keep a signal that an earlier recording handler received (an entry point's
        handler during imports, whose ``KeyboardInterrupt`` Python may have swallowed)."""
        earlier = getattr(previous, "received", None)
        if self.received is None and isinstance(earlier, int):
            self.received = earlier

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = self.received or signum
        if first:
            log.warning(
                "received %s: stopping at the next safe point (checkpoint, results.json)",
                signal.Signals(signum).name,
            )
        if signum == signal.SIGINT:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise :class:`RunInterrupted` if a signal arrived."""
        if self.received is not None:
            raise RunInterrupted(self.received)

    def as_interrupt(self, error: BaseException) -> RunInterrupted | None:
        """The :class:`RunInterrupted` an exception stands for, or None.

        Lightning turns SIGTERM into ``SIGTERMException`` (a ``SystemExit``) and Ctrl+C
        into ``SystemExit(1)``; a ``KeyboardInterrupt`` may also escape directly.
        """
        if isinstance(error, RunInterrupted):
            return error
        if isinstance(error, KeyboardInterrupt):
            return RunInterrupted(self.received or signal.SIGINT)
        if isinstance(error, SystemExit) and self.received is not None:
            return RunInterrupted(self.received)
        return None


class CheckpointOnInterrupt(Callback):
    """After the batch in flight, if a signal arrived: save the step checkpoint and stop."""

    def __init__(self, guard: InterruptGuard, path: Path) -> None:
        self.guard = guard
        self.path = Path(path)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # With several processes they stop together, after the same batch, if any of them
        # received a signal (``kill <pid>`` reaches one process only); one process alone is
        # not asked (reduce_boolean_decision returns its own decision).
        stop = trainer.strategy.reduce_boolean_decision(self.guard.received is not None, all=False)
        if not stop:
            return
        if self.guard.received is None:
            self.guard.received = signal.SIGTERM  # stopped by another process's signal
        trainer.save_checkpoint(self.path)
        log.warning("saved %s at step %d before stopping", self.path, trainer.global_step)
        self.guard.check()
