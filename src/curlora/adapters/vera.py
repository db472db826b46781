"""VeRA (Kopiczko et al. 2024, "VeRA: Vector-based Random Matrix Adaptation",
https://arxiv.org/abs/2310.11454) as PEFT ships it (``peft.VeraConfig``): a
parameter-matched control for CURLoRA (https://arxiv.org/abs/2408.14572).

ΔW = Λ_b B Λ_d A with A (r × in) and B (out × r) random, frozen and shared by every adapted
layer (sliced to each layer's shape), and only the two scaling vectors training: λ_d (r)
and λ_b (out), so r + out parameters per matrix. CURLoRA trains k² per matrix. At the same
rank the two counts are within 2× of each other for attention projections (SmolLM2-135M,
r = k = 16: 1,008 against 768 per layer), which separates "fewer trainable parameters
forget less" from "CUR forgets less". λ_b starts at zero, so the model starts exactly at
the base (PEFT's default init).

Injection is in place (PEFT's ``VeraModel`` tuner, which adapts the model it is given):
each VeRA layer holds the shared A and B as buffers, so ``adapter_state_dict`` saves them
with λ_b and λ_d (PEFT could regenerate them from ``projection_prng_key``; saving them is
the safer of the two).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from peft import VeraConfig
from peft.tuners.tuners_utils import cast_adapter_dtype
from peft.tuners.vera import VeraModel
from torch import nn

from curlora.adapters.base import (
    PAPER_TARGETS,
    AdapterMethod,
    Shapes,
    check_float,
    check_int,
    check_seed,
    check_targets,
    module_shapes,
)
from curlora.adapters.lora import cuda_devices

ADAPTER_NAME = "default"


@dataclasses.dataclass
class VeRAMethod(AdapterMethod):
    """PEFT's VeRA on ``target_modules``.

    Fields (``configs/method/vera.yaml``):
        name: ``vera``.
        lr: the method's default learning rate (``AdapterMethod``).
        rank: r, the width of the shared random A and B; r + out trainable parameters per
            adapted matrix (λ_d, λ_b).
        target_modules: module-name suffixes to adapt (PEFT's rule; each entry must match
            an nn.Linear). Default q/k/v, as CURLoRA.
        d_initial: the initial value of every entry of λ_d (PEFT's default 0.1).
        dropout: PEFT's ``vera_dropout`` on the adapter input, in [0, 1).
        seed: PEFT's ``projection_prng_key``: the seed of the shared random A and B.
    """

    # PEFT's VeRA layers wrap bitsandbytes layers: the adapter reads only outputs.
    supports_quantization: ClassVar[bool] = True

    name: str = "vera"
    rank: int = 16
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_TARGETS))
    d_initial: float = 0.1
    dropout: float = 0.0
    seed: int | None = 0

    def validate(self, shapes: Shapes) -> None:
        check_targets(self.name, self.target_modules, shapes)
        check_int(self.name, "rank", self.rank, 1)
        check_float(self.name, "d_initial", self.d_initial, float("-inf"), float("inf"))
        check_float(self.name, "dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_seed(self.name, self.seed)

    def num_trainable(self, shapes: Shapes) -> int:
        names = check_targets(self.name, self.target_modules, shapes)
        return sum(self.rank + shapes[n][0] for n in names)  # λ_d (r) + λ_b (out)

    def starts_at_base(self) -> bool:
        return True  # λ_b = 0: the adapter term is exactly zero until it trains

    def inject(self, model: nn.Module) -> None:
        names = check_targets(self.name, self.target_modules, module_shapes(model))
        config = VeraConfig(
            r=self.rank,
            target_modules=names,
            projection_prng_key=0 if self.seed is None else self.seed,
            vera_dropout=self.dropout,
            d_initial=self.d_initial,
            bias="none",
        )
        # PEFT refuses inject_adapter_in_model for VeRA (its A and B are shared state). The
        # tuner itself injects in place, as inject_adapter_in_model does for the others;
        # every layer keeps references to the shared A and B, so the tuner object can go.
        with torch.random.fork_rng(devices=cuda_devices(model)):
            VeraModel(model, config, ADAPTER_NAME)
        # float32 λ_b, λ_d under a 16-bit backbone, as for LoRA (PEFT upcasts only inside a
        # PeftModel)
        cast_adapter_dtype(model, ADAPTER_NAME, autocast_adapter_dtype=True)

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        # ΔW = diag(λ_b) B diag(λ_d) A, sliced like PEFT's get_delta_weight: (out × r)(r × in)
        out_features, in_features = layer.base_layer.weight.shape
        a = layer.vera_A[ADAPTER_NAME][:, :in_features]
        b = layer.vera_B[ADAPTER_NAME][:out_features, :]
        lambda_b = layer.vera_lambda_b[ADAPTER_NAME]
        lambda_d = layer.vera_lambda_d[ADAPTER_NAME]
        return lambda_b.unsqueeze(-1) * b * lambda_d.unsqueeze(0), a
