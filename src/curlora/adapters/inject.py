"""``apply_adapter``: the one entry point that applies a method to a causal LM, in place."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from curlora.adapters.base import METHOD_ATTR, applied_method, module_shapes
from curlora.adapters.build import build_method


def count_trainable(model: nn.Module) -> int:
    """Parameters with requires_grad (tied parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def apply_adapter(
    model: nn.Module, method_cfg: Any, calibration: torch.Tensor | None = None
) -> int:
    """Apply ``method_cfg`` to ``model`` in place and return its trainable-parameter count.

    ``method_cfg``: a DictConfig/dict with ``_target_`` (e.g. ``cfg.method``, built with
    ``hydra.utils.instantiate``) or an ``AdapterMethod``. Steps: validate against the
    model's Linear shapes (ValueError before anything changes), hand ``calibration`` (token
    ids [N], for a method whose initialisation reads activations) over, inject the layers,
    then freeze every parameter except the method's trainable ones (torchtune's
    ``set_trainable_params``: one place decides what trains). The method is recorded on the
    model for ``adapter_state_dict``, ``save_adapter`` and ``adapter_diagnostics``.
    """
    method = build_method(method_cfg)
    previous = applied_method(model)
    if previous is not None:
        raise ValueError(
            f"the model already has method '{previous.name}' applied; build a fresh base model"
        )
    method.validate(module_shapes(model))
    if calibration is not None:
        method.use_calibration(calibration)
    method.inject(model)
    keep = {id(p) for _, p in method.trainable_parameters(model)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    model.__dict__[METHOD_ATTR] = method
    return count_trainable(model)
