"""MiLoRA (Wang et al., NAACL 2025, "MiLoRA: Harnessing Minor Singular Components for
Parameter-Efficient LLM Finetuning", https://arxiv.org/abs/2406.09044): LoRA started from
the r *minor* singular components of W, the frozen base keeping the principal rest.

With W = U Σ Vᵀ (out × in, singular values in descending order) split into the principal
part (the first min(out, in) − r components) and the minor part (the last r), MiLoRA's
initialisation (the paper's method section) is

    W_p = U_p Σ_p V_pᵀ                  (the frozen base layer from now on)
    A_m = √Σ_m V_mᵀ      (r × in)       B_m = U_m √Σ_m      (out × r)

so that W_p + B_m A_m = W at initialisation and B_m A_m spans exactly the minor
components. The mirror of PiSSA (the principal r components in B·A, the minor rest in the
base; PEFT ``init_lora_weights="pissa"``). PEFT has no MiLoRA option, so the SVD here
follows PEFT's PiSSA step with the other end of the spectrum: the layer's scale s (PEFT's
``lora_alpha / r``) is divided out of Σ_m, so that s · B_m A_m = U_m Σ_m V_mᵀ at any α. The
SVD is of the same weight whenever the adapter is applied (float64, deterministic on CPU),
so a resumed run and a reloaded adapter see the same W_p.

A baseline for CURLoRA (https://arxiv.org/abs/2408.14572): both adapt W through its
least-used directions; MiLoRA through its minor singular subspace (and lets A and B
leave it), CURLoRA through its low-norm columns and rows with only U training.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from curlora.adapters.base import Shapes, check_rank, check_targets
from curlora.adapters.lora import ADAPTER_NAME, LoRAMethod


def minor_factors(
    weight: torch.Tensor, rank: int, scaling: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A_m: r × in, B_m: out × r, W_p: out × in) of MiLoRA's initialisation, in float64.

    ``scaling · B_m @ A_m`` is W's minor rank-``rank`` part U_m Σ_m V_mᵀ and
    ``W_p = W − scaling · B_m @ A_m`` its principal rest.
    """
    w = weight.detach().double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # s descending, [min(out, in)]
    u_m, s_m, vh_m = u[:, -rank:], s[-rank:] / scaling, vh[-rank:]  # the r smallest
    root = torch.diag(s_m.sqrt())  # r × r
    a = root @ vh_m  # (r, in)
    b = u_m @ root  # (out, r)
    return a, b, w - scaling * (b @ a)


@dataclasses.dataclass
class MiLoRAMethod(LoRAMethod):
    """PEFT LoRA layers initialised from W's minor singular components (module docstring).

    Fields (``configs/method/milora.yaml``): ``LoRAMethod``'s name:, lr:, rank:, alpha:,
    target_modules:, dropout: and seed: (the seed only matters for PEFT's A before it is
    overwritten; kept so every LoRA-family YAML reads alike).
    """

    # B·A is built from W itself, which a bitsandbytes base stores packed.
    supports_quantization: ClassVar[bool] = False

    name: str = "milora"

    def starts_at_base(self) -> bool:
        return False  # W_p + s·B A equals W only up to rounding

    def validate(self, shapes: Shapes) -> None:
        super().validate(shapes)
        # r minor components need r ≤ min(out, in) of every adapted matrix.
        check_rank(
            self.name, self.rank, check_targets(self.name, self.target_modules, shapes), shapes
        )

    def inject(self, model: nn.Module) -> None:
        super().inject(model)
        with torch.no_grad():
            for layer in self.adapter_layers(model).values():
                base = layer.base_layer.weight  # (out, in)
                lora_a = layer.lora_A[ADAPTER_NAME].weight  # (r, in)
                lora_b = layer.lora_B[ADAPTER_NAME].weight  # (out, r)
                a, b, principal = minor_factors(base, self.rank, layer.scaling[ADAPTER_NAME])
                lora_a.copy_(a.to(lora_a.dtype))
                lora_b.copy_(b.to(lora_b.dtype))
                base.copy_(principal.to(base.dtype))
