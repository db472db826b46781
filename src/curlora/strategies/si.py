"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017, arXiv 1703.04200), from each step.

While task ``μ`` trains, every optimizer step ``t`` adds to a running path integral

    ω_k  −=  g_k(t) · Δθ_k(t)                                  (paper Eq. 3, discretised)

where ``Δθ_k(t)`` is the step's parameter change and ``g_k(t)`` the gradient of the training
loss *without* SI's own penalty (the authors' code, ganguli-lab/pathint, accumulates
``−unreg_grads · deltas``). The module's ``.grad`` is that of the whole loss, so SI takes
out the exact gradient of its own penalty, ``2c · Ω_k · (θ_k − θ̃_k)`` at the parameters
before the step; anything else in the loss (a method's penalty, replayed batches) stays
in ``g``. After the task (paper Eq. 5, with the authors' code's ReLU):

    Ω_k  ←  max(0, Ω_k + ω_k / (Δ_k² + ξ)),   Δ_k = θ_k(end of μ) − θ_k(start of μ)
    θ̃_k  ←  θ_k(end of μ),   ω_k ← 0

and every training batch of later tasks adds the surrogate loss (paper Eq. 4)

    c · Σ_k Ω_k · (θ_k − θ̃_k)²

Which parameters: the trainable ones except task heads (as EWC: a past head gets no gradient
from later tasks, so a penalty would only hand it to the optimizer). A parameter that stops
training (O-LoRA's finished adapters) cannot move any more; its term is left out.

Exact resume: ω and θ(start of μ) are part of the state, and ``on_task_start`` of a task
already started keeps them, so a run stopped mid-task and resumed from its step checkpoint
computes the uninterrupted run's Ω bit for bit. The state is read without side effects:
every step is folded into ω in ``on_optimizer_step``, before any checkpoint is written.

Exact for the gradient of the unclipped loss: with ``trainer.gradient_clip_val`` set, the
clipped ``.grad`` makes ``g`` approximate. The penalty and ω are kept in float32.
"""

from __future__ import annotations

from typing import Any

import torch

from curlora.strategies.base import (
    Batch,
    ContinualModel,
    OptimizerStep,
    Strategy,
    TaskData,
    check_float,
    head_param_ids,
)
from curlora.strategies.importance import quadratic_penalty

Tensors = dict[str, torch.Tensor]


def detached(named: list[tuple[str, torch.nn.Parameter]]) -> Tensors:
    """Float32 copies of the parameters' values, by name."""
    return {n: p.detach().float().clone() for n, p in named}


class SynapticIntelligence(Strategy):
    """Synaptic Intelligence: importance from each parameter's share of the loss decrease.

    The loss is the training loss the module optimises: cross-entropy of the linear head
    under ``head=linear``, the answer tokens' causal-LM cross-entropy under ``head=words``
    (the path integral reads the gradients of whichever it is).

    Args:
        c: the surrogate loss's strength c ≥ 0 (the paper's c; ``lam`` in the authors'
            code). Default 1.0, not tuned here: sweep it (orders of magnitude).
        xi: the damping ξ > 0 in ω / (Δ² + ξ), which bounds Ω where a parameter barely
            moved. Default 0.1, the authors' value for permuted MNIST (their stored results
            are named ``xi=0.1``; split CIFAR used 0.001); not tuned here.
    """

    name = "si"

    def __init__(self, c: float = 1.0, xi: float = 0.1) -> None:
        self.c = check_float("c", c, 0.0)
        self.xi = check_float("xi", xi, 0.0, low_open=True)
        # Parameter name -> Float32 tensor of the parameter's shape.
        self._omega_total: Tensors = {}  # Ω, consolidated over finished tasks
        self._anchor: Tensors = {}  # θ̃, the parameters at the end of the last finished task
        self._path: Tensors = {}  # ω of the task in progress
        self._start: Tensors = {}  # θ at the start of the task in progress
        self._current: str | None = None  # the task in progress (None between tasks)
        self._tasks: list[str] = []  # tasks consolidated so far, in order

    def tracked_parameters(self, module: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """The trainable parameters SI measures and penalises: all but the task heads."""
        heads = head_param_ids(module)
        return [(n, p) for n, p in module.trainable_named_parameters() if id(p) not in heads]

    # ------------------------------------------------------------------ task boundaries
    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Start ω at 0 and remember θ(start); a resumed task keeps its restored ω."""
        if task == self._current or task in self._tasks:
            return  # resumed inside this task (or after it): the state is the checkpoint's
        named = self.tracked_parameters(module)
        self._current = task
        self._start = detached(named)
        self._path = {n: torch.zeros_like(t) for n, t in self._start.items()}

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Fold ω into Ω (Eq. 5) and move θ̃ to the parameters now (once per task)."""
        if task in self._tasks:
            return  # already consolidated (a resumed run repeating the hook)
        end = detached(self.tracked_parameters(module))
        for name, path in self._path.items():
            if name not in end:
                continue  # stopped training during the task: nothing measured for it
            moved = end[name] - self._start[name]  # Δ_k over the whole task
            old = self._omega_total.get(name, torch.zeros_like(path))
            self._omega_total[name] = (old + path / (moved.pow(2) + self.xi)).clamp_min(0.0)
        self._anchor.update(end)
        self._tasks.append(task)
        self._current, self._path, self._start = None, {}, {}

    # ------------------------------------------------------------------ every step
    def on_optimizer_step(self, module: ContinualModel, task: str, step: OptimizerStep) -> None:
        """ω_k −= g_k · Δθ_k with g the gradient less SI's own penalty's (see the docstring)."""
        if task != self._current:
            return  # on_task_start did not run for this task: nothing to accumulate into
        params = dict(step.parameters)
        for name, path in self._path.items():
            p = params.get(name)
            if p is None or p.grad is None:
                continue  # not reached by the loss this step: g = 0
            before = step.before[name].float()
            grad = p.grad.detach().float()
            if name in self._omega_total:  # the penalty's gradient, at θ before the step
                penalty_grad = (
                    2.0 * self.c * self._omega_total[name] * (before - self._anchor[name])
                )
                grad = grad - penalty_grad.to(grad.device)
            moved = p.detach().float() - before
            path.sub_((grad * moved).to(path.device))

    # ------------------------------------------------------------------ the penalty
    def extra_loss(
        self, module: ContinualModel, task: str, batch: Batch, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """c · Σ_k Ω_k (θ_k − θ̃_k)² as a 0-dim float32 tensor; None before any task ended."""
        if not self._omega_total or self.c == 0.0:
            return None
        params = dict(self.tracked_parameters(module))
        total = quadratic_penalty(params, self._omega_total, self._anchor)
        return None if total is None else self.c * total

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self._tasks),
            "current": self._current,
            "omega": dict(self._omega_total),
            "anchor": dict(self._anchor),
            "path": {n: t.clone() for n, t in self._path.items()},  # ω changes in place
            "start": dict(self._start),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._tasks = list(state["tasks"])
        self._current = state["current"]
        self._omega_total = dict(state["omega"])
        self._anchor = dict(state["anchor"])
        self._path = dict(state["path"])
        self._start = dict(state["start"])

    def importance(self) -> Tensors:
        """Ω by parameter name (read-only copies), for tests and analysis."""
        return {n: t.clone() for n, t in self._omega_total.items()}
