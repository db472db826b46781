"""Fixtures for the metric tests: a random tiny Llama built from a config (no download)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 61  # odd sizes catch shape mix-ups between vocabulary and sequence dimensions


@pytest.fixture(scope="session")
def tiny_lm() -> LlamaForCausalLM:
    """2-layer Llama, hidden 32, random weights from a fixed seed; left in eval mode."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return model.eval()


@pytest.fixture(scope="session")
def corpus_ids() -> torch.Tensor:
    """45 random token ids: 44 predicted tokens, not a multiple of the window sizes used."""
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (45,), generator=generator)
