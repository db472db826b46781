"""Scores the adapted model on the general-ability retention suite at every evaluation point.

lm-evaluation-harness wraps the module's in-memory backbone (the adapter layers inside it
with their current weights; nothing is reloaded or written) and scores the first ``limit``
rows of each task (``curlora.retention.suite.evaluate``). The tasks are loaded once, by
:meth:`prepare` (the loop calls it before training, so a suite that cannot load stops the run
before any work). After each validation pass :attr:`result` holds the scores by task.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from curlora.retention.settings import RetentionSettings
from curlora.run.record import RetentionScore

log = logging.getLogger("curlora")


class RetentionCallback(Callback):
    def __init__(
        self, settings: RetentionSettings, cache_dir: str | os.PathLike[str] | None
    ) -> None:
        self.settings = settings
        self.cache_dir = cache_dir
        self.tasks: dict[str, Any] | None = None
        self.result: dict[str, RetentionScore] = {}

    def prepare(self) -> None:
        """Load lm-eval's task objects (building the offline data files on first use)."""
        from curlora.retention.suite import load_tasks

        if self.tasks is None:
            s = self.settings
            self.tasks = load_tasks(s.offline, s.standard, self.cache_dir)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            # Every process holds the same model: the first scores it, the others receive
            # its numbers (as for the perplexity), so a DDP run records a one-process result.
            measured = self._measure(trainer, pl_module) if trainer.is_global_zero else None
            self.result = trainer.strategy.broadcast(measured, src=0)
        else:
            self.result = self._measure(trainer, pl_module)

    def _measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, RetentionScore]:
        from curlora.retention.suite import evaluate

        self.prepare()
        assert self.tasks is not None
        start = time.perf_counter()
        scores = evaluate(
            pl_module.backbone,
            trainer.datamodule.tokenizer,
            self.tasks,
            self.settings.limit,
            self.settings.batch_size,
        )
        log.info(
            "retention (%s, %d rows each): %s (%.1f s)",
            self.settings.suite,
            self.settings.limit,
            ", ".join(f"{t}={s.acc:.3f}" for t, s in scores.items()),
            time.perf_counter() - start,
        )
        return {t: RetentionScore(s.acc, s.acc_norm, s.n, s.correct) for t, s in scores.items()}
