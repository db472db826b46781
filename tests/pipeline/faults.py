"""Fault injection for reliability tests, plugged in as extra callbacks from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger


class SimulatedCrash(RuntimeError):
    """Stands in for a killed process (the test then resumes from what was on disk)."""


class CrashOnce(Callback):
    """Raise once at ``step`` of task ``task`` (a marker file makes the crash one-off)."""

    def __init__(self, task: str, step: int, marker: str) -> None:
        self.task, self.step, self.marker = task, step, Path(marker)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if (
            pl_module.current_task == self.task
            and trainer.global_step == self.step
            and not self.marker.exists()
        ):
            self.marker.touch()
            raise SimulatedCrash(f"simulated crash in task {self.task} at step {self.step}")


class PoisonHead(Callback):
    """Fill the current head's weights with NaN before ``step`` of ``task``."""

    def __init__(self, task: str, step: int) -> None:
        self.task, self.step = task, step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.current_task == self.task and trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.heads[self.task].weight.fill_(float("nan"))


class BrokenLogger(Logger):
    """A logger whose every write fails, like W&B with a dead service or a full disk."""

    @property
    def name(self) -> str:
        return "broken"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        raise OSError("simulated: the logging directory is not writable")

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError("simulated: the logging directory is not writable")


class BreakLMHead(Callback):
    """After training ``task``, break the LM head: every logit NaN (``not_a_number``) or so
    large that the perplexity overflows to inf (``overflow``). Classification heads are
    untouched."""

    def __init__(self, task: str, how: str) -> None:
        self.task, self.how = task, how

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if pl_module.current_task != self.task:
            return
        weight = pl_module.backbone.get_output_embeddings().weight
        with torch.no_grad():
            if self.how == "not_a_number":
                weight.fill_(float("nan"))
            else:
                weight.mul_(1e30)


class SignalAt(Callback):
    """Send ``signal`` to this process after ``step`` of ``task`` (a scheduler's SIGTERM)."""

    def __init__(self, task: str, step: int, signal: str = "SIGTERM") -> None:
        self.task, self.step, self.signal = task, step, signal

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        import os
        import signal as signals

        if pl_module.current_task == self.task and trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signals, self.signal))


READ_ONLY = {"on": False}
"""Flipped by :class:`ReadOnlyFrom`; a test's patched ``os.replace`` refuses while it is on."""


class ReadOnlyFrom(Callback):
    """From the start of ``task`` on, the filesystem is read-only (see READ_ONLY)."""

    def __init__(self, task: str) -> None:
        self.task = task

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if pl_module.current_task == self.task:
            READ_ONLY["on"] = True
