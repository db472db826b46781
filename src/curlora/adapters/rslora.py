"""rsLoRA (Kalajdzievski 2023, https://arxiv.org/abs/2312.03732): LoRA scaled by α/√r.

The rank-stabilised scale γ_r = α/√r (instead of LoRA's α/r) keeps the size of the
adapter's updates from collapsing as the rank grows (the paper's Theorem 3.2). PEFT
implements it as ``LoraConfig(use_rslora=True)``; this method is PEFT's LoRA with that one
option, the pattern for wrapping any PEFT option: subclass
:class:`~curlora.adapters.lora.LoRAMethod`, override ``peft_config``. A baseline for the
CURLoRA paper's question (https://arxiv.org/abs/2408.14572) of how the update scale
interacts with forgetting.

How the top-level ``alpha`` maps (``configs/method/rslora.yaml``): PEFT's ``lora_alpha`` is
the top-level ``alpha`` itself, so the scale is α/√r (α = 1, r = 16: 0.25). LoRA's YAML
sets ``lora_alpha = α · r`` to make its scale α at every rank; the same normalisation here
(``lora_alpha = α · √r``) would give the scale α at every rank too, i.e. LoRA exactly.
"""

from __future__ import annotations

import dataclasses

from peft import LoraConfig

from curlora.adapters.lora import LoRAMethod


@dataclasses.dataclass
class RsLoRAMethod(LoRAMethod):
    """PEFT LoRA with ``use_rslora=True``: ΔW = (α / √r) · B A; everything else as LoRA.

    Fields (``configs/method/rslora.yaml``), as ``LoRAMethod``'s:
        name: ``rslora``.
        lr: the method's default learning rate (``AdapterMethod``).
        rank: r, PEFT's ``r``; r · (in + out) trainable parameters per adapted matrix.
        alpha: α, PEFT's ``lora_alpha``; the update is scaled by α / √r.
        target_modules: module-name suffixes to adapt (PEFT's matching rule).
        dropout: PEFT's ``lora_dropout`` on the adapter input, in [0, 1).
        seed: seeds PEFT's initialisation of A (under a forked RNG).
    """

    name: str = "rslora"

    def peft_config(self, names: list[str]) -> LoraConfig:
        config = super().peft_config(names)
        config.use_rslora = True  # PEFT: scaling = lora_alpha / sqrt(r)
        return config
