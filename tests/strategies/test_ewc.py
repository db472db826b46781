"""EWC: the penalty's exact value, the Fisher estimate's invariants, online EWC, resume."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from curlora.strategies.ewc import EWC, ONLINE_KEY


def checkpoint_round_trip(state: dict) -> dict:
    """What a resumed run gets back: torch.save then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def penalty(strategy: EWC, module, datamodule, task: str) -> torch.Tensor | None:
    batch = datamodule.collate(datamodule.train_examples(task)[:4])
    return strategy.extra_loss(module, task, batch, module.task_logits(batch, task))


def hand_set_state(strategy: EWC, module, fisher: dict[str, torch.Tensor]) -> None:
    """Task 'a' consolidated with a chosen Fisher and θ* = the current parameters."""
    params = dict(module.trainable_named_parameters())
    strategy.load_state_dict(
        {
            "online": False,
            "tasks": ["a"],
            "fisher": {"a": fisher},
            "anchor": {"a": {n: params[n].detach().float().clone() for n in fisher}},
            "rng": torch.Generator().manual_seed(0).get_state(),
        }
    )


def test_penalty_is_zero_at_the_anchor_and_exactly_lambda_half_f_delta_squared(
    module, datamodule
) -> None:
    strategy = EWC(ewc_lambda=2.0)
    with torch.no_grad():
        module.adapter[0, 0] = 0.25  # exactly representable, so θ − θ* below is exact
    fisher = torch.zeros_like(module.adapter)
    fisher[0, 0] = 3.0
    hand_set_state(strategy, module, {"adapter": fisher})
    assert penalty(strategy, module, datamodule, "b").item() == 0.0
    with torch.no_grad():
        module.adapter[0, 0] = 0.75  # Δ = 0.5
    # λ/2 · F · Δ² = 2/2 · 3 · 0.25 = 0.75
    assert penalty(strategy, module, datamodule, "b").item() == pytest.approx(0.75, abs=1e-7)
    with torch.no_grad():
        module.adapter[0, 0] = 1.25  # Δ = 1.0: twice the distance, four times the penalty
    assert penalty(strategy, module, datamodule, "b").item() == pytest.approx(3.0, abs=1e-7)
    with torch.no_grad():
        module.adapter[1, 1] += 5.0  # an entry whose Fisher is 0 costs nothing
    assert penalty(strategy, module, datamodule, "b").item() == pytest.approx(3.0, abs=1e-7)


def test_penalty_gradient_is_lambda_f_delta(module, datamodule) -> None:
    strategy = EWC(ewc_lambda=2.0)
    fisher = torch.full_like(module.adapter, 0.5)
    hand_set_state(strategy, module, {"adapter": fisher})
    with torch.no_grad():
        module.adapter += 0.125
    penalty(strategy, module, datamodule, "b").backward()
    # d/dθ [λ/2 · F · Δ²] = λ · F · Δ = 2 · 0.5 · 0.125
    torch.testing.assert_close(module.adapter.grad, torch.full_like(module.adapter, 0.125))


def test_fisher_is_non_negative_and_zero_where_the_loss_does_not_reach(module, datamodule) -> None:
    strategy = EWC(fisher_samples=None, include_heads=True)
    strategy.on_task_end(module, "a", datamodule)
    fisher = strategy.state_dict()["fisher"]["a"]
    assert all(bool((f >= 0).all()) for f in fisher.values())
    assert bool((fisher["adapter"] > 0).any()) and bool((fisher["heads.a.weight"] > 0).any())
    # `unused` enters no loss; head b does not enter task a's logits.
    assert torch.equal(fisher["unused"], torch.zeros(3))
    assert not fisher["heads.b.weight"].any() and not fisher["heads.b.bias"].any()
    assert "embed.weight" not in fisher  # frozen: not trainable, not penalised


