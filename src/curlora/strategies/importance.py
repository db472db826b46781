"""What the importance-weighted strategies share: per-example gradient statistics of a
task's head (the core of EWC's Fisher and MAS's Ω) and the quadratic penalty
Σ_k w_k (θ_k − θ*_k)² that EWC, MAS and SI add to the loss.

Both draw ``min(n_samples, len(examples))`` training examples without replacement with a
seeded generator (all when ``n_samples`` is None), score each one alone by the task's head
(logits ``[1, C]``, a batch of 1: a statistic of per-example gradients is not one of the
batch gradient), take ``torch.autograd.grad`` of a per-example scalar and accumulate a
function of the gradient in float32. They differ only in that scalar (EWC: the negative
log-likelihood of a label; MAS: the squared norm of the logits) and that function
(square; absolute value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from curlora.strategies.base import ContinualModel, batch_to, eval_mode, module_device

Tensors = dict[str, torch.Tensor]


def mean_per_example_gradient(
    module: ContinualModel,
    task: str,
    examples: Sequence[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    named_params: Sequence[tuple[str, torch.nn.Parameter]],
    n_samples: int | None,
    generator: torch.Generator,
    scalar: Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor],
) -> Tensors:
    """1/N Σ_n transform(∂ scalar(logits_n, batch_n) / ∂θ) of ``named_params``:
    {name: Float32[param shape]}. ``scalar`` gets the float32 logits ``[1, C]`` and the
    one-example batch. Parameters the scalar does not reach get exact zeros. Runs in eval
    mode (no dropout, no draw from the global RNG), even inside an inference-mode or
    no_grad context, and never writes ``.grad``."""
    params = [p for _, p in named_params]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    order = torch.randperm(len(examples), generator=generator)
    if n_samples is not None:
        order = order[:n_samples]
    device = module_device(module)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(module):
        for row in order.tolist():
            batch = batch_to(collate([examples[row]]), device)
            value = scalar(module.task_logits(batch, task).float(), batch)
            if not params or not value.requires_grad:
                continue  # no trainable parameter reaches it: all zeros
            grads = torch.autograd.grad(value, params, allow_unused=True)
            for acc, g in zip(sums, grads, strict=True):
                if g is not None:
                    acc += transform(g.detach().float())
    n = max(len(order), 1)
    return {name: acc / n for (name, _), acc in zip(named_params, sums, strict=True)}


def quadratic_penalty(
    params: Mapping[str, torch.nn.Parameter],
    weights: Tensors,
    anchors: Tensors,
    total: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """``total`` + Σ_k w_k (θ_k − θ*_k)² over the names of ``weights`` found in ``params``
    (a weighted parameter that no longer trains cannot move: its term is a constant and is
    left out), as a 0-dim float32 tensor; None when there is no term at all. Weights and
    anchors are moved to their parameter's device in place, once (a state loaded on the
    CPU, a module on a GPU)."""
    for name, weight in weights.items():
        p = params.get(name)
        if p is None:
            continue
        if weight.device != p.device:
            weight = weights[name] = weight.to(p.device)
            anchors[name] = anchors[name].to(p.device)
        term = (weight * (p.float() - anchors[name]).pow(2)).sum()
        total = term if total is None else total + term
    return total
