"""adapter_state_dict / load_adapter_state_dict / save_adapter / load_adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from curlora.adapters import (
    adapter_state_dict,
    apply_adapter,
    load_adapter,
    load_adapter_state_dict,
    save_adapter,
)

ADAPTED = ["curlora", "lora", "lora_paper", "osf"]


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Random values in every trainable tensor, as if trained (U, B would otherwise be 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def test_state_keys_per_method(make_model, method_cfg):
    # CURLoRA's state is U plus integer indices, never C or R (C and R are re-gathered
    # from the frozen weight).
    keys = {}
    for name in [*ADAPTED, "head_only", "full"]:
        model = make_model()
        apply_adapter(model, method_cfg(name))
        keys[name] = set(adapter_state_dict(model))
    q = "model.layers.0.self_attn.q_proj"
    assert {k for k in keys["curlora"] if k.startswith(q)} == {
        f"{q}.U",
        f"{q}.col_idx",
        f"{q}.row_idx",
    }
    assert len(keys["curlora"]) == 3 * 6  # 3 tensors × (q, k, v) × 2 layers
    assert {k for k in keys["lora"] if k.startswith(q)} == {
        f"{q}.lora_A.default.weight",
        f"{q}.lora_B.default.weight",
    }
    assert {k for k in keys["lora_paper"] if k.startswith(q)} == {f"{q}.lora_A", f"{q}.lora_B"}
    # OSF: the trainable factors and PEFT's non-persistent frozen ones (U⁰, S⁰, V⁰, ...).
    osf_q = {k.removeprefix(q + ".") for k in keys["osf"] if k.startswith(q)}
    assert {f"osf_svd_params.default.{n}" for n in ("U_low", "S_low", "V_low")} <= osf_q
    assert {f"_osf_{n}_low_init.default" for n in ("U", "S", "V")} <= osf_q
    assert keys["head_only"] == set()
    assert keys["full"] == set(make_model().state_dict())
    assert not any("base_layer" in k for name in ADAPTED for k in keys[name])


@pytest.mark.parametrize("name", [*ADAPTED, "full"])
def test_load_state_dict_restores_outputs(name, make_model, method_cfg, input_ids):
    model = make_model()
    apply_adapter(model, method_cfg(name))
    perturb(model, 1)
    saved = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    expected = model(input_ids).logits
    perturb(model, 2)
    assert not torch.equal(model(input_ids).logits, expected)
    load_adapter_state_dict(model, saved)
    assert torch.equal(model(input_ids).logits, expected)


def test_load_state_dict_rejects_mismatches(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("curlora"))
    state = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    key = "model.layers.0.self_attn.q_proj.U"
    with pytest.raises(ValueError, match=r"1 missing \['model.layers.0.self_attn.q_proj.U'\]"):
        load_adapter_state_dict(model, {k: v for k, v in state.items() if k != key})
    with pytest.raises(ValueError, match="1 unexpected"):
        load_adapter_state_dict(model, {**state, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"q_proj.U has shape \(3, 3\), the model \(4, 4\)"):
        load_adapter_state_dict(model, {**state, key: torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="apply_adapter"):
        adapter_state_dict(make_model())


@pytest.mark.parametrize("name", [*ADAPTED, "head_only", "full"])
def test_save_then_load_is_bit_exact(name, make_model, method_cfg, input_ids, tmp_path):
    model = make_model()
    n = apply_adapter(model, method_cfg(name))
    perturb(model, 3)
    expected = model(input_ids).logits
    save_adapter(model, tmp_path / "ad", method_cfg(name))
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert config["name"] == name and "${" not in json.dumps(config)  # resolved
    fresh = make_model()
    assert load_adapter(fresh, tmp_path / "ad") == n
    assert torch.equal(fresh(input_ids).logits, expected)


def test_full_with_tied_embeddings_round_trips(
    make_model, method_cfg, input_ids, llama_config, tmp_path
):
    # Tied lm_head/embed_tokens share one tensor, which safetensors refuses to store twice.
    config = llama_config(tie_word_embeddings=True)
    model = make_model(config=config)
    apply_adapter(model, method_cfg("full"))
    perturb(model, 4)
    expected = model(input_ids).logits
    save_adapter(model, tmp_path, method_cfg("full"))
    fresh = make_model(seed=9, config=config)
    load_adapter(fresh, tmp_path)
    assert torch.equal(fresh(input_ids).logits, expected)
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight  # still tied


def test_curlora_checkpoint_is_small(make_model, method_cfg, tmp_path):
    # CURLoRA saves U plus integer indices: 6 matrices × (4² floats + 2·4 int64) = 6·(64 + 64) B.
    model = make_model()
    apply_adapter(model, method_cfg("curlora"))
    save_adapter(model, tmp_path, method_cfg("curlora"))
    size = (tmp_path / "adapter.safetensors").stat().st_size
    assert 6 * (64 + 64) <= size < 6 * (64 + 64) + 4096  # plus the safetensors header


def test_save_rejects_a_different_method_cfg(make_model, method_cfg, tmp_path):
    model = make_model()
    apply_adapter(model, method_cfg("curlora"))
    with pytest.raises(ValueError, match="is not the method applied"):
        save_adapter(model, tmp_path, method_cfg("curlora", rank=2))


CHILD = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)  # as the parent test (conftest.one_thread)
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM
    from curlora.adapters import load_adapter
    root = sys.argv[1]
    config = LlamaConfig.from_json_file(f"{root}/config.json")
    ids = load_file(f"{root}/ids.safetensors")["ids"]
    out = {}
    for name in sys.argv[2:]:
        model = LlamaForCausalLM(config).eval()
        model.load_state_dict(load_file(f"{root}/base.safetensors"))
        load_adapter(model, f"{root}/{name}")
        out[name] = model(ids).logits.contiguous()
    save_file(out, f"{root}/logits.safetensors")
    """
)


