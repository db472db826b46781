"""linear_shapes / validate_method / the method YAMLs, without any weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from transformers import MistralConfig

from curlora.adapters import build_method, linear_shapes, module_shapes, validate_method

METHOD_DIR = Path(__file__).resolve().parents[2] / "configs" / "method"
METHODS = sorted(p.stem for p in METHOD_DIR.glob("*.yaml"))


def mistral_7b_config() -> MistralConfig:
    # Source: Mistral-7B-v0.1 config.json (hidden 4096, 32 layers, 32 heads, 8 KV heads,
    # intermediate 14336, vocab 32000).
    return MistralConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=32000,
    )


def test_linear_shapes_match_the_real_model(make_model, tiny_config):
    assert linear_shapes(tiny_config) == module_shapes(make_model())


def test_mistral_7b_curlora_count_is_the_papers_24576(method_cfg):
    # Source: the CURLoRA paper (arXiv 2408.14572): Mistral-7B, q/k/v, rank 16
    # -> 3 · 32 · 16² = 24,576 trainable parameters. Built on the meta device: no weights.
    shapes = linear_shapes(mistral_7b_config())
    assert shapes["model.layers.0.self_attn.q_proj"] == (4096, 4096)
    assert shapes["model.layers.0.self_attn.k_proj"] == (1024, 4096)  # 8 KV heads × 128
    cfg = method_cfg("curlora", rank=16)
    validate_method(cfg, shapes)
    assert build_method(cfg).num_trainable(shapes) == 24_576
    # LoRA at the same rank for contrast: 16·(in + out) per matrix = 16·(8192 + 5120 + 5120)
    # per layer -> 9,437,184 (37.7 MB, i.e. about 38 MB, in fp32).
    assert build_method(method_cfg("lora", rank=16)).num_trainable(shapes) == 9_437_184


def test_rank_error_names_key_value_module_and_valid_range(method_cfg, tiny_config):
    # Tiny model: k_proj and v_proj are 16 × 32, the binding limit.
    shapes = linear_shapes(tiny_config)
    msg = "rank=5000 exceeds min(out, in)=16 of model.layers.0.self_attn.k_proj; valid: 1..16"
    with pytest.raises(ValueError, match=re.escape(msg)):
        validate_method(method_cfg("curlora", rank=5000), shapes)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=rf"rank={bad!r} is not valid"):
            validate_method(method_cfg("curlora", rank=bad), shapes)
    with pytest.raises(ValueError, match=r"rank=0 is not valid; valid: an integer ≥ 1"):
        validate_method(method_cfg("lora", rank=0), shapes)


@pytest.mark.parametrize(
    ("name", "override", "pattern"),
    [
        (
            "curlora",
            {"sampling": "inverse"},
            r"sampling='inverse'.*'inverted', 'inverted_smoothed'",
        ),
        (
            "curlora",
            {"dropout": -0.1},
            r"dropout=-0.1 is not valid; valid: a number in \[0.0, 1.0\)",
        ),
        ("lora", {"dropout": 1.0}, r"dropout=1.0 is not valid"),
        ("lora_paper", {"dropout": -1}, r"dropout=-1 is not valid"),
        ("curlora", {"replace": "yes"}, r"replace='yes'"),
        ("curlora", {"seed": -1}, r"seed=-1 is not valid"),
        ("lora", {"alpha": float("nan")}, r"alpha=nan is not valid; valid: a finite number"),
        ("curlora", {"target_modules": []}, r"target_modules=\[\] must be a non-empty list"),
        (
            "curlora",
            {"target_modules": "q_proj"},
            r"target_modules='q_proj' must be a non-empty list",
        ),
        (
            "lora",
            {"target_modules": ["attn"]},
            r"'attn' matches no nn\.Linear.*down_proj, gate_proj",
        ),
        ("osf", {"target_modules": ["query"]}, r"'query' matches no nn\.Linear"),
        ("osf", {"effective_rank": 16}, r"effective_rank=16 resolves to 16 for .*k_proj.*1\.\.15"),
        ("osf", {"effective_rank": 1.0}, r"effective_rank=1.0 resolves to 32 for .*q_proj"),
        ("osf", {"effective_rank": 0}, r"effective_rank=0 is not valid"),
        ("osf", {"effective_rank": 0.01}, r"effective_rank=0.01 resolves to 0"),
        ("osf", {"effective_rank": 2.5}, r"effective_rank=2.5 is not valid"),
        ("curlora", {"rnak": 4}, r"unknown key\(s\) \['rnak'\]; valid keys: \['alpha', 'dropout'"),
        ("full", {"dropout": 0.1}, r"method 'full': unknown key\(s\) \['dropout'\]"),
    ],
)
def test_invalid_configs_are_named(name, override, pattern, method_cfg, tiny_config):
    with pytest.raises(ValueError, match=pattern):
        validate_method(method_cfg(name, **override), linear_shapes(tiny_config))


def test_bad_targets_and_unresolvable_configs():
    shapes = {"a.q_proj": (4, 4)}
    with pytest.raises(ValueError, match="has no _target_"):
        validate_method({"name": "x"}, shapes)
    with pytest.raises(ValueError, match="is not an AdapterMethod subclass"):
        validate_method(
            {"_target_": "curlora.adapters.validation.PretrainedConfig", "name": "x"}, shapes
        )
    with pytest.raises(ValueError, match=r"_target_='os\.system' is refused"):
        validate_method({"_target_": "os.system", "name": "x"}, shapes)
    with pytest.raises(ValueError, match="cannot be imported"):
        validate_method({"_target_": "curlora.adapters.nope.Method"}, shapes)
    standalone = OmegaConf.load(METHOD_DIR / "curlora.yaml")  # ${rank} has nothing to read
    with pytest.raises(ValueError, match="cannot be resolved"):
        validate_method(standalone, shapes)


@pytest.mark.parametrize("name", METHODS)
def test_every_yaml_validates_on_the_tiny_model(name, method_cfg, tiny_config):
    # The YAML conventions (keys, comments, name) are in tests/contract/test_conventions.py.
    validate_method(method_cfg(name), linear_shapes(tiny_config))


def test_name_and_lr_are_checked_for_every_method(method_cfg, tiny_config):
    shapes = linear_shapes(tiny_config)
    renamed = method_cfg("lora")
    renamed.name = "my run"
    with pytest.raises(ValueError, match=r"name='my run' is not valid"):
        validate_method(renamed, shapes)
    for bad in (0.0, -1e-3, "fast", float("inf")):
        with pytest.raises(ValueError, match=rf"method 'lora': lr={bad!r} is not valid"):
            validate_method(method_cfg("lora", lr=bad), shapes)
    validate_method(method_cfg("lora", lr=None), shapes)  # null: optimizer.lr decides


RANKED = [n for n in METHODS if "rank" in OmegaConf.load(METHOD_DIR / f"{n}.yaml")]


@pytest.mark.parametrize("name", RANKED)
def test_rank_and_alpha_come_from_the_top_level(name, method_cfg):
    # Every method YAML with a rank reads the top-level rank and alpha (one sweep axis for
    # all); alpha is either the update scale itself or lora_alpha = alpha · r (PEFT's
    # scale lora_alpha / r is then alpha: README "How alpha maps").
    raw = OmegaConf.load(METHOD_DIR / f"{name}.yaml")
    assert raw._get_node("rank")._value() == "${rank}"
    method = build_method(method_cfg(name, rank=7, alpha=3.5))
    assert method.rank == 7
    if "alpha" not in raw:
        return
    alpha = raw._get_node("alpha")._value()
    assert alpha in ("${alpha}", "${curlora.mul:${alpha},${rank}}"), alpha
    assert method.alpha == (3.5 if alpha == "${alpha}" else 3.5 * 7)


def test_to_config_round_trips(method_cfg):
    for name in METHODS:
        method = build_method(method_cfg(name))
        assert build_method(method.to_config()) == method
