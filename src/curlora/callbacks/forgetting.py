"""Fills the accuracy (forgetting) matrix after every evaluation and logs it.

Thin by design: the module computes per-task accuracies in ``on_validation_epoch_end``;
this callback files them under the evaluation point the task loop set
(``pl_module.eval_point``: -1 = before any training, i = after training task i) and logs
``eval/<task>/acc`` and ``eval/<task>/top_class_share``. Metrics over the matrix are pure
functions in ``curlora.metrics.continual``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class ForgettingMatrixCallback(Callback):
    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.matrix: list[list[float | None]] = []
        self.initial: list[float | None] = []
        # Share of the most-predicted class, same layout as ``matrix`` (degenerate-head guard).
        self.top_class_share: list[list[float | None]] = []
        self.initial_top_class_share: list[float | None] = []

    def reset(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)
        n = len(tasks)
        self.matrix = [[None] * n for _ in range(n)]
        self.initial = [None] * n
        self.initial_top_class_share = [None] * n
        self.top_class_share = [[None] * n for _ in range(n)]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        point = int(getattr(pl_module, "eval_point", -1))
        results: dict[str, dict[str, Any]] = pl_module.eval_results
        metrics: dict[str, float] = {}
        for j, task in enumerate(self.tasks):
            if task not in results:
                continue
            acc, share = results[task]["acc"], results[task]["top_class_share"]
            if point < 0:
                self.initial[j], self.initial_top_class_share[j] = acc, share
            else:
                self.matrix[point][j] = acc
                self.top_class_share[point][j] = share
            metrics[f"eval/{task}/acc"] = acc
            metrics[f"eval/{task}/top_class_share"] = share
        metrics["tasks_trained"] = point + 1
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=point + 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "matrix": self.matrix,
            "initial": self.initial,
            "top_class_share": self.top_class_share,
            "initial_top_class_share": self.initial_top_class_share,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)
