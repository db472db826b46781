"""The adapted state of a backbone as a flat tensor dict (for training checkpoints)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from curlora.adapters.base import require_method


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Exactly what restores the adapted state on top of the same base model.

    CURLoRA: ``U`` and the ``col_idx``/``row_idx`` buffers per layer (C and R are
    re-gathered from the base weights). LoRA, lora_paper: A and B. OSF: its trainable SVD
    factors and its frozen ones. head_only: nothing. full: the whole backbone
    ``state_dict()``. Keys are the backbone's module paths; tensors alias the live ones.
    """
    return require_method(model).state_dict(model)


def load_adapter_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` (from ``adapter_state_dict``) into ``model``'s adapter in place.

    The model must have the same method applied. Copies go into the existing tensors, so
    optimizer references and PEFT's gradient hooks stay valid. Keys and shapes must match
    exactly (ValueError listing the differences otherwise).
    """
    method = require_method(model)
    live = method.state_dict(model)
    missing, unexpected = sorted(set(live) - set(state)), sorted(set(state) - set(live))
    if missing or unexpected:
        raise ValueError(
            f"state does not fit the '{method.name}' adapter of this model: "
            f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}"
        )
    wrong = [k for k in live if tuple(live[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"state does not fit the '{method.name}' adapter: {k} has shape "
            f"{tuple(state[k].shape)}, the model {tuple(live[k].shape)} ({len(wrong)} differ)"
        )
    with torch.no_grad():
        for k, t in live.items():
            t.copy_(state[k])
    method.after_load(model)
