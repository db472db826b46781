"""N-LoRA (Yang et al., COLING 2025, "Is Parameter Collision Hindering Continual Learning in
LLMs?", https://arxiv.org/abs/2410.10179): one LoRA per task, as O-LoRA, with an ℓ1
sparsity penalty on the current task's update instead of an orthogonality one.

The paper's argument: two tasks' updates that touch disjoint entries of W ("non-colliding")
are orthogonal, and sparse updates rarely collide; so instead of O-LoRA's Σ|A_s A_tᵀ| each
new task's update ΔW_t = s · B_t A_t (s: the layer's scale lora_alpha / r) is made sparse,
earlier tasks' adapters staying frozen but active. The loss of task t adds

    λ₁ · Σ_layers ‖s · B_t A_t‖₁ = λ₁ · Σ_layers Σ_ij |(s · B_t A_t)_ij|      (out × in)

with the (sub)gradients  ∂/∂A_t = λ₁ s · B_tᵀ sign(ΔW_t),  ∂/∂B_t = λ₁ s · sign(ΔW_t) A_tᵀ
(``torch.abs``'s subgradient: 0 where ΔW_t is 0, so nothing pulls while B_t = 0 at the
start of the task). O-LoRA's two terms stay available (``lambda_orth``, ``lambda_l2``) and
are off by default, so this is N-LoRA exactly; the per-task adapters, their freezing and
their saving are O-LoRA's (:class:`~curlora.adapters.o_lora.OLoRAMethod`).

Forming ΔW_t costs one out × in product per adapted layer per step (for SmolLM2's q/v
projections 576 × 576 and 192 × 576: small next to the forward pass).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from curlora.adapters.base import check_float
from curlora.adapters.o_lora import OLoRAMethod


def l1_update_penalty(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """‖scaling · B A‖₁ for A (r × in), B (out × r): the sum of |entries| of the update."""
    return (scaling * (b @ a)).abs().sum()  # (out, in) → scalar


@dataclasses.dataclass
class NLoRAMethod(OLoRAMethod):
    """N-LoRA: a PEFT LoRA adapter per task, an ℓ1 penalty on the current task's update.

    Fields (``configs/method/n_lora.yaml``): O-LoRA's (``OLoRAMethod``: name:, lr:, rank:,
    alpha:, target_modules:, dropout:, seed:, tasks:, lambda_orth:, lambda_l2:, the last two
    0 by default here), and
        lambda_l1: λ₁ ≥ 0, weight of Σ_layers ‖s · B_t A_t‖₁ on the current task t.
    """

    name: str = "n_lora"
    lambda_orth: float = 0.0
    lambda_l1: float = 1.0e-4

    def validate(self, shapes: dict[str, tuple[int, int]]) -> None:
        super().validate(shapes)
        check_float(self.name, "lambda_l1", self.lambda_l1, 0.0, float("inf"))

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """O-LoRA's terms (off by default) + λ₁ Σ_layers ‖s · B_t A_t‖₁."""
        total = super().extra_loss(model)
        if self.lambda_l1 == 0:
            return total
        task = self._current or self.tasks[0]
        for layer in self._layers.values():
            term = self.lambda_l1 * l1_update_penalty(
                layer.lora_A[task].weight, layer.lora_B[task].weight, layer.scaling[task]
            )
            total = term if total is None else total + term
        return total
