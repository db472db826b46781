"""rsLoRA: PEFT's LoRA with the rank-stabilised scale α/√r, and how the top-level alpha maps."""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf
from tests.adapters.conftest import METHOD_DIR

from curlora.adapters import applied_method, apply_adapter, build_method
from curlora.adapters.lora import ADAPTER_NAME


def test_the_update_is_alpha_over_sqrt_r_times_b_a_by_hand(make_model, method_cfg) -> None:
    # Source: Kalajdzievski 2023 (arXiv 2312.03732) Eq. 3: γ_r = α/√r. Top-level α = 2,
    # r = 4: lora_alpha = 2 (rslora.yaml), γ = 2/√4 = 1.0 (LoRA's α/r would be 0.5).
    model = make_model()
    apply_adapter(model, method_cfg("rslora", rank=4, alpha=2.0))
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.lora_alpha[ADAPTER_NAME] == 2.0
    assert layer.scaling[ADAPTER_NAME] == 1.0
    # The forward pass by hand: y = x Wᵀ + γ · x Aᵀ Bᵀ with B set to a known value.
    b = layer.lora_B[ADAPTER_NAME].weight  # (out 32, r 4), zeros at init
    with torch.no_grad():
        b.copy_(torch.linspace(-1.0, 1.0, b.numel()).view_as(b))
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    a, w = layer.lora_A[ADAPTER_NAME].weight, layer.base_layer.weight
    torch.testing.assert_close(layer(x), x @ w.T + 1.0 * (x @ a.T @ b.T))
    method = applied_method(model)
    p, q = method.delta_factors(layer)
    torch.testing.assert_close(p @ q, 1.0 * b @ a)


def test_other_ranks_scale_by_one_over_sqrt_r(make_model, method_cfg) -> None:
    for rank in (1, 2, 8):
        model = make_model()
        apply_adapter(model, method_cfg("rslora", rank=rank, alpha=3.0))
        scale = model.model.layers[0].self_attn.q_proj.scaling[ADAPTER_NAME]
        assert math.isclose(scale, 3.0 / math.sqrt(rank), rel_tol=1e-12)


def test_alpha_maps_to_lora_alpha_and_sqrt_r_normalisation_would_be_lora(
    make_model, method_cfg, input_ids
) -> None:
    raw = OmegaConf.load(METHOD_DIR / "rslora.yaml")
    assert raw._get_node("alpha")._value() == "${alpha}"  # lora_alpha = the top-level alpha
    # With lora_alpha = α·√r instead, the scale would be α at every rank: LoRA's (whose
    # YAML sets lora_alpha = α·r). Same seed, same A: the same model up to rounding.
    rs, lora = make_model(), make_model()
    apply_adapter(rs, method_cfg("rslora", rank=4, alpha=2.0 * math.sqrt(4)))
    apply_adapter(lora, method_cfg("lora", rank=4, alpha=2.0))
    for model in (rs, lora):
        for name, p in model.named_parameters():
            if "lora_B" in name:
                with torch.no_grad():
                    p.fill_(0.01)
    assert rs.model.layers[0].self_attn.q_proj.scaling[ADAPTER_NAME] == 2.0
    torch.testing.assert_close(rs(input_ids).logits, lora(input_ids).logits)


def test_it_is_lora_in_everything_else(method_cfg, tiny_config) -> None:
    from curlora.adapters import linear_shapes

    shapes = linear_shapes(tiny_config)
    rs, lora = build_method(method_cfg("rslora")), build_method(method_cfg("lora"))
    assert rs.num_trainable(shapes) == lora.num_trainable(shapes)
    assert rs.starts_at_base() and rs.supports_quantization
