"""TinyLoRA (arXiv:2602.04118, after LoRA-XS) as PEFT ships it (``peft.TinyLoraConfig``): a
parameter-matched control for CURLoRA (https://arxiv.org/abs/2408.14572).

ΔW = B R A with A = √S_r V_rᵀ (r × in) and B = U_r √S_r (out × r) from the truncated SVD
of the frozen W, both frozen, and R = Σ_i v_i P_i (r × r) built from fixed random
P (u × r × r) and the trainable vector v (u entries per matrix). With r = k and u = k² the
adapter trains exactly CURLoRA's k² parameters per matrix through a k × k core between
frozen factors taken from W, as CURLoRA does; the difference is *which* directions: W's
principal singular directions here, W's low-norm columns and rows (inverted sampling) in
CURLoRA. v starts at zero, so the model starts exactly at the base.

Injection is in place (PEFT's ``TinyLoraModel`` tuner, as for VeRA). The v vectors live in
one ModuleDict that PEFT shares between the layers; each layer's own vector is found
through its ``_tinylora_v_key``. The adapter state is those vectors only: A and B are the
SVD of the base weight and P comes from ``seed``, so applying the method to the same base
rebuilds them (the saved fingerprint refuses another base).
"""

from __future__ import annotations

import dataclasses

import torch
from peft import TinyLoraConfig
from peft.tuners.tinylora import TinyLoraModel
from torch import nn

from curlora.adapters.base import (
    PAPER_TARGETS,
    AdapterMethod,
    Shapes,
    check_int,
    check_rank,
    check_seed,
    check_targets,
    module_shapes,
)
from curlora.adapters.lora import cuda_devices

ADAPTER_NAME = "default"


@dataclasses.dataclass
class TinyLoRAMethod(AdapterMethod):
    """PEFT's TinyLoRA on ``target_modules``, one trainable vector per adapted matrix.

    Fields (``configs/method/tinylora.yaml``):
        name: ``tinylora``.
        lr: the method's default learning rate (``AdapterMethod``).
        rank: r, the truncated-SVD rank of the frozen A and B (R is r × r).
        u: trainable entries of v per adapted matrix (PEFT's ``u``); r² makes R free and
            matches CURLoRA's k² at k = r.
        target_modules: module-name suffixes to adapt (PEFT's rule; each entry must match
            an nn.Linear). Default q/k/v, as CURLoRA.
        seed: PEFT's ``projection_seed`` (layer i draws its P with seed + i).
    """

    name: str = "tinylora"
    rank: int = 16
    u: int = 256
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_TARGETS))
    seed: int | None = 0

    def validate(self, shapes: Shapes) -> None:
        names = check_targets(self.name, self.target_modules, shapes)
        check_rank(self.name, self.rank, names, shapes)
        check_int(self.name, "u", self.u, 1)
        check_seed(self.name, self.seed)

    def num_trainable(self, shapes: Shapes) -> int:
        return self.u * len(check_targets(self.name, self.target_modules, shapes))

    def starts_at_base(self) -> bool:
        return True  # v = 0: R = 0 and the adapter term is exactly zero until it trains

    def inject(self, model: nn.Module) -> None:
        names = check_targets(self.name, self.target_modules, module_shapes(model))
        config = TinyLoraConfig(
            r=self.rank,
            u=self.u,
            weight_tying=0.0,  # one v per matrix: the count CURLoRA is matched against
            projection_seed=0 if self.seed is None else self.seed,
            target_modules=names,
        )
        with torch.random.fork_rng(devices=cuda_devices(model)):
            TinyLoraModel(model, config, ADAPTER_NAME)
        # float32 adapter under a 16-bit backbone (PEFT keeps the base dtype when injecting in
        # place): v trains in fp32, and A, B, P follow so PEFT's forward runs in one dtype
        # (it casts the input to A's dtype and the sum back to the input's).
        for vector in self._vectors(model).values():
            vector.data = vector.data.float()
        for layer in self.adapter_layers(model).values():
            for buffers in (layer.tinylora_A, layer.tinylora_B, layer.tinylora_P):
                buffers[ADAPTER_NAME] = buffers[ADAPTER_NAME].float()

    def _vectors(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """Each adapted layer's own v (u,), by layer name (PEFT shares one dict of them)."""
        return {
            name: layer.tinylora_v[ADAPTER_NAME][layer._tinylora_v_key[ADAPTER_NAME]]
            for name, layer in self.adapter_layers(model).items()
        }

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(f"{name}.tinylora_v", v) for name, v in self._vectors(model).items()]

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {f"{name}.tinylora_v": v.detach() for name, v in self._vectors(model).items()}

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        a = layer.tinylora_A[ADAPTER_NAME]  # (r, in)
        b = layer.tinylora_B[ADAPTER_NAME]  # (out, r)
        return b @ layer._compute_R(ADAPTER_NAME), a  # (out, r), (r, in)
