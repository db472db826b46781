"""MiLoRA: B·A starts as W's r minor singular components, the base keeps the principal rest.

Source: Wang et al. 2025 (arXiv 2406.09044), its initialisation: W_p = U_p Σ_p V_pᵀ,
A_m = √Σ_m V_mᵀ, B_m = U_m √Σ_m, so W_p + B_m A_m = W.
"""

from __future__ import annotations

import pytest
import torch

from curlora.adapters import applied_method, apply_adapter
from curlora.adapters.lora import ADAPTER_NAME
from curlora.adapters.milora import minor_factors


def test_hand_computed_diagonal_case() -> None:
    # W = diag(3, 2, 1): singular values 3 > 2 > 1 with the standard basis as vectors. The
    # minor rank-1 part is 1 · e₃e₃ᵀ, the principal rest diag(3, 2, 0). Scale s = 2 is
    # divided out of Σ_m: s · B A must still be e₃e₃ᵀ, and A = ±√(1/2) e₃ᵀ.
    w = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    a, b, principal = minor_factors(w, rank=1, scaling=2.0)
    minor = torch.zeros(3, 3, dtype=torch.float64)
    minor[2, 2] = 1.0
    assert torch.allclose(2.0 * b @ a, minor, atol=1e-12)
    assert torch.allclose(principal, torch.diag(torch.tensor([3.0, 2.0, 0.0])).double(), atol=1e-12)
    assert torch.allclose(a.abs(), torch.tensor([[0.0, 0.0, 0.5**0.5]]).double(), atol=1e-12)


def test_base_plus_adapter_is_w_and_the_adapter_spans_the_minor_components(
    make_model, method_cfg
) -> None:
    original = {n: p.detach().clone() for n, p in make_model().named_parameters()}
    model = make_model()
    rank = 4
    apply_adapter(model, method_cfg("milora", rank=rank, alpha=2.0))
    layers = applied_method(model).adapter_layers(model)
    assert layers  # q, k, v of both layers
    for name, layer in layers.items():
        w = original[f"{name}.weight"].double()  # (out, in)
        s = layer.scaling[ADAPTER_NAME]
        assert s == pytest.approx(2.0)  # lora_alpha = α·r, scale α (the YAML's mapping)
        delta = s * (layer.lora_B[ADAPTER_NAME].weight @ layer.lora_A[ADAPTER_NAME].weight)
        base = layer.base_layer.weight.double()
        assert torch.allclose(base + delta.double(), w, atol=1e-5)  # W_p + s·B A = W (fp32)
        sigma = torch.linalg.svdvals(w)  # descending
        # The adapter's singular values are W's r smallest; the base's are W's others
        # (and r zeros).
        assert torch.allclose(torch.linalg.svdvals(delta.double())[:rank], sigma[-rank:], atol=1e-5)
        assert torch.allclose(torch.linalg.svdvals(base)[:-rank], sigma[:-rank], atol=1e-5)
        # Its column space is orthogonal to W's principal left singular vectors.
        u = torch.linalg.svd(w).U[:, : len(sigma) - rank]
        assert (u.T @ delta.double()).abs().max() < 1e-5


def test_a_rank_above_min_out_in_is_refused(make_model, method_cfg) -> None:
    # k_proj/v_proj of the tiny model are 16 × 32: at most 16 singular components.
    with pytest.raises(ValueError, match=r"rank=17 exceeds min\(out, in\)=16"):
        apply_adapter(make_model(), method_cfg("milora", rank=17))
