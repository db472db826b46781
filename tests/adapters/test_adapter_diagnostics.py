"""adapter_diagnostics: ‖ΔW‖_F / ‖W‖_F and factor norms per adapted layer."""

from __future__ import annotations

import pytest
import torch

from curlora.adapters import CURLoRALinear, adapter_diagnostics, apply_adapter
from curlora.adapters.base import lowrank_fro_norm


def randomise(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


@torch.no_grad()  # explicit references only; no graph needed
def test_curlora_delta_rel_and_u_norm_match_explicit(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("curlora"))
    diag = adapter_diagnostics(model)
    assert len(diag) == 2 * 6 and all(v == 0.0 for v in diag.values())  # U = 0 at start
    randomise(model)
    diag = adapter_diagnostics(model)
    for name, layer in model.named_modules():
        if isinstance(layer, CURLoRALinear):
            w = layer.base_layer.weight
            expected = torch.linalg.matrix_norm(layer.delta_weight().detach()) / w.norm()
            assert diag[f"adapter/{name}/delta_rel"] == pytest.approx(float(expected), rel=1e-5)
            assert diag[f"adapter/{name}/u_norm"] == pytest.approx(
                float(layer.U.detach().norm()), rel=1e-6
            )
            assert diag[f"adapter/{name}/delta_rel"] > 0


@torch.no_grad()  # explicit references only; no graph needed
def test_lora_delta_rel_matches_peft_delta_weight(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("lora"))
    randomise(model)
    diag = adapter_diagnostics(model)
    layer = model.model.layers[1].self_attn.v_proj
    delta = layer.get_delta_weight("default")  # PEFT's own ΔW = (α/r) B A
    expected = delta.norm() / layer.base_layer.weight.norm()
    assert diag["adapter/model.layers.1.self_attn.v_proj/delta_rel"] == pytest.approx(
        float(expected), rel=1e-5
    )
    assert {k.rsplit("/", 1)[1] for k in diag} == {"delta_rel", "a_norm", "b_norm"}


@torch.no_grad()  # explicit references only; no graph needed
def test_lora_paper_and_osf_delta_rel(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("lora_paper"))
    randomise(model)
    layer = model.model.layers[0].self_attn.q_proj
    expected = layer.delta_weight().norm() / layer.base_layer.weight.norm()
    got = adapter_diagnostics(model)["adapter/model.layers.0.self_attn.q_proj/delta_rel"]
    assert got == pytest.approx(float(expected), rel=1e-5)
    model = make_model()
    apply_adapter(model, method_cfg("osf"))
    assert max(adapter_diagnostics(model).values()) < 1e-6  # ΔW = 0 at creation
    randomise(model)
    layer = model.model.layers[0].self_attn.k_proj
    expected = layer.get_delta_weight("default").norm() / layer.base_layer.weight.norm()
    got = adapter_diagnostics(model)["adapter/model.layers.0.self_attn.k_proj/delta_rel"]
    assert got == pytest.approx(float(expected), rel=1e-4)


def test_head_only_and_full_report_nothing(make_model, method_cfg):
    for name in ("head_only", "full"):
        model = make_model()
        apply_adapter(model, method_cfg(name))
        assert adapter_diagnostics(model) == {}


def test_lowrank_norm_equals_direct_norm():
    gen = torch.Generator().manual_seed(0)
    p, q = torch.randn(30, 5, generator=gen), torch.randn(5, 40, generator=gen)
    assert lowrank_fro_norm(p, q) == pytest.approx(
        float((p.double() @ q.double()).norm()), rel=1e-10
    )
    p, q = torch.randn(30, 300, generator=gen), torch.randn(300, 40, generator=gen)  # direct branch
    assert lowrank_fro_norm(p, q) == pytest.approx(
        float((p.double() @ q.double()).norm()), rel=1e-10
    )
