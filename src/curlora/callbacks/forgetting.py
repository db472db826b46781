"""Scores every task's head at an evaluation point: one row of the forgetting matrix.

The module's ``validation_step`` returns the predictions of the head of the task whose
loader the batch came from (``trainer.datamodule.eval_streams[dataloader_idx]``: a task's
eval split, or its validation carve); this callback accumulates them per stream in
torchmetrics confusion matrices and, when the pass ends, exposes :attr:`result` (eval
split) and :attr:`validation` (validation carves): a typed ``TaskScore`` (accuracy,
top-class share, confusion counts, and each example's outcome by its row in the split, which
intervals over test examples resample; under ``head=words`` also the exact-match rate, when
``validation_step`` returns ``exact_match``) per task. The task loop files them under their
evaluation point. With several processes each scores its own share of every split and
torchmetrics sums the counts over processes in ``compute()``, so every process holds the
same result.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from curlora.run.record import TaskScore


class ForgettingMatrixCallback(Callback):
    def __init__(self) -> None:
        self._confusion: dict[tuple[str, str], MulticlassConfusionMatrix] = {}
        # Per stream, example row -> scored right; this process's share of the split.
        self._outcomes: dict[tuple[str, str], dict[int, bool]] = {}
        # head=words: per stream, example row -> whole-vocabulary argmax was the right word.
        self._exact: dict[tuple[str, str], dict[int, bool]] = {}
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
        self._outcomes = {stream: {} for stream in self._confusion}
        self._exact = {stream: {} for stream in self._confusion}

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
        right = (outputs["predictions"] == outputs["labels"]).tolist()
        self._outcomes[stream].update(zip(outputs["index"].tolist(), right, strict=True))
        if "exact_match" in outputs:
            exact = outputs["exact_match"].tolist()
            self._exact[stream].update(zip(outputs["index"].tolist(), exact, strict=True))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for (task, role), metric in self._confusion.items():
            # compute() sums the counts over processes: every process calls it for every
            # stream in the same order (one may have scored none of a small stream's
            # examples), and a stream nobody scored has an all-zero matrix.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*was called before the ``update``")
                confusion = metric.compute().tolist()  # [true, predicted]
            outcomes = _gathered(self._outcomes[(task, role)])
            exact = _gathered(self._exact[(task, role)]) if pl_module.head.answers_in_words else {}
            if sum(map(sum, confusion)):
                score = TaskScore.from_confusion(confusion, _as_string(outcomes))
                if exact:
                    score = dataclasses.replace(
                        score,
                        exact_match=sum(exact.values()) / len(exact),
                        exact_correct=_as_string(exact),
                    )
                (self.result if role == "eval" else self.validation)[task] = score
        self._confusion, self._outcomes, self._exact = {}, {}, {}


def _gathered(outcomes: dict[int, bool]) -> dict[int, bool]:
    """Every process's outcomes of one stream merged (each record is scored by exactly one
    process); called by every process for every stream in the same order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return outcomes
    shares: list[dict[int, bool] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(shares, outcomes)
    merged: dict[int, bool] = {}
    for share in shares:
        merged.update(share or {})
    return merged


def _as_string(outcomes: dict[int, bool]) -> str | None:
    """``"1"``/``"0"`` per row 0..n-1 of the split; None when rows are missing (a split
    whose indices are not 0..n-1 cannot be aligned across runs)."""
    if not outcomes or sorted(outcomes) != list(range(len(outcomes))):
        return None
    return "".join("1" if outcomes[row] else "0" for row in range(len(outcomes)))
