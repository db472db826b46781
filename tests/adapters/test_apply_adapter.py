"""apply_adapter on a tiny Llama for every method YAML in configs/method/."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft.tuners.lora import Linear as PeftLoraLinear
from peft.tuners.osf.layer import Linear as PeftOSFLinear

from curlora.adapters import (
    CURLoRALinear,
    LoRAPaperLinear,
    applied_method,
    apply_adapter,
    linear_shapes,
)
from curlora.adapters.curlora import CURLoRAMethod

METHOD_DIR = Path(__file__).resolve().parents[2] / "configs" / "method"
METHODS = sorted(p.stem for p in METHOD_DIR.glob("*.yaml"))

QKV = ("q_proj", "k_proj", "v_proj")
# LoRA with another init or DoRA: they start at the base only up to rounding.
LORA_VARIANTS = ("pissa", "mica", "olora", "dora", "milora")


@pytest.mark.parametrize("name", [m for m in METHODS if m not in ("osf", *LORA_VARIANTS)])
@pytest.mark.parametrize("attention_bias", [False, True])
def test_logits_equal_base_right_after_apply(
    name, attention_bias, make_model, method_cfg, input_ids, llama_config
):
    # At initialisation U = 0 (CURLoRA), B = 0 (both LoRAs): the adapted model is the base model.
    model = make_model(config=llama_config(attention_bias=attention_bias))
    base = model(input_ids).logits
    apply_adapter(model, method_cfg(name))
    assert torch.equal(model(input_ids).logits, base)


@pytest.mark.parametrize("name", LORA_VARIANTS)
def test_lora_variants_start_at_the_base(name, make_model, method_cfg, input_ids):
    # MiCA adds B·0 (exactly the base); PiSSA/OLoRA move components of W into B·A and leave
    # W − B·A in the base layer, DoRA rescales by ‖W‖/‖W‖: W rebuilt in float32 arithmetic.
    model = make_model()
    base = model(input_ids).logits
    apply_adapter(model, method_cfg(name))
    exact = applied_method(model).starts_at_base()
    assert exact == (name == "mica")  # only exact starts share a cached evaluation
    if exact:
        assert torch.equal(model(input_ids).logits, base)
    else:
        torch.testing.assert_close(model(input_ids).logits, base, rtol=0, atol=1e-4)


def test_pissa_takes_the_principal_and_mica_the_minor_directions(make_model, method_cfg):
    # Sources: PEFT's pissa_init (scale·B·A = top-r SVD part of W, W keeps the rest) and
    # mica_init (B = the r left singular vectors of the smallest singular values, A = 0,
    # B frozen).
    name = "model.layers.0.self_attn.q_proj"
    model = make_model()
    weight = model.get_submodule(name).weight.detach().clone()
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    apply_adapter(model, method_cfg("pissa"))
    b, a = applied_method(model).delta_factors(model.get_submodule(name))
    torch.testing.assert_close(b @ a, u[:, :4] @ torch.diag(s[:4]) @ vh[:4], rtol=0, atol=1e-5)

    model = make_model()
    apply_adapter(model, method_cfg("mica"))
    layer = model.get_submodule(name)
    b, a = layer.lora_B["default"].weight, layer.lora_A["default"].weight
    assert torch.equal(a, torch.zeros_like(a)) and a.requires_grad and not b.requires_grad
    # the minor left singular vectors, up to sign
    torch.testing.assert_close((b.T @ u[:, -4:]).abs(), torch.eye(4), rtol=0, atol=1e-5)


def test_osf_logits_equal_base_up_to_rounding(make_model, method_cfg, input_ids):
    # PEFT's OSF adds U S V − U⁰ S⁰ V⁰ as one 2r-wide product: zero in exact arithmetic,
    # float32 rounding in practice (PEFT does not guarantee bit equality).
    model = make_model()
    base = model(input_ids).logits
    apply_adapter(model, method_cfg("osf"))
    torch.testing.assert_close(model(input_ids).logits, base, rtol=0, atol=1e-5)


def test_in_place_and_layer_types(make_model, method_cfg):
    expected = {
        "curlora": CURLoRALinear,
        "lora_paper": LoRAPaperLinear,
        "lora": PeftLoraLinear,
        "osf": PeftOSFLinear,
    }
    for name, layer_type in expected.items():
        model = make_model()
        apply_adapter(model, method_cfg(name))
        for i in range(2):
            for p in QKV:
                assert isinstance(
                    model.get_submodule(f"model.layers.{i}.self_attn.{p}"), layer_type
                )
            assert (
                type(model.get_submodule(f"model.layers.{i}.self_attn.o_proj")) is torch.nn.Linear
            )
        assert applied_method(model).name == name


def test_trainable_counts_follow_the_formulas(make_model, method_cfg, tiny_config):
    # Sources: the CURLoRA paper (arXiv 2408.14572; k² per matrix); LoRA r·(in + out) per
    # matrix; OSF t·(out + in + 1) with t = min(out, in) − effective_rank (PEFT's U_low,
    # V_low, S_low); tiny model: q 32×32, k 16×32, v 16×32, 2 layers.
    qkv = [(32, 32), (16, 32), (16, 32)] * 2
    expected = {
        "curlora": 4**2 * 6,
        "lora": sum(4 * (o + i) for o, i in qkv),
        "lora_paper": sum(4 * (o + i) for o, i in qkv),
        "pissa": sum(4 * (o + i) for o, i in qkv),
        "corda": sum(4 * (o + i) for o, i in qkv),
        "dora": sum(4 * (o + i) + o for o, i in qkv),  # + DoRA's magnitude, one per row
        "mica": sum(4 * i for o, i in qkv),  # A only: B is W's frozen minor vectors
        # O-LoRA: one task's adapter trains at a time, on q and v only (its paper's choice)
        "o_lora": sum(4 * (o + i) for o, i in qkv[0::3] + qkv[2::3]),
        "vera": sum(4 + o for o, i in qkv),  # λ_d (r) + λ_b (out) (Kopiczko et al. 2024)
        "tinylora": 4**2 * 6,  # v with u = r² entries per matrix: CURLoRA's k² exactly
        "osf": sum((min(o, i) // 2) * (o + i + 1) for o, i in qkv),
        "head_only": 0,
    }
    shapes = linear_shapes(tiny_config)
    for name, count in expected.items():
        model = make_model()
        cfg = method_cfg(name)
        assert apply_adapter(model, cfg) == count, name
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count
        assert applied_method(model).num_trainable(shapes) == count


def test_full_trains_everything_head_only_nothing(make_model, method_cfg):
    model = make_model()
    total = sum(p.numel() for p in model.parameters())
    assert apply_adapter(model, method_cfg("full")) == total
    assert all(p.requires_grad for p in model.parameters())
    model = make_model()
    for p in model.parameters():
        p.requires_grad_(True)
    assert apply_adapter(model, method_cfg("head_only")) == 0
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", ["curlora", "lora", "lora_paper", "osf"])
def test_only_adapter_parameters_train(name, make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg(name))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    markers = {"curlora": ".U", "lora": ".lora_", "lora_paper": ".lora_", "osf": ".osf_svd_params."}
    assert trainable and all(markers[name] in n for n in trainable)
    assert all(any(f".{p}." in n for p in QKV) for n in trainable)


@pytest.mark.parametrize("name", ["curlora", "lora", "lora_paper", "osf", "full"])
def test_a_training_step_changes_the_adapter_and_only_it(name, make_model, method_cfg, input_ids):
    # lr 0.1, one SGD step on the LM loss; LoRA's B starts at 0, so its first step moves B
    # only, and the logits change from the second step on (two steps here for all).
    model = make_model()
    apply_adapter(model, method_cfg(name))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits0 = model(input_ids).logits.detach()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(input_ids, labels=input_ids).loss.backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert not torch.allclose(model(input_ids).logits, logits0)


def test_same_seed_same_curlora_indices_different_layers_differ(make_model, method_cfg):
    idx = []
    for seed_state in (0, 1234):
        torch.manual_seed(seed_state)  # the global RNG must not matter
        model = make_model()
        apply_adapter(model, method_cfg("curlora", rank=8))
        idx.append([m.col_idx.clone() for m in model.modules() if isinstance(m, CURLoRALinear)])
    assert all(torch.equal(a, b) for a, b in zip(*idx, strict=True))
    # q_proj of layers 0 and 1 are both 32×32: distinct (seed, name) draws differ.
    assert not torch.equal(idx[0][0], idx[0][3])


def test_lora_init_is_seeded_and_leaves_the_global_rng_alone(make_model, method_cfg):
    weights = []
    for seed in (0, 0, 1):
        model = make_model()
        torch.manual_seed(77)
        apply_adapter(model, method_cfg("lora", seed=seed))
        after = torch.rand(3)
        torch.manual_seed(77)
        assert torch.equal(after, torch.rand(3))  # as if apply_adapter had not run
        weights.append(model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.detach())
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_lora_matches_peft_semantics(make_model, method_cfg):
    # PEFT: scaling = lora_alpha / r (standard LoRA); A (r × in) kaiming-uniform over in.
    # The YAML sets lora_alpha = alpha · r, so the scaling is the top-level alpha (here 2).
    model = make_model()
    apply_adapter(model, method_cfg("lora", rank=4, alpha=2.0))
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.lora_alpha["default"] == 8.0
    assert layer.scaling["default"] == 2.0
    assert layer.lora_A["default"].weight.abs().max() <= 1 / 32**0.5  # bound 1/√in


def test_no_match_lists_existing_linears(make_model, method_cfg):
    model = make_model()
    with pytest.raises(
        ValueError, match=r"'query' matches no nn.Linear.*k_proj, lm_head, o_proj, q_proj"
    ):
        apply_adapter(model, method_cfg("curlora", target_modules=["query"]))
    with pytest.raises(ValueError, match=r"'qproj' matches no nn\.Linear"):
        apply_adapter(model, method_cfg("lora", target_modules=["q_proj", "qproj"]))
    assert applied_method(model) is None  # nothing changed
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear


def test_rank_too_large_fails_before_any_change(make_model, method_cfg):
    model = make_model()
    with pytest.raises(
        ValueError, match=r"rank=17 exceeds min\(out, in\)=16 of model.layers.0.self_attn.k_proj"
    ):
        apply_adapter(model, method_cfg("curlora", rank=17))
    assert all(p.requires_grad for p in model.parameters())


def test_apply_twice_is_refused(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("curlora"))
    with pytest.raises(ValueError, match="already has method 'curlora'"):
        apply_adapter(model, method_cfg("lora"))


def test_method_object_is_accepted(make_model):
    model = make_model()
    n = apply_adapter(model, CURLoRAMethod(rank=2, target_modules=["o_proj"]))
    assert n == 2 * 2**2


@pytest.mark.parametrize("name", ["curlora", "lora", "lora_paper", "osf"])
def test_training_is_reproducible_under_deterministic_algorithms(
    name, make_model, method_cfg, input_ids
):
    # configs/train.yaml sets deterministic: true (torch.use_deterministic_algorithms):
    # no adapter op may raise under it, and two identical runs give identical weights.
    def run() -> dict[str, torch.Tensor]:
        model = make_model()
        apply_adapter(model, method_cfg(name))
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(2):
            opt.zero_grad()
            model(input_ids, labels=input_ids).loss.backward()
            opt.step()
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = run(), run()
    finally:
        torch.use_deterministic_algorithms(before)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("k", [16, 24])
def test_vera_is_parameter_matched_to_curlora_on_smollm2(k, method_cfg):
    """Within 2× of CURLoRA's k² per matrix at the paper's ranks 16 and 24 on SmolLM2-135M's
    q/k/v (q 576 × 576, k and v 192 × 576 per layer, from its config). VeRA's λ_b alone is
    out = 960 per layer, so at k = 8 (192 for CURLoRA) no VeRA rank matches: README."""
    from curlora.adapters import build_method

    qkv = [(576, 576), (192, 576), (192, 576)]
    shapes = {f"l.self_attn.{p}": shape for p, shape in zip(QKV, qkv, strict=True)}
    cur = build_method(method_cfg("curlora", rank=k)).num_trainable(shapes)
    vera = build_method(method_cfg("vera", rank=k)).num_trainable(shapes)
    assert (cur, vera) == (3 * k * k, 960 + 3 * k)
    assert 0.5 <= vera / cur <= 2


@pytest.mark.parametrize("k", [8, 16, 24])
def test_tinylora_is_parameter_matched_to_curlora_at_every_rank(k, method_cfg):
    """u = k² entries of v per matrix against CURLoRA's k × k U: the same count at every
    rank (SmolLM2-135M's q/k/v shapes, as above)."""
    from curlora.adapters import build_method

    qkv = [(576, 576), (192, 576), (192, 576)]
    shapes = {f"l.self_attn.{p}": shape for p, shape in zip(QKV, qkv, strict=True)}
    cur = build_method(method_cfg("curlora", rank=k)).num_trainable(shapes)
    tiny = build_method(method_cfg("tinylora", rank=k)).num_trainable(shapes)
    assert cur == tiny == 3 * k * k


def test_tinylora_adapts_along_the_principal_directions(make_model, method_cfg):
    # Source: LoRA-XS / PEFT's TinyLoraLayer._init_svd: A = √S_r V_rᵀ, B = U_r √S_r from the
    # truncated SVD of W, frozen; ΔW = B R A with R = Σ v_i P_i the only thing that trains.
    name = "model.layers.0.self_attn.q_proj"
    model = make_model()
    weight = model.get_submodule(name).weight.detach().clone()
    apply_adapter(model, method_cfg("tinylora"))
    layer = model.get_submodule(name)
    a, b = layer.tinylora_A["default"], layer.tinylora_B["default"]
    torch.testing.assert_close(b @ a, _rank_r(weight, 4), rtol=0, atol=1e-5)
    method = applied_method(model)
    (_, v), *_ = method.trainable_parameters(model)
    with torch.no_grad():
        v.copy_(torch.linspace(-1, 1, v.numel()))
    p, q = method.delta_factors(layer)
    torch.testing.assert_close(p @ q, layer.get_delta_weight("default"), rtol=1e-5, atol=1e-6)
    assert not a.requires_grad and not b.requires_grad


def _rank_r(weight: torch.Tensor, r: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    return u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
