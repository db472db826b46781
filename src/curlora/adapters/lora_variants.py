"""LoRA with another initialisation or DoRA, through PEFT's own options.

Methods that share CURLoRA's question (https://arxiv.org/abs/2408.14572): which directions
of a pretrained weight should an adapter move? PiSSA moves the principal ones; MiCA fixes B
to W's minor left singular vectors and trains only A, the closest relative of CURLoRA (C
and R fixed from W's low-norm columns and rows, only U trains); OLoRA starts from an
orthonormal basis of W; DoRA separates magnitude from direction. All are PEFT's
``LoraConfig`` options (``init_lora_weights``, ``use_dora``) on top of
:class:`~curlora.adapters.lora.LoRAMethod`.
"""

from __future__ import annotations

import dataclasses

from peft import LoraConfig
from torch import nn

from curlora.adapters.base import Shapes, check_targets
from curlora.adapters.lora import ADAPTER_NAME, LoRAMethod

# PEFT's init_lora_weights values that need nothing but the weight (eva and corda need
# activations from data, loftq a quantised base).
INITS = ("gaussian", "pissa", "mica", "olora", "orthogonal")


def _is_pissa_niter(init: object) -> bool:
    prefix = "pissa_niter_"
    return isinstance(init, str) and init.startswith(prefix) and init[len(prefix) :].isdigit()


@dataclasses.dataclass
class LoRAVariantMethod(LoRAMethod):
    """PEFT LoRA with ``init_lora_weights`` and ``use_dora``; the other fields as LoRA's.

    Fields (``configs/method/{pissa,mica,olora,dora}.yaml``), besides ``LoRAMethod``'s
    name:, lr:, rank:, alpha:, target_modules:, dropout:, seed::
        init: PEFT's ``init_lora_weights``. ``true``: LoRA's standard init (B = 0).
            ``mica`` (https://arxiv.org/abs/2604.01694): B = the r left singular vectors of W
            with the smallest singular values, frozen; A starts at 0 and is the only trained
            factor (r · in per matrix); the run starts exactly at the base. ``pissa`` (Meng
            et al. 2024) and ``olora`` (Büyükakyüz 2024) move r principal singular
            components / an orthonormal QR basis of W into B·A and leave the residual
            W − B·A in the frozen base layer, so the sum starts equal to W up to rounding;
            also ``gaussian``, ``orthogonal`` and ``pissa_niter_<n>`` (randomised SVD). The
            SVD/QR is of the same weight whenever the adapter is applied, so resume and
            reload see the same base.
        use_dora: DoRA (Liu et al. 2024): W's row norms become a trainable magnitude vector
            (out entries per matrix) and B·A adapts the direction.
    """

    name: str = "pissa"
    init: bool | str = True
    use_dora: bool = False

    @property
    def supports_quantization(self) -> bool:  # type: ignore[override]
        # The standard init (B = 0) only reads outputs; DoRA dequantises W once for its
        # norms (PEFT does this for bitsandbytes layers). PiSSA, OLoRA and MiCA factor W.
        return self.init is True

    def starts_at_base(self) -> bool:
        # The standard init (B = 0) and MiCA (A = 0) add exact zeros; PiSSA/OLoRA and DoRA's
        # norm rebuild W up to rounding, so those never share a cached evaluation of the base.
        return (self.init is True or self.init == "mica") and not self.use_dora

    def validate(self, shapes: Shapes) -> None:
        super().validate(shapes)
        if not (self.init is True or self.init in INITS or _is_pissa_niter(self.init)):
            raise ValueError(
                f"{self.name}: init={self.init!r} is not valid; valid: true, "
                f"{', '.join(INITS)} or pissa_niter_<n>"
            )
        if not isinstance(self.use_dora, bool):
            raise ValueError(f"{self.name}: use_dora={self.use_dora!r} is not valid; valid: a bool")

    def num_trainable(self, shapes: Shapes) -> int:
        names = check_targets(self.name, self.target_modules, shapes)
        if self.init == "mica":  # only A (r × in) trains; B is W's frozen minor vectors
            count = sum(self.rank * shapes[n][1] for n in names)
        else:
            count = super().num_trainable(shapes)
        if self.use_dora:  # one magnitude per output row of each adapted matrix
            count += sum(shapes[n][0] for n in names)
        return count

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The adapter layers' parameters less those PEFT keeps frozen (MiCA's B)."""
        out = []
        for name, layer in self.adapter_layers(model).items():
            frozen = getattr(layer, "frozen_peft_weight_names", {}).get(ADAPTER_NAME, ())
            out += [
                (f"{name}.{pn}", p)
                for pn, p in layer.named_parameters()
                if not pn.startswith("base_layer.")
                and not any(pn.startswith(f"{weight}.") for weight in frozen)
            ]
        return out

    def peft_config(self, names: list[str]) -> LoraConfig:
        config = super().peft_config(names)
        config.init_lora_weights = self.init
        config.use_dora = self.use_dora
        return config
