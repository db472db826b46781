"""Learning without Forgetting (Li & Hoiem 2016, arXiv 1606.09282), Hinton-style distillation.

At the start of task ``t`` (t > 0) the outputs of every previously trained task's head on
task ``t``'s training inputs are recorded with the model as it is then (eval mode, no grad):
``z_old^p[k]`` for past head ``p`` and training example ``k``, stored by the example's
``index``. Every training batch of task ``t`` then adds

    weight · Σ_p  T² · 1/B · Σ_b Σ_c q_old[b, c] · (log q_old[b, c] − log q_new[b, c])
    q_old = softmax(z_old^p[index_b] / T),   q_new = softmax(z_new^p[b] / T)

i.e. ``weight · Σ_p T² · KL(q_old || q_new)`` averaged over the batch, where ``z_new^p`` is
past head ``p`` applied to the current model's features of the batch. It is exactly zero
while the model equals its task-start copy and positive once past heads' outputs move.

Differences from the paper, deliberate and documented:
- KL instead of Li & Hoiem's cross-entropy ``−Σ q_old log q_new``: they differ by the
  entropy of ``q_old``, a constant in the parameters, so the gradients are identical and
  the reported loss is zero at the start copy.
- the ``T²`` factor (Hinton et al. 2015, arXiv 1503.02531, Sec. 2) keeps the gradient scale
  independent of ``T``; Li & Hoiem have no such factor, so their objective (λ_o = 1, T = 2)
  is ``weight = 1 / T² = 0.25`` here.
- no warm-up stage that trains the new head alone first (Li & Hoiem, Sec. 3).
As in the paper, past heads stay trainable and receive gradients from this term (θ_o in
Li & Hoiem is optimised jointly with the shared and new parameters).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curlora.strategies.base import (
    Batch,
    ContinualModel,
    Strategy,
    TaskData,
    batch_to,
    check_float,
    check_int,
    eval_mode,
    module_device,
    require_datamodule,
)


def distillation_loss(
    old_logits: torch.Tensor, new_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T² · mean_b KL(softmax(old_b/T) || softmax(new_b/T))``; inputs ``[B, C]``, 0-dim out.

    Exactly 0 when ``old_logits`` equals ``new_logits`` elementwise (the log-ratio is 0).
    """
    log_old = F.log_softmax(old_logits.float() / temperature, dim=-1)
    log_new = F.log_softmax(new_logits.float() / temperature, dim=-1)
    kl = (log_old.exp() * (log_old - log_new)).sum(dim=-1)  # [B]
    return temperature**2 * kl.mean()


