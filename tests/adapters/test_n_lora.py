"""N-LoRA: one adapter per task (O-LoRA's), an ℓ1 penalty on the current task's update.

Source: Yang et al. 2025 (arXiv 2410.10179): loss = task loss + λ₁ ‖ΔW_t‖₁ with
ΔW_t = s · B_t A_t; gradients by hand below.
"""

from __future__ import annotations

import pytest
import torch

from curlora.adapters import applied_method, apply_adapter, linear_shapes, validate_method
from curlora.adapters.n_lora import l1_update_penalty

Q0 = "model.layers.0.self_attn.q_proj"


def test_penalty_and_gradient_on_a_2x2_case() -> None:
    # A = [[1, 0], [0, 2]], B = [[1, -1], [0, 1]], s = 3: B A = [[1, -2], [0, 2]],
    # ‖s B A‖₁ = 3 · 5 = 15. sign(B A) = [[1, -1], [0, 1]];
    # ∂/∂A = s Bᵀ sign = 3 · [[1, -1], [-1, 2]]; ∂/∂B = s sign Aᵀ = 3 · [[1, -2], [0, 2]].
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    b = torch.tensor([[1.0, -1.0], [0.0, 1.0]], requires_grad=True)
    penalty = l1_update_penalty(a, b, 3.0)
    assert penalty.item() == 15.0
    penalty.backward()
    assert torch.equal(a.grad, 3.0 * torch.tensor([[1.0, -1.0], [-1.0, 2.0]]))
    assert torch.equal(b.grad, 3.0 * torch.tensor([[1.0, -2.0], [0.0, 2.0]]))


def test_the_penalty_is_the_current_tasks_update_summed_over_layers(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("n_lora", rank=2, alpha=1.0, lambda_l1=0.5))
    method = applied_method(model)
    layers = method.adapter_layers(model)
    # B = 0 at the start of every task: no update, no penalty (and a zero subgradient).
    assert method.extra_loss(model).item() == 0.0
    with torch.no_grad():
        for layer in layers.values():
            for task in ("pairs", "reviews"):
                layer.lora_A[task].weight.zero_()
        # Task 1's adapter moved in q_proj of layer 0; task 2's in the same place.
        layers[Q0].lora_A["pairs"].weight[0, 0] = 2.0
        layers[Q0].lora_B["pairs"].weight[1, 0] = 3.0  # ΔW_1 = 6 at (1, 0)
        layers[Q0].lora_A["reviews"].weight[1, 5] = -1.0
        layers[Q0].lora_B["reviews"].weight[0, 1] = 4.0  # ΔW_2 = −4 at (0, 5)
    assert method.extra_loss(model).item() == pytest.approx(0.5 * 6.0)  # s = α = 1
    method.begin_task(model, "reviews")  # only the current task's update counts
    assert method.extra_loss(model).item() == pytest.approx(0.5 * 4.0)
    method.extra_loss(model).backward()
    assert layers[Q0].lora_A["pairs"].weight.grad is None  # frozen: no gradient


def test_a_negative_lambda_is_refused(method_cfg, tiny_config):
    with pytest.raises(ValueError, match=r"lambda_l1=-1\.0 is not valid"):
        validate_method(method_cfg("n_lora", lambda_l1=-1.0), linear_shapes(tiny_config))
