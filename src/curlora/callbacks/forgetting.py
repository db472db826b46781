"""Scores every task's head at an evaluation point: one row of the forgetting matrix.

The module's ``validation_step`` returns the predictions of the head of the task whose
eval loader the batch came from (``trainer.datamodule.tasks[dataloader_idx]``); this
callback accumulates them per task in torchmetrics confusion matrices and, when the
validation pass ends, exposes :attr:`result`: a typed ``TaskScore`` (accuracy, top-class
share, confusion counts) per task. The task loop files the result under its evaluation
point. torchmetrics reduces the counts across processes in a multi-device run, so every
rank holds the same result.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from curlora.run_record import TaskScore


class ForgettingMatrixCallback(Callback):
    def __init__(self) -> None:
        self._confusion: dict[str, MulticlassConfusionMatrix] = {}
        self.result: dict[str, TaskScore] = {}
        """Per task, the scores of the last completed validation pass."""

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result = {}
        self._confusion = {
            task: MulticlassConfusionMatrix(num_classes=pl_module.heads[task].out_features).to(
                pl_module.device
            )
            for task in trainer.datamodule.tasks
        }

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        task = trainer.datamodule.tasks[dataloader_idx]
        self._confusion[task].update(outputs["predictions"], outputs["labels"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result = {
            task: TaskScore.from_confusion(metric.compute().tolist())  # [true, predicted]
            for task, metric in self._confusion.items()
            if metric.update_called
        }
        self._confusion = {}
