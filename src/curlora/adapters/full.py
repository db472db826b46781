"""Full fine-tuning: every backbone parameter trains. The forgetting reference against
which parameter-efficient methods are compared (CURLoRA: https://arxiv.org/abs/2408.14572)."""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import torch
from torch import nn

from curlora.adapters.base import AdapterMethod

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FullMethod(AdapterMethod):
    """No adapter layers; ``apply_adapter`` leaves every backbone parameter trainable.

    The adapter state is the whole backbone ``state_dict()`` (tied weights appear under
    each of their names, as in ``nn.Module.state_dict``). ``num_trainable`` is None:
    embeddings and norms are not nn.Linear, so Linear shapes do not determine the count.

    Fields (``configs/method/full.yaml``):
        name: ``full``.
        lr: the method's default learning rate (``AdapterMethod``).
    """

    name: str = "full"

    def starts_at_base(self) -> bool:
        return True  # the backbone is the base model until it trains

    def inject(self, model: nn.Module) -> None:
        """Every weight trains, so every weight must be float32: under a 16-bit backbone
        the model is upcast (small Adam updates of bf16 weights mostly round away)."""
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
            log.info("method=full: upcasting the backbone to float32 (its weights train)")
            model.float()

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return list(model.named_parameters())

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return dict(model.state_dict())

    # Nothing beside the checkpoints: the whole fine-tuned backbone is already in the last
    # task checkpoint, and a second copy would double the run's disk use.
    saves_final_adapter: ClassVar[bool] = False
