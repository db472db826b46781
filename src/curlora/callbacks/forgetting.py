"""Scores every task's head at an evaluation point: one row of the forgetting matrix.

The module's ``validation_step`` returns the predictions of the head of the task whose
loader the batch came from (``trainer.datamodule.eval_streams[dataloader_idx]``: a task's
eval split, or its validation carve); this callback accumulates them per stream in
torchmetrics confusion matrices and, when the pass ends, exposes :attr:`result` (eval
split) and :attr:`validation` (validation carves): a typed ``TaskScore`` (accuracy,
top-class share, confusion counts) per task. The task loop files them under their
evaluation point. With several processes each scores its own share of every split and
torchmetrics sums the counts over processes in ``compute()``, so every process holds the
same result.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from curlora.run_record import TaskScore


class ForgettingMatrixCallback(Callback):
    def __init__(self) -> None:
        self._confusion: dict[tuple[str, str], MulticlassConfusionMatrix] = {}
        self.result: dict[str, TaskScore] = {}
        """Per task, the eval-split scores of the last completed validation pass."""
        self.validation: dict[str, TaskScore] = {}
        """Per task with a validation carve, its scores in the same pass."""

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result, self.validation = {}, {}
        self._confusion = {
            (task, role): MulticlassConfusionMatrix(
                num_classes=pl_module.heads[task].out_features
            ).to(pl_module.device)
            for task, role in trainer.datamodule.eval_streams
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
        stream = trainer.datamodule.eval_streams[dataloader_idx]
        self._confusion[stream].update(outputs["predictions"], outputs["labels"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for (task, role), metric in self._confusion.items():
            # compute() sums the counts over processes: every process calls it for every
            # stream in the same order (one may have scored none of a small stream's
            # examples), and a stream nobody scored has an all-zero matrix.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*was called before the ``update``")
                confusion = metric.compute().tolist()  # [true, predicted]
            if sum(map(sum, confusion)):
                score = TaskScore.from_confusion(confusion)
                (self.result if role == "eval" else self.validation)[task] = score
        self._confusion = {}
