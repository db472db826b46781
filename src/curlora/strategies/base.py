"""The strategy extension point: how tasks are combined over time.

A strategy is a small object with hooks that ``ContinualLitModule`` calls in exactly one
place each (see ``curlora.models.module``):

- ``on_task_start(module, task, datamodule)``: before task ``task`` trains (after the
  module switched its current task). E.g. LwF records the previous heads' outputs.
- ``extra_loss(module, task, batch, logits)``: a scalar added to the task loss for every
  training batch, or None. E.g. the EWC penalty, the LwF distillation term.
- ``extra_batches(module, task, batch)``: ``[(past_task, batch), ...]`` scored by that past
  task's own head with cross-entropy and added to the loss. E.g. experience replay.
- ``on_task_end(module, task, datamodule)``: after task ``task`` trained, before evaluation.
  E.g. EWC's Fisher estimate, filling the replay buffer.
- ``state_dict()`` / ``load_state_dict(state)``: everything needed to resume a run
  bit-exactly (tensors and plain Python values only; saved with the checkpoints).

What a strategy may use:
- ``module.heads``: ``nn.ModuleDict`` task name -> ``Linear(hidden, num_classes)``.
- ``module.task_logits(batch, task) -> Tensor[B, num_classes]`` (backbone + that head).
- ``module.trainable_named_parameters() -> list[(name, Parameter)]``: the parameters that
  train (adapter + heads), the ones the optimizer receives.
- ``datamodule.train_examples(task) -> list[dict]``: the task's tokenised training examples.
- ``datamodule.collate(examples) -> batch``; ``datamodule.train_dataloader_for(task)``.
- a batch is ``{"input_ids": Long[B, T], "attention_mask": Long[B, T], "labels": Long[B],
  "index": Long[B]}`` (``index``: row number in the task's training split).
"""

from __future__ import annotations

from typing import Any

import torch


class Strategy:
    """Plain sequential fine-tuning: every hook does nothing. Subclass and override."""

    name: str = "sequential"

    def on_task_start(self, module: Any, task: str, datamodule: Any) -> None:
        """Called before ``task`` trains."""

    def extra_loss(
        self, module: Any, task: str, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> torch.Tensor | None:
        """A scalar added to the loss of each training batch, or None."""
        return None

    def extra_batches(
        self, module: Any, task: str, batch: dict[str, torch.Tensor]
    ) -> list[tuple[str, dict[str, torch.Tensor]]]:
        """Batches of past tasks to score with their own heads and add to the loss."""
        return []

    def on_task_end(self, module: Any, task: str, datamodule: Any) -> None:
        """Called after ``task`` trained, before it is evaluated."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