def test_fresh_process_reproduces_outputs_bit_for_bit(make_model, method_cfg, input_ids, tmp_path):
    # A fresh process that loads the adapter onto the same base model reproduces the
    # outputs bit for bit on CPU. The child rebuilds the base from saved weights, so any
    # per-process state (hash salts, RNG, SVD recomputation) would show up here.
    base = make_model()
    base.config.to_json_file(tmp_path / "config.json")
    save_file(base.state_dict(), tmp_path / "base.safetensors")
    save_file({"ids": input_ids}, tmp_path / "ids.safetensors")
    expected = {}
    for name in ADAPTED:
        model = make_model()
        apply_adapter(model, method_cfg(name))
        perturb(model, 5)
        expected[name] = model(input_ids).logits
        save_adapter(model, tmp_path / name, method_cfg(name))
    env = {**os.environ, "PYTHONHASHSEED": "random", "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), *ADAPTED],
        check=True,
        env=env,
        cwd=Path(__file__).parent,
        capture_output=True,
        timeout=300,
    )
    from safetensors.torch import load_file

    got = load_file(tmp_path / "logits.safetensors")
    for name in ADAPTED:
        assert torch.equal(got[name], expected[name]), name


@pytest.mark.parametrize("name", ADAPTED)
def test_an_adapter_refuses_a_base_it_was_not_trained_on(name, make_model, method_cfg, tmp_path):
    model = make_model(seed=0)
    apply_adapter(model, method_cfg(name))
    perturb(model, seed=1)
    save_adapter(model, tmp_path / "adapter")
    # Another base (other weights): C and R would be gathered from the wrong matrices.
    with pytest.raises(ValueError, match=r"does not fit this base model at layer model\.layers"):
        load_adapter(make_model(seed=1), tmp_path / "adapter")
    # The same weights in another dtype: named as such.
    with pytest.raises(ValueError, match=r"saved on a float32 weight.*bfloat16"):
        load_adapter(make_model(seed=0).to(torch.bfloat16), tmp_path / "adapter")
    # strict=False loads it anyway, with a warning.
    with pytest.warns(UserWarning, match="does not fit this base model"):
        load_adapter(make_model(seed=1), tmp_path / "adapter", strict=False)
    load_adapter(make_model(seed=0), tmp_path / "adapter")  # the right base: silent
