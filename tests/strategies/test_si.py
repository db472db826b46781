"""Synaptic Intelligence: the path integral, the consolidation and the surrogate loss on a
hand-computed case, the penalty's own gradient taken out, heads left alone, exact resume."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from curlora.strategies.base import OptimizerStep
from curlora.strategies.si import SynapticIntelligence


class Toy(nn.Module):
    """θ ∈ R³ (the 'adapter') and one head per task, which SI must leave out."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(3))
        self.heads = nn.ModuleDict({t: nn.Linear(1, 1) for t in ("a", "b")})

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def step(si: SynapticIntelligence, toy: Toy, task: str, grad: list[float], after: list[float]):
    """One optimizer step by hand: ``.grad`` = ``grad`` (what the optimizer used), θ moves
    to ``after``, then the hook."""
    before = {n: p.detach().clone() for n, p in toy.trainable_named_parameters()}
    with torch.no_grad():
        toy.theta.grad = torch.tensor(grad)
        toy.theta.copy_(torch.tensor(after))
        for head in toy.heads.values():  # heads move too: SI must not track them
            head.weight.grad = torch.ones_like(head.weight)
            head.weight.add_(1.0)
    si.on_optimizer_step(toy, task, OptimizerStep(toy.trainable_named_parameters(), before, 0))


def penalty(si: SynapticIntelligence, toy: Toy) -> float:
    value = si.extra_loss(toy, "b", {}, torch.zeros(1, 1))
    return 0.0 if value is None else value.item()


def round_trip(state: dict) -> dict:
    """What a resumed run gets back: torch.save then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def run_task_b(si: SynapticIntelligence, toy: Toy, first_step_only: bool = False) -> None:
    si.on_task_start(toy, "b", None)
    step(si, toy, "b", [1.0, 2.0, 0.0], [3.0, -1.0, 1.0])
    if first_step_only:
        return
    # Task gradient (−2, −1, 0) plus the penalty's 2c·Ω·(θ − θ̃) = 2·1·(2/3)·1 = 4/3 on θ_0.
    step(si, toy, "b", [-2.0 + 4.0 / 3.0, -1.0, 0.0], [4.0, 0.0, 1.0])
    si.on_task_end(toy, "b", None)


def test_importance_and_penalty_follow_zenke_et_al_by_hand() -> None:
    # Source: Zenke, Poole & Ganguli 2017 (arXiv 1703.04200) Eq. 3–5 and the authors' code
    # (ganguli-lab/pathint): ω −= g_unreg·Δθ per step; Ω = max(0, Ω + ω/(Δ² + ξ)); loss
    # c·Σ Ω(θ − θ̃)². Every number below is computed by hand in the comments; c = 1, ξ = 0.5.
    si, toy = SynapticIntelligence(c=1.0, xi=0.5), Toy()
    si.on_task_start(toy, "a", None)  # θ(start) = (0, 0, 0)
    # step 1: g = (−2, 1, 1), Δθ = (1, 0, 1): g·Δθ = (−2, 0, 1) → ω = (2, 0, −1)
    step(si, toy, "a", [-2.0, 1.0, 1.0], [1.0, 0.0, 1.0])
    # step 2: g = (−1, 4, 0), Δθ = (1, −1, 0): g·Δθ = (−1, −4, 0) → ω = (3, 4, −1)
    step(si, toy, "a", [-1.0, 4.0, 0.0], [2.0, -1.0, 1.0])
    assert penalty(si, toy) == 0.0  # nothing consolidated yet
    si.on_task_end(toy, "a", None)
    # Δ = (2, −1, 1), Δ² + ξ = (4.5, 1.5, 1.5): ω/(Δ² + ξ) = (2/3, 8/3, −2/3) → ReLU
    (name, omega), *others = si.importance().items()
    assert name == "theta" and not others  # heads are not tracked
    torch.testing.assert_close(omega, torch.tensor([2 / 3, 8 / 3, 0.0]))
    with torch.no_grad():
        toy.theta.copy_(torch.tensor([3.0, -1.0, 5.0]))
    # θ − θ̃ = (1, 0, 4): 2/3·1 + 8/3·0 + 0·16 = 2/3 (Ω₂ = 0: moving θ₂ is free)
    assert penalty(si, toy) == pytest.approx(2 / 3, rel=1e-6)
    with torch.no_grad():
        toy.theta.copy_(torch.tensor([2.0, -1.0, 1.0]))  # back to θ̃ = θ(start of b)
    run_task_b(si, toy)
    # ω_b: step 1 g = (1, 2, 0), Δθ = (1, 0, 0) → (−1, 0, 0); step 2 g (penalty taken out)
    # = (−2, −1, 0), Δθ = (1, 1, 0) → (1, 1, 0). Δ = (2, 1, 0), Δ² + ξ = (4.5, 1.5, 0.5):
    # Ω = (2/3 + 1/4.5, 8/3 + 1/1.5, 0 + 0) = (8/9, 10/3, 0)
    torch.testing.assert_close(si.importance()["theta"], torch.tensor([8 / 9, 10 / 3, 0.0]))


def test_c_scales_the_penalty_and_zero_turns_it_off() -> None:
    for c, want in ((2.0, 4 / 3), (0.0, 0.0)):
        si, toy = SynapticIntelligence(c=c, xi=0.5), Toy()
        si.on_task_start(toy, "a", None)
        step(si, toy, "a", [-2.0, 1.0, 1.0], [1.0, 0.0, 1.0])
        step(si, toy, "a", [-1.0, 4.0, 0.0], [2.0, -1.0, 1.0])
        si.on_task_end(toy, "a", None)
        with torch.no_grad():
            toy.theta.copy_(torch.tensor([3.0, -1.0, 5.0]))
        assert penalty(si, toy) == pytest.approx(want, rel=1e-6)


def test_resume_mid_task_gives_the_uninterrupted_importance() -> None:
    def after_task_a() -> tuple[SynapticIntelligence, Toy]:
        si, toy = SynapticIntelligence(c=1.0, xi=0.5), Toy()
        si.on_task_start(toy, "a", None)
        step(si, toy, "a", [-2.0, 1.0, 1.0], [1.0, 0.0, 1.0])
        step(si, toy, "a", [-1.0, 4.0, 0.0], [2.0, -1.0, 1.0])
        si.on_task_end(toy, "a", None)
        return si, toy

    si, toy = after_task_a()
    run_task_b(si, toy)
    uninterrupted = si.importance()

    si, toy = after_task_a()
    run_task_b(si, toy, first_step_only=True)
    saved = round_trip(si.on_save_checkpoint(toy))
    assert round_trip(si.on_save_checkpoint(toy)).keys() == saved.keys()  # no side effect
    resumed = SynapticIntelligence(c=1.0, xi=0.5)
    resumed.on_load_checkpoint(toy, saved)
    resumed.on_task_start(toy, "b", None)  # the resumed run repeats it: ω and θ(start) kept
    # Continue with step 2 and the end of the task, as run_task_b would.
    step(resumed, toy, "b", [-2.0 + 4.0 / 3.0, -1.0, 0.0], [4.0, 0.0, 1.0])
    resumed.on_task_end(toy, "b", None)
    for name, omega in uninterrupted.items():
        assert torch.equal(resumed.importance()[name], omega)


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"strategy\.c="):
        SynapticIntelligence(c=-1.0)
    with pytest.raises(ValueError, match=r"strategy\.xi="):
        SynapticIntelligence(xi=0.0)