def test_heads_are_left_out_by_default(module, datamodule) -> None:
    strategy = EWC(fisher_samples=None)
    strategy.on_task_end(module, "a", datamodule)
    assert set(strategy.state_dict()["fisher"]["a"]) == {"adapter", "unused"}
    with torch.no_grad():
        module.heads["a"].weight += 1.0  # moving a past head costs nothing by default
    assert penalty(strategy, module, datamodule, "b").item() == 0.0


def test_current_head_is_never_penalised_past_heads_are_with_include_heads(
    module, datamodule
) -> None:
    strategy = EWC(include_heads=True)
    ones = {n: torch.ones_like(p) for n, p in module.trainable_named_parameters()}
    hand_set_state(strategy, module, ones)
    with torch.no_grad():
        module.heads["b"].bias += 1.0  # 3 entries, Δ = 1, F = 1
    # While training b its own head is exempt; while training c, head b is a past head:
    # λ/2 · Σ F Δ² = 1/2 · 3 · 1.
    assert penalty(strategy, module, datamodule, "b").item() == 0.0
    assert penalty(strategy, module, datamodule, "c").item() == pytest.approx(1.5)


def test_empirical_fisher_is_the_mean_of_per_example_squared_gradients(module, datamodule) -> None:
    strategy = EWC(fisher_samples=None, empirical=True)
    reference = copy.deepcopy(module)
    strategy.on_task_end(module, "a", datamodule)
    fisher = strategy.state_dict()["fisher"]["a"]["adapter"]
    # Source of the expected value: the definition, computed here with .backward() one
    # example at a time on an identical copy.
    examples = datamodule.train_examples("a")
    squares = torch.zeros_like(reference.adapter)
    for example in examples:
        reference.zero_grad()
        batch = datamodule.collate([example])
        F.cross_entropy(reference.task_logits(batch, "a"), batch["labels"]).backward()
        squares += reference.adapter.grad**2
    torch.testing.assert_close(fisher, squares / len(examples))
    # A squared batch gradient is a different (much smaller) quantity.
    reference.zero_grad()
    batch = datamodule.collate(examples)
    F.cross_entropy(reference.task_logits(batch, "a"), batch["labels"]).backward()
    assert not torch.allclose(fisher, reference.adapter.grad**2)


def test_true_fisher_samples_labels_from_the_model(module, datamodule) -> None:
    # A head certain of class 1: softmax([-100, 100]) = [0, 1] in float32, so a label drawn
    # from the model is always 1 and ∂(−log p_1)/∂z = p − e_1 = 0: the true Fisher is 0.
    # The dataset has label 0 for half the rows, where p − e_0 = [−1, 1]: non-zero.
    with torch.no_grad():
        module.heads["a"].weight.zero_()
        module.heads["a"].bias.copy_(torch.tensor([-100.0, 100.0]))
    true = EWC(fisher_samples=None, include_heads=True)
    true.on_task_end(module, "a", datamodule)
    assert not any(f.any() for f in true.state_dict()["fisher"]["a"].values())
    empirical = EWC(fisher_samples=None, include_heads=True, empirical=True)
    empirical.on_task_end(module, "a", datamodule)
    # Bias: half the rows give (p − e_0)² = [1, 1], the other half 0: mean 0.5.
    torch.testing.assert_close(
        empirical.state_dict()["fisher"]["a"]["heads.a.bias"], torch.tensor([0.5, 0.5])
    )


def test_fisher_is_reproducible_for_a_seed(module, datamodule) -> None:
    def fisher(seed: int) -> torch.Tensor:
        strategy = EWC(fisher_samples=5, seed=seed)
        strategy.on_task_end(copy.deepcopy(module), "a", datamodule)
        return strategy.state_dict()["fisher"]["a"]["adapter"]

    assert torch.equal(fisher(3), fisher(3))
    assert not torch.equal(fisher(3), fisher(4))  # other examples, other sampled labels


