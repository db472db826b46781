"""Head-only: a linear probe. The backbone is frozen and unchanged; only the task heads
(which live in the LightningModule, not here) train. The control that shows what an adapter
adds over the heads alone (CURLoRA: https://arxiv.org/abs/2408.14572)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from curlora.adapters.base import AdapterMethod, Shapes


@dataclasses.dataclass
class HeadOnlyMethod(AdapterMethod):
    """No adapter; every backbone parameter frozen, the model's modules untouched, so the
    backbone's outputs (and the LM perplexity) stay bit-identical.

    Fields (``configs/method/head_only.yaml``):
        name: ``head_only``.
        lr: the method's default learning rate (``AdapterMethod``).
    """

    supports_quantization: ClassVar[bool] = True  # nothing in the backbone is touched

    name: str = "head_only"

    def starts_at_base(self) -> bool:
        return True  # nothing in the backbone changes at all

    def num_trainable(self, shapes: Shapes) -> int:
        return 0
