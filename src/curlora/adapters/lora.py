"""LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) as PEFT implements it.

The baseline the CURLoRA paper (https://arxiv.org/abs/2408.14572) compares against, here
with PEFT's standard initialisation and α/r scaling. PEFT's own ``LoraConfig`` and LoRA
layers are injected into the model in place (``peft.inject_adapter_in_model``), so the
caller keeps using the same model object; no LoRA maths is written here.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import cast_adapter_dtype
from torch import nn

from curlora.adapters.base import (
    PAPER_TARGETS,
    AdapterMethod,
    Shapes,
    check_targets,
    lowrank_trainable,
    module_shapes,
    validate_lowrank,
)

ADAPTER_NAME = "default"  # PEFT's adapter name; one adapter per model here


def cuda_devices(model: nn.Module) -> list[int]:
    """CUDA device indices holding ``model``'s parameters (for ``torch.random.fork_rng``)."""
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


@dataclasses.dataclass
class LoRAMethod(AdapterMethod):
    """PEFT LoRA: ΔW = (α / r) · B A, A (r × in) kaiming-uniform, B (out × r) zeros.

    Fields (``configs/method/lora.yaml``):
        name: ``lora``.
        lr: the method's default learning rate (``AdapterMethod``).
        rank: r, PEFT's ``r``; trainable parameters r · (in + out) per adapted matrix.
        alpha: α, PEFT's ``lora_alpha``; the update is scaled by α / r.
        target_modules: module-name suffixes to adapt (PEFT's matching rule); every entry
            must match at least one nn.Linear. The paper's choice: q/k/v.
        dropout: PEFT's ``lora_dropout`` on the adapter input, in [0, 1).
        seed: seeds PEFT's initialisation of A. PEFT draws from the global RNG, so the
            injection runs inside ``torch.random.fork_rng`` with this seed: reproducible, and
            the caller's RNG stream is left as it was.
    """

    # PEFT wraps bitsandbytes layers in its quantised LoRA layers: B·A reads only outputs.
    supports_quantization: ClassVar[bool] = True

    name: str = "lora"
    rank: int = 16
    alpha: float = 16.0
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_TARGETS))
    dropout: float = 0.0
    seed: int | None = 0

    def starts_at_base(self) -> bool:
        return True  # PEFT's default init: B starts at zero, the adapter term is exactly zero

    def validate(self, shapes: Shapes) -> None:
        validate_lowrank(self, shapes)

    def num_trainable(self, shapes: Shapes) -> int:
        return lowrank_trainable(self, shapes)

    def peft_config(self, names: list[str]) -> LoraConfig:
        # Full module names, so PEFT adapts exactly the Linear layers validate() matched.
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=names,
            bias="none",
        )

    def inject(self, model: nn.Module) -> None:
        names = check_targets(self.name, self.target_modules, module_shapes(model))
        with torch.random.fork_rng(devices=cuda_devices(model)):
            torch.manual_seed(0 if self.seed is None else self.seed)
            inject_adapter_in_model(self.peft_config(names), model, adapter_name=ADAPTER_NAME)
        # PEFT creates A and B in the base weight's dtype and upcasts them only inside a
        # PeftModel; injected in place, the upcast is ours: float32 adapters under a bf16
        # backbone (PEFT's forward casts the input to A's dtype and the result back).
        cast_adapter_dtype(model, ADAPTER_NAME, autocast_adapter_dtype=True)

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        a = layer.lora_A[ADAPTER_NAME].weight  # (r, in)
        b = layer.lora_B[ADAPTER_NAME].weight  # (out, r)
        return layer.scaling[ADAPTER_NAME] * b, a

    def layer_norms(self, layer: nn.Module) -> dict[str, float]:
        a = layer.lora_A[ADAPTER_NAME].weight.detach().double()
        b = layer.lora_B[ADAPTER_NAME].weight.detach().double()
        return {
            "a_norm": float(torch.linalg.matrix_norm(a)),
            "b_norm": float(torch.linalg.matrix_norm(b)),
        }
