"""Shared fixtures for the adapter tests: tiny random Llama models, the method YAMLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

METHOD_DIR = Path(__file__).resolve().parents[2] / "configs" / "method"
# The synthetic data config's tasks (O-LoRA builds one adapter per task).
TASKS = ["pairs", "reviews", "moods"]


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


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine
    spinning OpenMP workers make them slower by seconds; restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def llama_config() -> Callable[..., LlamaConfig]:
    """``llama_config(**overrides)``: the tiny config with some fields changed."""
    return tiny_llama_config


@pytest.fixture
def tiny_config() -> LlamaConfig:
    return tiny_llama_config()


@pytest.fixture
def make_model(tiny_config: LlamaConfig) -> Callable[..., LlamaForCausalLM]:
    """``make_model(seed=0, config=None)``: a fresh tiny Llama in eval mode, fixed weights."""

    def make(seed: int = 0, config: LlamaConfig | None = None) -> LlamaForCausalLM:
        torch.manual_seed(seed)
        return LlamaForCausalLM(config or tiny_config).eval()

    return make


@pytest.fixture
def input_ids() -> torch.Tensor:
    return torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(123))


@pytest.fixture
def method_cfg() -> Callable[..., DictConfig]:
    """``method_cfg(name, rank=4, alpha=2.0, seed=0, **overrides)``: the real YAML of
    ``configs/method/<name>.yaml`` as the ``method`` node of a root config holding the
    top-level ``rank``, ``alpha``, ``seed`` and ``tasks`` it interpolates."""

    def build(
        name: str, rank: Any = 4, alpha: Any = 2.0, seed: Any = 0, **overrides: Any
    ) -> DictConfig:
        method = OmegaConf.load(METHOD_DIR / f"{name}.yaml")
        for k, v in overrides.items():
            method[k] = v
        root = OmegaConf.create(
            {"rank": rank, "alpha": alpha, "seed": seed, "tasks": TASKS, "method": method}
        )
        return root.method

    return build
