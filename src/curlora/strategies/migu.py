"""MIGU (Du et al., EMNLP 2024 Findings, "Unlocking Continual Learning Abilities in Language
Models", https://arxiv.org/abs/2406.17245): update only the rows of each linear layer whose
outputs are largest on the current batch.

For a linear layer y = x Wᵀ + b (W: out × in) and a training batch, MIGU reads the
L1-normalised magnitude of each output dimension i over the batch's tokens

    m_i = Σ_{b,t} |y_{b,t,i}|  /  Σ_j Σ_{b,t} |y_{b,t,j}|

and keeps the gradient of row i of W (and of b_i) only when m_i is among the top
⌈ρ · out⌉ of the layer's m (the paper's threshold ratio); the other rows' gradients are
set to 0 before the optimizer steps:

    ∇W_i ← M_i · ∇W_i,   M_i = 1[m_i ∈ top-⌈ρ·out⌉(m)]

(the normalisation does not change the order, so the mask reads the unnormalised sums).
No replay, no task labels, no state carried between tasks.

Where it acts: every ``nn.Linear`` in the backbone whose weight trains. Under full
fine-tuning that is every projection (the paper's setting); under a PEFT LoRA it is each
adapter's own linear maps, ``lora_A`` (r outputs) and ``lora_B`` (out outputs), each masked
by its own output's magnitudes. A trainable parameter outside an ``nn.Linear`` (CURLoRA's
U, DoRA's magnitude vector) has no output of its own to rank and is updated unmasked; the
run logs which, once per task (with ``method=curlora`` MIGU then changes nothing).

How, with the strategy hooks: ``on_task_start`` registers, on each such layer, a forward
hook that records the magnitudes of every forward pass run with gradients enabled, and a
gradient hook on its weight and bias (``Tensor.register_hook``) that multiplies the
gradient by the mask of the last recorded magnitudes, during backward, before the
optimizer step. ``on_task_end`` removes them (evaluation runs without gradients and is
not recorded either way). Tokens at padding positions count in the sums: a forward hook
on a layer does not see the attention mask.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from curlora.strategies.base import ContinualModel, Strategy, TaskData, check_float, head_param_ids

log = logging.getLogger("curlora")


def top_mask(magnitude: torch.Tensor, ratio: float) -> torch.Tensor:
    """Bool [n]: True for the ⌈ratio · n⌉ largest entries of ``magnitude`` [n] (ties:
    ``torch.topk``'s choice)."""
    n = magnitude.shape[0]
    keep = min(n, max(1, math.ceil(ratio * n)))
    mask = torch.zeros(n, dtype=torch.bool, device=magnitude.device)
    mask[torch.topk(magnitude, keep).indices] = True
    return mask


def output_magnitude(output: torch.Tensor) -> torch.Tensor:
    """Σ over every leading dimension of |output|: [..., out] → [out], float32."""
    return output.detach().float().abs().reshape(-1, output.shape[-1]).sum(dim=0)


class MIGU(Strategy):
    """Magnitude-based gradient updating: only the top-ρ output rows of each layer learn.

    It reads the gradients of whatever the module trains on: the head's cross-entropy under
    ``head=linear``, the answer tokens' causal-LM loss under ``head=words``.

    Args:
        top_ratio: ρ ∈ (0, 1], the share of each layer's output rows whose gradient is
            kept (1: plain sequential training). Default 0.5, a round value, not the
            paper's and not tuned here: sweep it.
    """

    name = "migu"

    def __init__(self, top_ratio: float = 0.5) -> None:
        self.top_ratio = check_float("top_ratio", top_ratio, 0.0, 1.0, low_open=True)
        self._handles: list[RemovableHandle] = []
        self._magnitude: dict[int, torch.Tensor] = {}  # id(layer) -> [out] of the last pass

    def masked_layers(self, module: ContinualModel) -> dict[str, nn.Linear]:
        """The backbone's ``nn.Linear`` modules whose weight trains, by name."""
        return {
            name: m
            for name, m in module.backbone.named_modules()
            if isinstance(m, nn.Linear) and m.weight.requires_grad
        }

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Hook every trainable linear layer (again after a resume: nothing is carried)."""
        self._remove()
        layers = self.masked_layers(module)
        covered = {id(p) for m in layers.values() for p in m.parameters(recurse=False)}
        heads = head_param_ids(module)
        unmasked = [
            n
            for n, p in module.trainable_named_parameters()
            if id(p) not in covered and id(p) not in heads
        ]
        if unmasked:
            log.warning(
                "strategy 'migu': %d trainable backbone parameters are not the weight or bias "
                "of an nn.Linear and are updated unmasked (e.g. %s)",
                len(unmasked),
                unmasked[0],
            )
        for layer in layers.values():
            key = id(layer)
            self._handles.append(layer.register_forward_hook(self._recorder(key)))
            for param in (layer.weight, layer.bias):
                if param is not None and param.requires_grad:
                    self._handles.append(param.register_hook(self._masker(key)))

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._magnitude = [], {}

    def _recorder(self, key: int) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def record(layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if torch.is_grad_enabled():  # a training pass: its backward will read this
                self._magnitude[key] = output_magnitude(output)

        return record

    def _masker(self, key: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def mask(grad: torch.Tensor) -> torch.Tensor:
            magnitude = self._magnitude.get(key)
            if magnitude is None:
                return grad
            rows = top_mask(magnitude, self.top_ratio).to(grad.device, grad.dtype)  # [out]
            return grad * rows.view(-1, *([1] * (grad.dim() - 1)))  # weight [out, in], bias [out]

        return mask