class _HeadInput:
    """A forward pre-hook on a head that keeps its last input: the features ``[B, hidden]``."""

    def __init__(self, head: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self._handle = head.register_forward_pre_hook(self._keep)

    def _keep(self, head: nn.Module, args: tuple[Any, ...]) -> None:
        self.value = args[0]

    def remove(self) -> None:
        self._handle.remove()
        self.value = None


class LwF(Strategy):
    """Learning without Forgetting: distil past heads' task-start outputs on new inputs.

    Under each head (``curlora.models.heads``): ``linear``: the past tasks' linear heads'
    logits (the heads themselves train with this term, as in the paper); ``words``: the
    past tasks' label-word logits at the answer position (the frozen LM head's rows of
    their words), so the distillation keeps each past task's answer distribution over its
    own words; nothing but the adapter receives the gradient.

    Args:
        temperature: T > 0 of the softened softmax. Default 2.0, Li & Hoiem's value.
        weight: multiplier (≥ 0) of the summed distillation terms. Default 1.0, Li & Hoiem's
            λ_o = 1 (with the T² factor, see the module docstring: their exact objective is
            ``weight = 1 / T²``). 0 turns the term off (then LwF equals sequential).
        record_batch_size: batch size (≥ 1) of the no-grad pass that records past heads'
            outputs at task start. Default 8, the batch the project's CPU sizing assumes;
            it changes only speed and memory, not the targets beyond float round-off.
        reuse_features: True (default) evaluates past heads on the features the current
            head read in the same forward pass (one backbone pass per batch, as in the
            paper's multi-head network); the module contract says ``task_logits`` is
            "backbone + that head", so the features do not depend on the task. The reuse is
            checked each batch (current head on the kept features must reproduce the given
            logits bit for bit) and falls back to ``module.task_logits`` per past head when
            it does not. False always calls ``task_logits`` (one backbone pass per past head),
            for a module whose backbone depends on the task.
    """

    name = "lwf"

    def __init__(
        self,
        temperature: float = 2.0,
        weight: float = 1.0,
        record_batch_size: int = 8,
        reuse_features: bool = True,
    ) -> None:
        self.temperature = check_float("temperature", temperature, 0.0, low_open=True)
        self.weight = check_float("weight", weight, 0.0)
        self.record_batch_size = check_int("record_batch_size", record_batch_size, 1)
        if not isinstance(reuse_features, bool):
            raise ValueError(f"strategy.reuse_features={reuse_features!r}: expected true or false")
        self.reuse_features = reuse_features
        self._trained: list[str] = []  # tasks whose heads are trained, in order
        self._targets_task: str | None = None  # the task the recorded targets belong to
        self._index: torch.Tensor | None = None  # Long[N], sorted example indices
        self._old: dict[str, torch.Tensor] = {}  # past task -> Float32[N, C_past], rows as _index
        self._capture: _HeadInput | None = None

    # -- hooks -------------------------------------------------------------------------

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Record past heads' outputs on ``task``'s training inputs (once per task)."""
        require_datamodule(self.name, "on_task_start", datamodule)
        past = [t for t in self._trained if t != task]
        if self._targets_task != task:  # not restored from a checkpoint of this task
            self._record(module, task, datamodule, past)
        self._release()
        if past and self.reuse_features:
            self._capture = _HeadInput(module.heads[task])

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Mark ``task``'s head as trained; drop the targets, which served only this task."""
        self._release()
        if task not in self._trained:
            self._trained.append(task)
        self._targets_task, self._index, self._old = None, None, {}

    def extra_loss(
        self, module: ContinualModel, task: str, batch: Batch, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """The distillation term (module docstring); None on the first task or at weight 0."""
        features = None
        if self._capture is not None:
            features, self._capture.value = self._capture.value, None
        if not self._old or self.weight == 0.0:
            return None
        if self._targets_task != task:
            raise RuntimeError(
                f"LwF holds targets for task '{self._targets_task}' but is asked about "
                f"'{task}': the module must call on_task_start before training a task"
            )
        if self._index is not None and self._index.device != logits.device:
            # e.g. a checkpoint loaded onto the CPU while the module trains on a GPU
            self._index = self._index.to(logits.device)
            self._old = {p: z.to(logits.device) for p, z in self._old.items()}
        rows = self._rows(batch["index"])
        new = self._past_logits(module, batch, list(self._old), task, logits, features)
        total = sum(
            distillation_loss(self._old[p][rows], new[p], self.temperature) for p in self._old
        )
        if self._capture is not None:
            self._capture.value = None  # the check above re-ran the hooked head
        return self.weight * total

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "trained": list(self._trained),
            "targets_task": self._targets_task,
            "index": self._index,
            "old_logits": dict(self._old),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._trained = list(state["trained"])
        self._targets_task = state["targets_task"]
        self._index = state["index"]
        self._old = dict(state["old_logits"])

    # -- internals -----------------------------------------------------------------------

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    def _past_logits(
        self,
        module: ContinualModel,
        batch: Batch,
        past: list[str],
        task: str,
        logits: torch.Tensor,
        features: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Past heads' logits ``{p: [B, C_p]}`` for the batch whose ``task`` logits are given."""
        if self.reuse_features and features is not None and features.shape[0] == logits.shape[0]:
            with torch.no_grad():
                same = torch.equal(module.heads[task](features), logits)
            if same:
                return {p: module.heads[p](features) for p in past}
        return {p: module.task_logits(batch, p) for p in past}

    def _record(
        self, module: ContinualModel, task: str, datamodule: TaskData, past: list[str]
    ) -> None:
        """Fill ``_index`` / ``_old`` with past heads' outputs on ``task``'s training inputs."""
        self._targets_task, self._index, self._old = task, None, {}
        if not past:
            return
        examples = datamodule.train_examples(task)
        device = module_device(module)
        index_parts: list[torch.Tensor] = []
        parts: dict[str, list[torch.Tensor]] = {p: [] for p in past}
        capture = _HeadInput(module.heads[past[0]])
        try:
            with torch.no_grad(), eval_mode(module):
                for start in range(0, len(examples), self.record_batch_size):
                    chunk = examples[start : start + self.record_batch_size]
                    batch = batch_to(datamodule.collate(chunk), device)
                    capture.value = None  # never match a previous chunk's features
                    first = module.task_logits(batch, past[0])
                    rest = self._past_logits(module, batch, past[1:], past[0], first, capture.value)
                    index_parts.append(batch["index"].to(device))
                    for p, z in {past[0]: first, **rest}.items():
                        parts[p].append(z.float())
        finally:
            capture.remove()
        index = torch.cat(index_parts)
        index, order = torch.sort(index)
        if bool((index[1:] == index[:-1]).any()):
            raise ValueError(f"task '{task}': duplicate 'index' values among training examples")
        self._index = index
        self._old = {p: torch.cat(parts[p])[order] for p in past}

    def _rows(self, index: torch.Tensor) -> torch.Tensor:
        """Row of each batch example in the recorded targets; KeyError for unknown indices."""
        assert self._index is not None
        wanted = index.to(self._index.device)
        rows = torch.searchsorted(self._index, wanted).clamp(max=self._index.numel() - 1)
        missing = self._index[rows] != wanted
        if bool(missing.any()):
            raise KeyError(
                f"LwF has no recorded outputs for training index(es) "
                f"{wanted[missing].tolist()[:10]} of task '{self._targets_task}'"
            )
        return rows
