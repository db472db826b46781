"""Shared fixtures for the adapter tests: tiny random Llama models, the method YAMLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from adapter_helpers import METHOD_DIR, tiny_llama_config
from omegaconf import DictConfig, OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM


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
    top-level ``rank``, ``alpha`` and ``seed`` it interpolates."""

    def build(
        name: str, rank: Any = 4, alpha: Any = 2.0, seed: Any = 0, **overrides: Any
    ) -> DictConfig:
        method = OmegaConf.load(METHOD_DIR / f"{name}.yaml")
        for k, v in overrides.items():
            method[k] = v
        root = OmegaConf.create({"rank": rank, "alpha": alpha, "seed": seed, "method": method})
        return root.method

    return build
