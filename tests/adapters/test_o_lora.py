"""O-LoRA: one adapter per task, the current one trains, the penalty between their A's.

Source of the penalty: Wang et al. 2023 (arXiv 2310.14152) eq. 6 and the reference code
(github.com/cmnfriend/O-LoRA): λ₁ Σ |A_s A_tᵀ| + λ₂ (‖A_t‖ + ‖B_t‖).
"""

from __future__ import annotations

import pytest
import torch

from curlora.adapters import applied_method, apply_adapter, load_adapter, save_adapter

TASKS = ["pairs", "reviews", "moods"]  # the tasks method_cfg gives (conftest.py)

Q0 = "model.layers.0.self_attn.q_proj"


def _layers(model):
    return applied_method(model).adapter_layers(model)


def _set_a(model, values: dict[str, torch.Tensor]) -> None:
    """Every layer's A for each task in ``values`` (zeros in the unnamed layers)."""
    with torch.no_grad():
        for name, layer in _layers(model).items():
            for task, a in values.items():
                weight = layer.lora_A[task].weight
                weight.copy_(a if name == Q0 else torch.zeros_like(weight))


def test_one_adapter_per_task_and_only_the_current_one_trains(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("o_lora"))
    method = applied_method(model)
    layers = _layers(model)
    assert sorted(layers) == sorted(
        f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")
    )
    for task in TASKS:
        method.begin_task(model, task)
        for layer in layers.values():
            assert list(layer.active_adapters) == TASKS  # all active: earlier ones shape h
            for other in TASKS:
                for factor in (layer.lora_A[other], layer.lora_B[other]):
                    assert factor.weight.requires_grad == (other == task)
        assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        method.begin_task(model, "nope")


def test_penalty_is_zero_for_orthogonal_a_and_absent_on_the_first_task(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("o_lora"))
    method = applied_method(model)
    assert method.extra_loss(model) is None  # first task, λ₂ = 0: nothing to add
    eye = torch.eye(32)  # q_proj: in = 32, rank 4
    _set_a(model, {"pairs": eye[0:4], "reviews": eye[4:8], "moods": eye[8:12]})
    for task in TASKS[1:]:
        method.begin_task(model, task)
        assert method.extra_loss(model).item() == 0.0


def test_penalty_matches_a_hand_computation(make_model, method_cfg):
    model = make_model()
    apply_adapter(model, method_cfg("o_lora", rank=2, lambda_orth=0.5, lambda_l2=0.25))
    method = applied_method(model)
    a0 = torch.zeros(2, 32)
    a1 = torch.zeros(2, 32)
    a2 = torch.zeros(2, 32)
    a0[0, 0], a0[1, 1] = 1.0, 2.0
    a1[0, 0], a1[1, 0], a1[1, 1] = 3.0, 1.0, 1.0
    a2[0, 0], a2[1, 1] = -1.0, 1.0
    _set_a(model, {"pairs": a0, "reviews": a1, "moods": a2})
    with torch.no_grad():
        for layer in _layers(model).values():
            for task in TASKS:
                layer.lora_B[task].weight.zero_()
        _layers(model)[Q0].lora_B["moods"].weight[0, 0] = 4.0
    # A0 A1ᵀ = [[3, 1], [0, 2]]: Σ|·| = 6. λ₂ term: ‖A1‖ = √11, B1 = 0.
    method.begin_task(model, "reviews")
    expected = 0.5 * 6 + 0.25 * 11**0.5
    assert method.extra_loss(model).item() == pytest.approx(expected, rel=1e-6)
    # Task 3 sees both earlier A's: A0 A2ᵀ = [[-1, 0], [0, 2]] (3), A1 A2ᵀ = [[-3, 0],
    # [-1, 1]] (5); ‖A2‖ = √2, ‖B2‖ = 4.
    method.begin_task(model, "moods")
    expected = 0.5 * (3 + 5) + 0.25 * (2**0.5 + 4)
    assert method.extra_loss(model).item() == pytest.approx(expected, rel=1e-6)
    # Gradients reach the current A only (earlier A's are detached and frozen).
    method.extra_loss(model).backward()
    layer = _layers(model)[Q0]
    assert layer.lora_A["moods"].weight.grad is not None
    assert layer.lora_A["pairs"].weight.grad is None
    # ‖B‖ at B = 0 (every other layer): a zero subgradient, never NaN
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_save_and_load_keep_every_task_adapter(make_model, method_cfg, input_ids, tmp_path):
    model = make_model()
    apply_adapter(model, method_cfg("o_lora"))
    with torch.no_grad():
        for layer in _layers(model).values():
            for i, task in enumerate(TASKS):
                layer.lora_B[task].weight.normal_(generator=torch.Generator().manual_seed(i))
    expected = model(input_ids).logits
    save_adapter(model, tmp_path / "adapter")
    reloaded = make_model()
    load_adapter(reloaded, tmp_path / "adapter")
    torch.testing.assert_close(reloaded(input_ids).logits, expected, rtol=0, atol=0)


def test_tasks_must_name_each_adapter(method_cfg, tiny_config):
    from curlora.adapters import linear_shapes, validate_method

    shapes = linear_shapes(tiny_config)
    for bad in ([], ["a", "a"], ["has.dot"]):
        with pytest.raises(ValueError, match=r"tasks=.*must be a non-empty list of distinct"):
            validate_method(method_cfg("o_lora", tasks=bad), shapes)
    with pytest.raises(ValueError, match="lambda_orth"):
        validate_method(method_cfg("o_lora", lambda_orth=-1.0), shapes)