def test_fisher_pass_restores_modes_and_leaves_no_grads_or_global_rng_draws(
    module, datamodule
) -> None:
    module.train()
    module.embed.eval()  # a frozen part kept in eval mode must stay so
    rng = torch.get_rng_state()
    strategy = EWC(fisher_samples=6)
    strategy.on_task_end(module, "a", datamodule)
    assert module.modes_seen == [False] * 6  # every Fisher forward ran in eval mode
    assert module.training and module.heads.training and not module.embed.training
    assert all(p.grad is None for p in module.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_repeated_task_end_keeps_the_consolidated_state(module, datamodule) -> None:
    strategy = EWC(fisher_samples=5)
    strategy.on_task_end(module, "a", datamodule)
    before = strategy.state_dict()
    with torch.no_grad():
        module.adapter += 1.0
    strategy.on_task_end(module, "a", datamodule)  # e.g. a resumed run repeating the hook
    after = strategy.state_dict()
    assert torch.equal(before["anchor"]["a"]["adapter"], after["anchor"]["a"]["adapter"])
    assert torch.equal(before["rng"], after["rng"]) and after["tasks"] == ["a"]


def test_online_ewc_keeps_one_decayed_running_fisher(module, datamodule) -> None:
    # Source of the expected values: an offline EWC with the same seed sees the same
    # examples (same generator draws) and stores F_a and F_b separately.
    online = EWC(fisher_samples=None, empirical=True, online=True, gamma=0.5)
    offline = EWC(fisher_samples=None, empirical=True)
    for task in ("a", "b"):
        online.on_task_end(module, task, datamodule)
        offline.on_task_end(module, task, datamodule)
        with torch.no_grad():
            module.adapter += 0.1  # "training" between the tasks
    on, off = online.state_dict(), offline.state_dict()
    assert list(on["fisher"]) == [ONLINE_KEY]
    expected = 0.5 * off["fisher"]["a"]["adapter"] + off["fisher"]["b"]["adapter"]
    torch.testing.assert_close(on["fisher"][ONLINE_KEY]["adapter"], expected)
    assert torch.equal(on["anchor"][ONLINE_KEY]["adapter"], off["anchor"]["b"]["adapter"])
    delta = module.adapter.detach() - off["anchor"]["b"]["adapter"]
    want = 0.5 * (expected * delta**2).sum()  # λ/2 · Σ F̃ Δ², λ = 1
    torch.testing.assert_close(penalty(online, module, datamodule, "c").detach(), want)


def test_state_dict_round_trip_restores_identical_behaviour(module, datamodule) -> None:
    first = EWC(fisher_samples=5, seed=1)
    first.on_task_end(module, "a", datamodule)
    resumed = EWC(fisher_samples=5, seed=99)  # the generator state must come from the state
    resumed.load_state_dict(checkpoint_round_trip(first.state_dict()))
    with torch.no_grad():
        module.adapter += 0.2
    assert torch.equal(
        penalty(first, module, datamodule, "b"), penalty(resumed, module, datamodule, "b")
    )
    first.on_task_end(module, "b", datamodule)
    resumed.on_task_end(module, "b", datamodule)
    for name, f in first.state_dict()["fisher"]["b"].items():
        assert torch.equal(f, resumed.state_dict()["fisher"]["b"][name])
    with pytest.raises(ValueError, match="online"):
        EWC(online=True).load_state_dict(first.state_dict())


def test_nothing_to_penalise_when_only_heads_train(module, datamodule) -> None:
    module.adapter.requires_grad_(False)  # method=head_only: only heads are trainable
    module.unused.requires_grad_(False)
    strategy = EWC()
    strategy.on_task_end(module, "a", datamodule)
    assert module.calls == 0  # no Fisher pass at all
    assert penalty(strategy, module, datamodule, "b") is None


def test_missing_datamodule_fails_at_task_start(module) -> None:
    with pytest.raises(RuntimeError, match="needs the datamodule"):
        EWC().on_task_start(module, "a", None)
