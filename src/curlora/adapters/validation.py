"""Check a method config against a model's layer shapes before any weights load."""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from curlora import checks
from curlora.adapters.base import AdapterMethod, Shapes, module_shapes
from curlora.adapters.build import build_method

NAME = re.compile(r"[A-Za-z0-9_.-]+")
"""What a method's ``name`` may hold: it becomes part of run directory and metric names."""


def loaded_as_remote_code(config: PretrainedConfig) -> bool:
    """Whether ``config``'s class came from its repository's own code.

    transformers imports such a class only when the model source set ``trust_remote_code:
    true`` (``curlora.models.hub``), so the config carries the source's setting.
    """
    return type(config).__module__.startswith("transformers_modules.")


def linear_shapes(
    config: PretrainedConfig, trust_remote_code: bool | None = None
) -> dict[str, tuple[int, int]]:
    """(out, in) of every nn.Linear of the causal LM ``config`` describes, by module name.

    The model is built on the meta device: shapes only, no weights, no memory (about a
    second for Mistral-7B's config). ``trust_remote_code``: the model source's setting;
    None reads it from the config (:func:`loaded_as_remote_code`). Passed explicitly either
    way: left out, transformers would refuse a remote-code model, or prompt on a terminal.
    """
    if trust_remote_code is None:
        trust_remote_code = loaded_as_remote_code(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return module_shapes(model)


def validate_method(method_cfg: Any, shapes: Shapes) -> None:
    """Raise ValueError if ``method_cfg`` cannot be applied to a model with ``shapes``.

    The message names the key, its value and what would be valid, e.g. ``method 'curlora':
    rank=5000 exceeds min(out, in)=64 of model.layers.0.self_attn.k_proj; valid: 1..64``.
    Only the (cheap) method object is built; no model, no adapter layers.
    """
    method = build_method(method_cfg)
    validate_common(method)
    method.validate(shapes)


def validate_common(method: AdapterMethod) -> None:
    """The fields every method has (``AdapterMethod``): ``name`` and ``lr``."""
    if not (isinstance(method.name, str) and NAME.fullmatch(method.name)):
        raise ValueError(
            f"method: name={method.name!r} is not valid; valid: letters, digits, '_', '.' "
            "or '-' (it becomes part of run directory names)"
        )
    checks.check_real(
        "lr",
        method.lr,
        0.0,
        None,
        low_open=True,
        allow_none=True,
        context=f"method '{method.name}': ",
    )
