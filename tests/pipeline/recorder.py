"""A strategy that writes every hook call to a file, for the tests of the hook order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from curlora.strategies.base import Batch, ContinualModel, OptimizerStep, Strategy


class HookRecorder(Strategy):
    """Appends ``[hook, task, global step]`` per call to ``log`` (JSON lines); checks in
    ``on_optimizer_step`` that the step is what the optimizer (plain SGD) did."""

    name = "recorder"

    def __init__(self, log: str) -> None:
        self.log = Path(log)
        self.seen: dict[str, torch.Tensor] = {}  # parameters as extra_loss saw them

    def _write(self, hook: str, task: str | None = None, step: int | None = None) -> None:
        with self.log.open("a") as f:
            f.write(json.dumps([hook, task, step]) + "\n")

    def on_task_start(self, module: ContinualModel, task: str, datamodule: Any) -> None:
        self._write("on_task_start", task)

    def extra_batches(self, module: ContinualModel, task: str, batch: Batch) -> list:
        self._write("extra_batches", task)
        return []

    def extra_loss(self, module: ContinualModel, task: str, batch: Batch, logits: Any) -> None:
        self._write("extra_loss", task)
        self.seen = {n: p.detach().clone() for n, p in module.trainable_named_parameters()}

    def on_optimizer_step(self, module: ContinualModel, task: str, step: OptimizerStep) -> None:
        self._write("on_optimizer_step", task, step.global_step)
        lrs = {
            id(p): group["lr"]
            for group in module.trainer.optimizers[0].param_groups
            for p in group["params"]
        }
        stepped = 0
        for name, p in step.parameters:
            before = step.before[name]
            # 'before' is what the forward pass of this step used.
            assert torch.equal(before, self.seen[name]), name
            if p.grad is None:
                assert torch.equal(p.detach(), before), name  # no gradient: did not move
                continue
            # SGD without momentum or decay: θ_after = θ_before − lr · grad, bit for bit,
            # so .grad is the gradient this step used.
            assert torch.equal(p.detach(), before.add(p.grad, alpha=-lrs[id(p)])), name
            torch.testing.assert_close(step.delta(name), (p.detach() - before).float())
            stepped += 1
        assert stepped > 0

    def on_task_end(self, module: ContinualModel, task: str, datamodule: Any) -> None:
        self._write("on_task_end", task)

    def on_evaluate_task(self, module: ContinualModel, task: str) -> None:
        self._write("on_evaluate_task", task)

    def on_evaluation_end(self, module: ContinualModel) -> None:
        self._write("on_evaluation_end")

    def on_save_checkpoint(self, module: ContinualModel) -> dict[str, Any]:
        # A step checkpoint is written while the task trains; the task checkpoint after it.
        trainer = module._trainer
        training = trainer is not None and trainer.training
        self._write("on_save_checkpoint", None, trainer.global_step if training else None)
        return {}

    def on_load_checkpoint(self, module: ContinualModel, state: dict[str, Any]) -> None:
        self._write("on_load_checkpoint")
