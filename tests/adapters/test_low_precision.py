"""Adapters under a 16-bit backbone: float32 trainable tensors, updates that survive, and a
CURLoRA fast path that does not lose the adapter term to bias cancellation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curlora.adapters import CURLoRALinear, apply_adapter

TRAINED = ["curlora", "lora", "lora_paper", "osf", "full", "o_lora", "tinylora", "vera"]


def _train(model: nn.Module, input_ids: torch.Tensor, steps: int = 4) -> dict[str, torch.Tensor]:
    """A few AdamW steps on a fixed loss; returns each trainable tensor's total update."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=0.0)
    target = torch.linspace(-1, 1, model.config.vocab_size)
    for _ in range(steps):
        logits = model(input_ids=input_ids).logits.float()  # [B, T, vocab]
        loss = ((logits - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {n: (p.detach() - start[n]).float() for n, p in params.items()}


@pytest.mark.parametrize("name", TRAINED)
def test_adapters_train_in_float32_and_move_as_in_float32(
    name: str, make_model, method_cfg, input_ids
) -> None:
    # The same (bf16-representable) base weights both times: only the precision differs.
    bf16 = make_model().to(torch.bfloat16)
    fp32 = make_model().to(torch.bfloat16).float()
    for model in (fp32, bf16):
        apply_adapter(model, method_cfg(name))
    trainable = [(n, p) for n, p in bf16.named_parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for _, p in trainable), name
    moved_fp32, moved_bf16 = _train(fp32, input_ids), _train(bf16, input_ids)
    # Same direction and size of update (a bf16 tensor at ~0.2 would barely move: its
    # spacing there, 2⁻⁹ ≈ 0.002, swallows steps of lr = 1e-3).
    a = torch.cat([moved_fp32[n].flatten() for n in moved_fp32])
    b = torch.cat([moved_bf16[n].flatten() for n in moved_fp32])
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9
    assert 0.8 < float(b.norm() / a.norm()) < 1.25


def test_osf_keeps_projecting_gradients_after_the_upcast(make_model, method_cfg, input_ids):
    model = make_model().to(torch.bfloat16)
    apply_adapter(model, method_cfg("osf"))
    model(input_ids=input_ids).logits.float().pow(2).mean().backward()
    layer = model.get_submodule("model.layers.0.self_attn.q_proj")  # 32 × 32: U is square
    u0 = layer._osf_U_low_init["default"]  # spans the complement of the frozen directions
    grad = layer.osf_svd_params["default"]["U_low"].grad
    assert u0.dtype == grad.dtype == torch.float32 and grad.abs().sum() > 0
    # OSF's hook keeps only the part outside the frozen subspace: ∇ = U⁰ U⁰ᵀ ∇.
    torch.testing.assert_close(grad, u0 @ (u0.T @ grad))


def test_curlora_with_a_large_bias_in_bf16_keeps_the_adapter_term() -> None:
    torch.manual_seed(0)
    base = nn.Linear(64, 48).to(torch.bfloat16)
    with torch.no_grad():
        base.bias.fill_(20.0)  # a bias that swamps x Rᵀ in bf16's 8 significant bits
    layer = CURLoRALinear(base, rank=8, name="q")
    assert layer.U.dtype == torch.float32
    with torch.no_grad():
        layer.U.copy_(torch.randn(8, 8))
    x = torch.randn(5, 64).to(torch.bfloat16)
    _, r = layer.cur_factors()
    expected = x.double() @ r.double().T  # x Rᵀ in float64
    got = layer.adapter_input(x, layer.base_layer(x)).double()
    error = float((got - expected).norm() / expected.norm())
    assert error < 1e-3  # (base_out − b)[rows] in bf16 is ~10 % off at this bias
