"""I-LoRA (Ren et al. 2024, "Analyzing and Reducing Catastrophic Forgetting in Parameter
Efficient Tuning", https://arxiv.org/abs/2402.18865): a fast and a slow learner of the same
adapter, the slow one an exponential moving average of the fast one, tied by a consistency
loss on replayed examples.

The fast learner θ_w is the live adapter: it trains on the current task's batches plus
replayed batches of earlier tasks (this framework's experience replay, :class:`Replay`:
one reservoir per past task, each replayed batch scored by its own head). After every
optimizer step the slow learner θ_s follows it (the paper's interpolation of the two learners):

    θ_s ← λ · θ_s + (1 − λ) · θ_w                                      (λ = ``ema_decay``)

and every training batch adds the consistency loss on the replayed examples x_b
(the paper's consistency term, a mean squared error between the two learners' hidden states)

    γ · mean_past tasks  MSE( h(x_b; θ_w), stopgrad h(x_b; θ_s) )       (γ = ``consistency_weight``)

with h the features the heads read (the final hidden state of the last token, [B, H]).
The slow learner's pass uses ``torch.func.functional_call`` with θ_s in place of the
adapter's parameters: the live tensors are not touched, so the fast pass's graph stays
valid. θ covers the backbone's trainable parameters (the adapter); the task heads are
shared by both learners. Evaluation uses the slow learner: at the end of every task θ_s is
loaded into the model (so the evaluation, the perplexity, the task checkpoint and the
saved adapter are the slow learner's) and θ_w is put back when the next task starts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curlora import checks
from curlora.strategies.base import (
    Batch,
    ContinualModel,
    OptimizerStep,
    TaskData,
    check_float,
    head_param_ids,
)
from curlora.strategies.replay import Replay

Tensors = dict[str, torch.Tensor]


class _Features(nn.Module):
    """``functional_call`` calls a module's ``forward``: this one's is ``model.features``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.features(batch)  # [B, H]


def ema_update(slow: Tensors, fast: Tensors, decay: float) -> None:
    """θ_s ← decay · θ_s + (1 − decay) · θ_w, in place, for every name in ``fast``
    (a name seen for the first time starts the average at θ_w)."""
    for name, value in fast.items():
        value = value.detach()
        if name not in slow:
            slow[name] = value.clone()
        else:
            slow[name].mul_(decay).add_(value.to(slow[name].dtype), alpha=1.0 - decay)


def consistency_loss(fast: list[torch.Tensor], slow: list[torch.Tensor]) -> torch.Tensor:
    """Mean over replayed batches of MSE(h_fast, h_slow), each [B, H]; ``slow`` detached."""
    terms = [F.mse_loss(f, s.detach()) for f, s in zip(fast, slow, strict=True)]
    return torch.stack(terms).mean()


class ILoRA(Replay):
    """I-LoRA: replay + an EMA slow learner + a consistency loss; evaluated with the slow one.

    Under each head: the replayed batches add their task's loss (``linear``: the head's
    cross-entropy; ``words``: the answer tokens' causal-LM loss), and the consistency loss
    compares ``module.features``, the hidden state where the head reads (``linear``: the last
    text token; ``words``: the answer position).

    Args:
        buffer_size, replay_batch_size, seed: as :class:`Replay` (the replayed examples).
        ema_decay: λ ∈ [0, 1) in θ_s ← λ θ_s + (1 − λ) θ_w after every optimizer step.
            0.99 is a round value, not tuned here.
        consistency_weight: γ ≥ 0, the weight of the hidden-state MSE on replayed
            examples (0: replay with an EMA model). 1.0 is a round value, not tuned here.
    """

    name = "i_lora"

    def __init__(
        self,
        buffer_size: int = 100,
        replay_batch_size: int | None = None,
        seed: int = 0,
        ema_decay: float = 0.99,
        consistency_weight: float = 1.0,
    ) -> None:
        super().__init__(buffer_size, replay_batch_size, seed)
        self.ema_decay = float(
            checks.check_real("strategy.ema_decay", ema_decay, 0.0, 1.0, high_open=True)
        )
        self.consistency_weight = check_float("consistency_weight", consistency_weight, 0.0)
        self._slow: Tensors = {}  # θ_s by the module's parameter name
        self._parked: Tensors = {}  # θ_w while θ_s is loaded between tasks
        self._ended: list[str] = []  # tasks whose end was handled
        self._replayed: list[tuple[str, Batch]] = []  # this step's replayed batches

    def adapter_parameters(self, module: ContinualModel) -> list[tuple[str, nn.Parameter]]:
        """The trainable parameters both learners hold: all but the task heads."""
        heads = head_param_ids(module)
        return [(n, p) for n, p in module.trainable_named_parameters() if id(p) not in heads]

    @staticmethod
    def _load(module: ContinualModel, values: Tensors) -> None:
        with torch.no_grad():
            for name, p in module.trainable_named_parameters():
                if name in values:
                    p.copy_(values[name])

    # ------------------------------------------------------------------ task boundaries
    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        super().on_task_start(module, task, datamodule)
        if self._parked:  # θ_s was loaded for the evaluation: the fast learner goes on
            self._load(module, self._parked)
            self._parked = {}
        for name, p in self.adapter_parameters(module):  # θ_s starts where θ_w starts
            self._slow.setdefault(name, p.detach().clone())

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        super().on_task_end(module, task, datamodule)
        if task in self._ended:
            return  # a resumed run repeating the hook: θ_s is already loaded
        self._ended.append(task)
        self._parked = {n: p.detach().clone() for n, p in self.adapter_parameters(module)}
        self._load(module, self._slow)

    # ------------------------------------------------------------------ every step
    def extra_batches(self, module: ContinualModel, task: str, batch: Batch) -> list:
        self._replayed = super().extra_batches(module, task, batch)
        return self._replayed

    def extra_loss(
        self, module: ContinualModel, task: str, batch: Batch, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """γ · mean MSE(h(x_b; θ_w), h(x_b; θ_s)) over this step's replayed batches."""
        replayed, self._replayed = self._replayed, []
        if not replayed or self.consistency_weight == 0.0:
            return None
        wrapper = _Features(module)  # parameter names gain the prefix "model."
        slow = {f"model.{n}": t for n, t in self._slow.items()}
        fast_h, slow_h = [], []
        for _, past in replayed:
            fast_h.append(module.features(past))  # with gradients, through θ_w
            with torch.no_grad():
                slow_h.append(torch.func.functional_call(wrapper, slow, (past,)))
        return self.consistency_weight * consistency_loss(fast_h, slow_h)

    def on_optimizer_step(self, module: ContinualModel, task: str, step: OptimizerStep) -> None:
        """θ_s ← λ θ_s + (1 − λ) θ_w after the step."""
        ema_update(self._slow, dict(self.adapter_parameters(module)), self.ema_decay)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "slow": {n: t.clone() for n, t in self._slow.items()},  # θ_s changes in place
            "parked": dict(self._parked),
            "ended": list(self._ended),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._slow = {n: t.clone() for n, t in state["slow"].items()}
        self._parked = dict(state["parked"])
        self._ended = list(state["ended"])
