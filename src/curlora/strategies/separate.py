"""Separate adapters, the no-forgetting reference point of a continual-learning sequence.

Every task trains a fresh adapter (the method's initial state: CURLoRA's U = 0, LoRA's
B = 0 and the same A, ...) with its own head, and is evaluated with its own adapter swapped
in: nothing learned later can overwrite it, so earlier tasks' accuracies stay exactly where
they were (BWT = 0 by construction) and nothing learned earlier helps a later task (no
transfer). A task not trained yet is scored with the fresh adapter. The perplexity after
task i is that of the model as it stands: the base with task i's adapter. The gap between
a method under ``separate`` and under ``sequential`` is what sharing one adapter costs in
forgetting and gains in transfer. The trained adapter saved at the end of a run is the
last task's; every task's adapter is in this strategy's state in the task checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch

from curlora.adapters import adapter_state_dict, load_adapter_state_dict
from curlora.strategies.base import ContinualModel, Strategy, TaskData

State = dict[str, torch.Tensor]


class FreshAdapterPerTask:
    """A mixin for strategies (listed before ``Strategy``): every task starts from a fresh
    adapter (the method's initial state, copied before any training) and its trained
    adapter is kept at the task's end; ``separate`` swaps each in for its own task,
    ``merge`` merges them. Resuming inside a task keeps its live adapter. ``keep_on_cpu``:
    store the copies on the CPU (merging reads them there)."""

    keep_on_cpu = False

    def __init__(self) -> None:
        self.initial: State | None = None  # the adapter before any training
        self.adapters: dict[str, State] = {}  # task -> its adapter at the end of its task
        self.training: str | None = None  # the task whose own adapter is live (being trained)

    def copy_adapter(self, module: ContinualModel) -> State:
        state = adapter_state_dict(module.backbone).items()
        if self.keep_on_cpu:
            return {k: v.detach().cpu().clone() for k, v in state}
        return {k: v.detach().clone() for k, v in state}

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        if self.initial is None:
            self.initial = self.copy_adapter(module)
        if task == self.training:
            return  # resumed inside this task: the restored adapter is its adapter so far
        load_adapter_state_dict(module.backbone, self.initial)
        self.training = task

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "adapters": self.adapters, "training": self.training}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initial = state.get("initial")
        self.adapters = dict(state.get("adapters", {}))
        self.training = state.get("training")


class Separate(FreshAdapterPerTask, Strategy):
    """A fresh adapter per task, swapped in for that task's own evaluation.

    It never reads a head: under ``head=linear`` each task also has its own linear head;
    under ``head=words`` every task answers through the shared frozen LM head, with its own
    adapter swapped in.
    """

    name = "separate"

    def __init__(self) -> None:
        super().__init__()
        self._live: State | None = None  # the live adapter while others are swapped in

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        self.adapters[task] = self.copy_adapter(module)

    def on_evaluate_task(self, module: ContinualModel, task: str) -> None:
        if self.initial is None:
            return  # the evaluation before training: every task sees the initial adapter
        if self._live is None:
            self._live = self.copy_adapter(module)
        own = self.adapters.get(task, self._live if task == self.training else self.initial)
        load_adapter_state_dict(module.backbone, own)

    def on_evaluation_end(self, module: ContinualModel) -> None:
        if self._live is not None:
            load_adapter_state_dict(module.backbone, self._live)
            self._live = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._live = None
