"""MAS: the importance (mean absolute gradient of the squared output norm) and the penalty
on a hand-computed case, accumulation over tasks, heads left alone, resume."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

from curlora.strategies.mas import MAS


class Toy(nn.Module):
    """features = w · x (w ∈ R², x a scalar per example), head = the identity (excluded)."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.eye(2))
        self.heads = nn.ModuleDict({"a": head, "b": head})

    def task_logits(self, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        return self.heads[task](batch["x"] * self.w)  # [B, 1] · [2] → [B, 2]

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


class Data:
    def __init__(self, xs: dict[str, list[float]]) -> None:
        self.xs = xs

    def train_examples(self, task: str) -> list[dict[str, Any]]:
        return [{"x": x} for x in self.xs[task]]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([[e["x"]] for e in examples])}


def penalty(mas: MAS, toy: Toy) -> float:
    value = mas.extra_loss(toy, "b", {}, torch.zeros(1, 2))
    return 0.0 if value is None else value.item()


def test_importance_and_penalty_follow_aljundi_et_al_by_hand() -> None:
    # Source: Aljundi et al. 2018 (arXiv 1711.09601) Eq. 2–4: Ω_k = 1/N Σ_n |∂‖F(x_n)‖²/∂θ_k|,
    # loss λ·Σ Ω(θ − θ*)²; accumulation Ω ← Ω + Ω_new (the authors' code). Here
    # F(x) = (w₀x, w₁x), ‖F‖² = x²(w₀² + w₁²), ∂/∂w_k = 2x²w_k, all by hand below.
    toy, data = Toy([1.0, -3.0]), Data({"a": [1.0, 2.0], "b": [1.0]})
    mas = MAS(mas_lambda=0.5, samples=None)
    mas.on_task_start(toy, "a", data)
    assert penalty(mas, toy) == 0.0
    mas.on_task_end(toy, "a", data)
    # x = 1: 2·|w| = (2, 6); x = 2: 8·|w| = (8, 24); mean (5, 15)
    (name, omega), *others = mas.importance().items()
    assert name == "w" and not others  # the head is not penalised
    torch.testing.assert_close(omega, torch.tensor([5.0, 15.0]))
    with torch.no_grad():
        toy.w.copy_(torch.tensor([2.0, -3.0]))  # θ − θ* = (1, 0)
    assert penalty(mas, toy) == pytest.approx(0.5 * 5.0 * 1.0)  # λ·Ω₀·1² = 2.5
    mas.on_task_start(toy, "b", data)
    mas.on_task_end(toy, "b", data)
    # x = 1 at w = (2, −3): 2·|w| = (4, 6); accumulated: (5 + 4, 15 + 6) = (9, 21)
    torch.testing.assert_close(mas.importance()["w"], torch.tensor([9.0, 21.0]))
    assert penalty(mas, toy) == 0.0  # θ* moved to the parameters after task b
    with torch.no_grad():
        toy.w.copy_(torch.tensor([2.0, -1.0]))  # θ − θ* = (0, 2)
    assert penalty(mas, toy) == pytest.approx(0.5 * 21.0 * 4.0)  # 42


def test_samples_draws_a_seeded_subset_and_resume_continues_it() -> None:
    data = Data({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    first = MAS(samples=1, seed=3)
    first.on_task_end(Toy([1.0, 1.0]), "a", data)
    # One example x: Ω = 2x²·|w| = 2x²·(1, 1), so Ω/2 is x² for the drawn x.
    assert first.importance()["w"][0].item() / 2 in {1.0, 4.0, 9.0, 16.0}
    buffer = io.BytesIO()
    torch.save(first.on_save_checkpoint(Toy([1.0, 1.0])), buffer)
    buffer.seek(0)
    resumed = MAS(samples=1, seed=99)  # the generator state must come from the checkpoint
    resumed.on_load_checkpoint(Toy([1.0, 1.0]), torch.load(buffer, weights_only=True))
    first.on_task_end(Toy([1.0, 1.0]), "b", data)
    resumed.on_task_end(Toy([1.0, 1.0]), "b", data)
    assert torch.equal(first.importance()["w"], resumed.importance()["w"])
    resumed.on_task_end(Toy([5.0, 5.0]), "b", data)  # repeated by a resumed run: no-op
    assert torch.equal(first.importance()["w"], resumed.importance()["w"])


def test_bad_values_name_the_key() -> None:
    for key, value in (("mas_lambda", -1.0), ("samples", 0), ("seed", -2)):
        with pytest.raises(ValueError, match=rf"strategy\.{key}="):
            MAS(**{key: value})
