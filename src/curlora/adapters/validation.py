"""Check a method config against a model's layer shapes before any weights load."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from curlora.adapters.base import Shapes, module_shapes
from curlora.adapters.build import build_method


def linear_shapes(config: PretrainedConfig) -> dict[str, tuple[int, int]]:
    """(out, in) of every nn.Linear of the causal LM ``config`` describes, by module name.

    The model is built on the meta device: shapes only, no weights, no memory (about a
    second for Mistral-7B's config).
    """
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return module_shapes(model)


def validate_method(method_cfg: Any, shapes: Shapes) -> None:
    """Raise ValueError if ``method_cfg`` cannot be applied to a model with ``shapes``.

    The message names the key, its value and what would be valid, e.g. ``method 'curlora':
    rank=5000 exceeds min(out, in)=64 of model.layers.0.self_attn.k_proj; valid: 1..64``.
    Only the (cheap) method object is built; no model, no adapter layers.
    """
    build_method(method_cfg).validate(shapes)
