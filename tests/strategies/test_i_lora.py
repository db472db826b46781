"""I-LoRA: an EMA slow learner, a hidden-state consistency loss on replayed examples.

Source: Ren et al. 2024 (arXiv 2402.18865): the EMA θ_s ← λθ_s + (1 − λ)θ_w and the
consistency term (MSE between the learners' hidden states on buffer examples). Numbers by
hand below.
"""

from __future__ import annotations

import pytest
import torch

from curlora.strategies.base import OptimizerStep
from curlora.strategies.i_lora import ILoRA, consistency_loss, ema_update


def test_the_ema_update_on_a_tiny_case() -> None:
    slow = {"u": torch.tensor([1.0, 2.0])}
    ema_update(slow, {"u": torch.tensor([3.0, -2.0]), "new": torch.tensor([5.0])}, 0.75)
    # 0.75·[1, 2] + 0.25·[3, −2] = [1.5, 1.0]; a new name starts at the fast value
    assert torch.equal(slow["u"], torch.tensor([1.5, 1.0]))
    assert torch.equal(slow["new"], torch.tensor([5.0]))


def test_the_consistency_loss_on_a_tiny_case() -> None:
    fast = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    slow = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # MSE = (1 + 4 + 1 + 1) / 4 = 1.75; gradient 2(f − s)/4; the slow side gets none.
    loss = consistency_loss([fast], [slow])
    assert loss.item() == 1.75
    loss.backward()
    assert torch.equal(fast.grad, torch.tensor([[0.5, 1.0], [-0.5, -0.5]]))


def _step(module) -> OptimizerStep:
    named = module.trainable_named_parameters()
    return OptimizerStep(named, {n: p.detach().clone() for n, p in named}, 1)


def test_slow_learner_follows_evaluates_and_hands_back_the_fast_one(module, datamodule) -> None:
    strategy = ILoRA(buffer_size=4, ema_decay=0.5)
    start = module.adapter.detach().clone()
    strategy.on_task_start(module, "a", datamodule)
    with torch.no_grad():
        module.adapter.add_(1.0)  # a step of the fast learner
    strategy.on_optimizer_step(module, "a", _step(module))  # θ_s = ½ start + ½ (start + 1)
    strategy.on_task_end(module, "a", datamodule)
    # Between tasks the model holds the slow learner (evaluation, checkpoint, saved adapter).
    assert torch.allclose(module.adapter, start + 0.5)
    strategy.on_task_start(module, "b", datamodule)
    assert torch.allclose(module.adapter, start + 1.0)  # the fast learner goes on
    batch = datamodule.collate(datamodule.train_examples("b")[:3])
    replayed = strategy.extra_batches(module, "b", batch)
    assert [t for t, _ in replayed] == ["a"]
    loss = strategy.extra_loss(module, "b", batch, module.task_logits(batch, "b"))
    # By hand: the same MSE between features with θ_w and with θ_s (a copy holding θ_s).
    past = replayed[0][1]
    fast = module.features(past)
    with torch.no_grad():
        module.adapter.copy_(start + 0.5)
        slow = module.features(past)
        module.adapter.copy_(start + 1.0)
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(fast, slow).item(), rel=1e-6)
    loss.backward()
    assert module.adapter.grad is not None and module.adapter.grad.abs().sum() > 0


def test_bad_settings_are_refused_by_name() -> None:
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"strategy.ema_decay={bad!r} is not valid"):
            ILoRA(ema_decay=bad)
    with pytest.raises(ValueError, match=r"strategy.consistency_weight=-1.0 is not valid"):
        ILoRA(consistency_weight=-1.0)
