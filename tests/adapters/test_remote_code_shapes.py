"""A model whose repository ships its own code (``trust_remote_code: true``) is validated.

The repository here is a local folder: a Llama subclass under a new ``model_type`` that
transformers does not know, so only the folder's own code can build it. Its dynamic
modules are copied under ``tmp_path``, not Hugging Face's shared cache.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import dynamic_module_utils

from curlora.adapters.validation import linear_shapes, loaded_as_remote_code
from curlora.models.backbone import load_model_config

CONFIGURATION = """
from transformers import LlamaConfig


class ProbeConfig(LlamaConfig):
    model_type = "curlora_remote_probe"
"""
MODELING = """
from transformers import LlamaForCausalLM

from .configuration_probe import ProbeConfig


class ProbeForCausalLM(LlamaForCausalLM):
    config_class = ProbeConfig
"""
SIZES = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 64}  # fmt: skip


@pytest.fixture
def remote_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    repo = tmp_path / "probe_repo"
    repo.mkdir()
    (repo / "configuration_probe.py").write_text(CONFIGURATION)
    (repo / "modeling_probe.py").write_text(MODELING)
    auto_map = {"AutoConfig": "configuration_probe.ProbeConfig",
                "AutoModelForCausalLM": "modeling_probe.ProbeForCausalLM"}  # fmt: skip
    config = {"model_type": "curlora_remote_probe", "auto_map": auto_map, **SIZES}
    (repo / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the modules folder is appended
    yield repo
    for name in [n for n in sys.modules if n.startswith("transformers_modules")]:
        del sys.modules[name]


def test_a_trusted_remote_code_model_gets_its_shapes(remote_repo: Path, tmp_path: Path) -> None:
    model_cfg = {
        "_target_": "curlora.models.hub.HubModel",
        "name_or_path": str(remote_repo),
        "trust_remote_code": True,
    }
    config = load_model_config(model_cfg, tmp_path)
    assert loaded_as_remote_code(config)
    shapes = linear_shapes(config)  # before: transformers refused (or prompted) here
    assert shapes["model.layers.0.self_attn.k_proj"] == (8, 16)  # 1 kv head of dim 8
    assert shapes["model.layers.0.mlp.up_proj"] == (32, 16)


def test_the_default_stays_off(remote_repo: Path, tmp_path: Path) -> None:
    """Without the config's opt-in nothing from the folder runs (HubModel's default)."""
    model_cfg = {"_target_": "curlora.models.hub.HubModel", "name_or_path": str(remote_repo)}
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model_config(model_cfg, tmp_path)
    assert not (tmp_path / "modules").exists()


def test_a_library_config_is_not_remote_code() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(**SIZES)
    assert not loaded_as_remote_code(config)
    assert linear_shapes(config)["model.layers.0.self_attn.q_proj"] == (16, 16)
