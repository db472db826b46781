"""What a base model's config computes, without where the model came from.

Two bases with the same weights can still compute different things: ``rms_norm_eps``, the
rotary settings or the activation live in the config, not in any tensor. An adapter (and a
cached evaluation) is therefore tied to the config too, less the fields that only say where
the model came from (the same model saved in another folder, fetched at another commit,
named otherwise in its GGUF file, or whose ``config.json`` another transformers version
wrote).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from torch import nn

ORIGIN_FIELDS = frozenset({"_commit_hash", "transformers_version"})
"""Fields of a model config that name its origin; also any field ending in ``name_or_path``
(``_name_or_path``, and ``_model_name_or_path`` that a GGUF conversion adds)."""


def is_origin(field: str) -> bool:
    return field in ORIGIN_FIELDS or field.endswith("name_or_path")


def without_origin(node: Any) -> Any:
    """A config dict without the fields that name its origin, at every level (sub-configs
    too)."""
    if isinstance(node, dict):
        return {k: without_origin(v) for k, v in node.items() if not is_origin(str(k))}
    if isinstance(node, list):
        return [without_origin(v) for v in node]
    return node


def base_config_sha256(model: nn.Module) -> str | None:
    """sha256 of ``model.config.to_dict()`` without its origin fields (canonical JSON);
    None for a model without a Hugging Face config."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    text = json.dumps(without_origin(config.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
