"""Helpers shared by the adapter tests (imported by name: ``conftest`` is ambiguous when
several test folders have one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import LlamaConfig

METHOD_DIR = Path(__file__).resolve().parents[2] / "configs" / "method"
METHODS = sorted(p.stem for p in METHOD_DIR.glob("*.yaml"))


def tiny_llama_config(**overrides: Any) -> LlamaConfig:
    """2 layers, hidden 32, 4 heads, 2 KV heads: q_proj 32×32, k_proj/v_proj 16×32 (GQA)."""
    kwargs: dict[str, Any] = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)
