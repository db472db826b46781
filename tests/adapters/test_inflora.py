"""InfLoRA: a branch per task, its input factor fixed off the earlier tasks' input subspace.

Sources: Liang & Li 2024 (arXiv 2404.00228), its design of B_t (from the new task's inputs
projected off the old subspace; only A_t trains); GPM (Saha et al. 2021) for the memory's
energy criterion. Numbers by hand below.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from curlora.adapters import applied_method, apply_adapter, linear_shapes, validate_method
from curlora.adapters.inflora import MEMORY, RANK, grow_basis, input_factor

TASKS = ["pairs", "reviews", "moods"]  # what method_cfg gives (conftest.py)


def test_input_factor_and_memory_on_a_hand_computed_covariance() -> None:
    # C = diag(4, 1, 9). With M = e₃ the residual is diag(4, 1, 0): the top direction is e₁.
    cov = torch.diag(torch.tensor([4.0, 1.0, 9.0])).double()
    e = torch.eye(3, dtype=torch.float64)
    factor = input_factor(cov, e[:, 2:3], rank=1)
    assert torch.allclose(factor.abs(), e[0:1])
    assert torch.allclose(factor @ e[:, 2:3], torch.zeros(1, 1, dtype=torch.float64))
    # GPM's criterion from an empty memory, ε = 0.9: tr C = 14 needs 12.6; 9 < 12.6 ≤ 9 + 4.
    grown = grow_basis(cov, e[:, :0], 0.9)
    assert grown.shape == (3, 2)
    assert torch.allclose(grown.abs(), e[:, [2, 0]])
    # Already holding e₃ (9 of 14) with ε = 0.6 (8.4 needed): nothing to add.
    assert grow_basis(cov, e[:, 2:3], 0.6).shape == (3, 1)


class TaskData:
    """Random token sequences per task (no padding), for the input pass."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.examples = {
            t: [{"input_ids": torch.randint(3, 64, (6,), generator=g).tolist()} for _ in range(8)]
            for t in TASKS
        }

    def train_examples(self, task: str) -> list[dict[str, Any]]:
        return self.examples[task]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([e["input_ids"] for e in examples])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_the_new_branch_adds_nothing_on_the_earlier_tasks_retained_subspace(
    make_model, method_cfg
) -> None:
    model = make_model()
    apply_adapter(model, method_cfg("inflora", rank=2, threshold=0.9))
    method = applied_method(model)
    data = TaskData()
    layers = method.adapter_layers(model)
    # Task 1: B_1 set from its inputs (no memory yet), only A_1 (PEFT's lora_B) trains.
    method.begin_task(model, "pairs")
    method.prepare_task(model, "pairs", data)
    for layer in layers.values():
        assert layer.lora_A["pairs"].weight.any() and not layer.lora_A["pairs"].weight.requires_grad
        assert layer.lora_B["pairs"].weight.requires_grad
        assert not layer.lora_A["reviews"].weight.any()  # later branches: exact zeros
    with torch.no_grad():  # stand-in for task 1's training
        for layer in layers.values():
            layer.lora_B["pairs"].weight.normal_(generator=torch.Generator().manual_seed(1))
    method.begin_task(model, "reviews")
    method.prepare_task(model, "reviews", data)
    for layer in layers.values():
        basis = getattr(layer, MEMORY)[:, : int(getattr(layer, RANK))].double()
        assert basis.shape[1] > 0
        b_t = layer.lora_A["reviews"].weight.double()  # (r, in)
        assert (b_t @ basis).abs().max() < 1e-5  # B_2 M = 0
        # Whatever A_2 learns, the branch's output on inputs in span(M) is 0.
        a_t = torch.randn(layer.lora_B["reviews"].weight.shape, dtype=torch.float64)
        x = basis @ torch.randn(basis.shape[1], 5, dtype=torch.float64)  # 5 inputs in span(M)
        assert (a_t @ b_t @ x).abs().max() < 1e-5
    # A resumed run calls prepare_task again: what was set is kept.
    before = {n: layer.lora_A["reviews"].weight.clone() for n, layer in layers.items()}
    method.prepare_task(model, "reviews", data)
    assert all(torch.equal(layers[n].lora_A["reviews"].weight, b) for n, b in before.items())


def test_bad_settings_are_refused(method_cfg, tiny_config) -> None:
    shapes = linear_shapes(tiny_config)
    with pytest.raises(ValueError, match=r"threshold=0\.0 is not valid"):
        validate_method(method_cfg("inflora", threshold=0.0), shapes)
    with pytest.raises(ValueError, match=r"samples=0 is not valid"):
        validate_method(method_cfg("inflora", samples=0), shapes)


def test_the_module_hands_the_task_data_to_prepare_task(make_model, method_cfg, monkeypatch):
    # The training module calls prepare_task at the start of each task's fit, with its data.
    from curlora.models.module import ContinualLitModule

    backbone = make_model()
    apply_adapter(backbone, method_cfg("inflora", rank=2))
    module = ContinualLitModule(backbone, {t: 2 for t in TASKS}, optimizer=torch.optim.SGD)
    monkeypatch.setattr(module, "_datamodule", TaskData)
    module.set_task("reviews")
    module.on_fit_start()
    layers = applied_method(backbone).adapter_layers(backbone)
    assert all(layer.lora_A["reviews"].weight.any() for layer in layers.values())
    assert not any(layer.lora_A["moods"].weight.any() for layer in layers.values())
