"""The LoRA baseline exactly as the CURLoRA paper's reference code had it.

Kept so the paper's LoRA collapse (0.49–0.51 on SST-2, 0.32 on MRPC in
https://arxiv.org/abs/2408.14572) can be reproduced and explained; ``lora`` is the
standard one.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from curlora import checks
from curlora.adapters.base import (
    PAPER_TARGETS,
    AdapterMethod,
    Shapes,
    check_targets,
    lowrank_trainable,
    module_shapes,
    replace_module,
    validate_lowrank,
)
from curlora.adapters.sampling import layer_seed


class LoRAPaperLinear(nn.Module):
    """y = base(x) + α · (x A) B, as in the reference code's ``LinearWithLoRA``.

    A: (in, r), kaiming-uniform with a = √5 over torch's fan_in = A.size(1) = r, i.e.
    U(−1/√r, 1/√r). B: (r, out), zeros, so the layer equals the base layer at creation.

    How it differs from PEFT's LoRA (``lora``), which has A: (r, in) kaiming-uniform over
    fan_in = in, i.e. U(−1/√in, 1/√in), B: (out, r) zeros, scale α / r:
      1. the scale is α, not α / r: r times larger at the same α;
      2. A's entries are √(in / r) times larger (16× for in = 4096, r = 16);
      3. no dropout in the reference code (``dropout`` here defaults to 0 for that reason).
    With Adam (steps of about the learning rate whatever the gradient's scale) the change
    of the function per step, α · ΔB-times-A, is then r · √(in / r) = √(r · in) times
    PEFT's at the same α and learning rate (256× for in = 4096, r = 16): far larger steps,
    which is how the paper's LoRA baseline collapses to one-class predictions.

    Args:
        base_layer: the frozen Linear. rank: r ≥ 1. alpha: α. seed: with ``name``, seeds a
        local generator for A (never the global RNG). dropout: on the adapter input.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        alpha: float = 1.0,
        seed: int | None = None,
        dropout: float = 0.0,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__()
        checks.check_int("rank", rank, 1, context=f"LoRA layer {name or ''}: ")
        base_layer.requires_grad_(False)
        self.base_layer = base_layer
        out_f, in_f = base_layer.weight.shape
        self.in_features, self.out_features = in_f, out_f
        self.rank, self.alpha, self.dropout, self.name = rank, float(alpha), float(dropout), name
        w = base_layer.weight
        gen = torch.Generator(device="cpu").manual_seed(layer_seed(seed, name or ""))
        a = torch.empty(in_f, rank, dtype=torch.float32)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)  # fan_in = a.size(1) = r
        # float32 whatever the base weight's dtype: small updates of bf16 A, B round away.
        self.lora_A = nn.Parameter(a.to(device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(rank, out_f, dtype=torch.float32, device=w.device))

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def delta_weight(self) -> torch.Tensor:
        """α · (A B)ᵀ (out × in), float32."""
        return self.alpha * (self.lora_A @ self.lora_B).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out); the adapter term in float32, added in x's dtype."""
        h = F.dropout(x, self.dropout, training=self.training) if self.dropout > 0 else x
        delta = self.alpha * ((h.to(self.lora_A.dtype) @ self.lora_A) @ self.lora_B)
        return self.base_layer(x) + delta.to(x.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, dropout={self.dropout}"


@dataclasses.dataclass
class LoRAPaperMethod(AdapterMethod):
    """The paper reference code's LoRA on ``target_modules`` (https://arxiv.org/abs/2408.14572).

    Fields (``configs/method/lora_paper.yaml``):
        name: ``lora_paper``.
        lr: the method's default learning rate (``AdapterMethod``).
        rank: r ≥ 1; trainable parameters r · (in + out) per adapted matrix.
        alpha: α, applied without / r (see ``LoRAPaperLinear`` for every difference).
        target_modules: module-name suffixes to adapt (PEFT's rule); paper: q/k/v.
        dropout: on the adapter input, in [0, 1); the reference code has none.
        seed: base of the per-layer seeds for A (seeded by (seed, layer name)).
    """

    name: str = "lora_paper"
    rank: int = 16
    alpha: float = 1.0
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_TARGETS))
    dropout: float = 0.0
    seed: int | None = 0

    def starts_at_base(self) -> bool:
        return True  # B starts at zero: the adapter term is exactly zero

    def validate(self, shapes: Shapes) -> None:
        validate_lowrank(self, shapes)

    def num_trainable(self, shapes: Shapes) -> int:
        return lowrank_trainable(self, shapes)

    def inject(self, model: nn.Module) -> None:
        for n in check_targets(self.name, self.target_modules, module_shapes(model)):
            layer = LoRAPaperLinear(
                model.get_submodule(n), self.rank, self.alpha, self.seed, self.dropout, name=n
            )
            replace_module(model, n, layer)

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        return layer.alpha * layer.lora_B.T, layer.lora_A.T  # (out × r), (r × in)

    def layer_norms(self, layer: nn.Module) -> dict[str, float]:
        return {
            "a_norm": float(torch.linalg.matrix_norm(layer.lora_A.detach().double())),
            "b_norm": float(torch.linalg.matrix_norm(layer.lora_B.detach().double())),
        }
