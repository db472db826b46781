"""LwF: zero at the task-start copy, the exact distillation value, targets by index, resume."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from curlora.strategies.lwf import LwF


def checkpoint_round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def start(strategy: LwF, module, datamodule, done: list[str], task: str) -> None:
    """Tasks in ``done`` were trained (their hooks ran); ``task`` is about to train."""
    for t in done:
        strategy.on_task_start(module, t, datamodule)
        strategy.on_task_end(module, t, datamodule)
    strategy.on_task_start(module, task, datamodule)


def distil(strategy: LwF, module, batch, task: str) -> torch.Tensor | None:
    """What the module does per training batch: the current head's logits, then the term."""
    return strategy.extra_loss(module, task, batch, module.task_logits(batch, task))


def first_chunk(datamodule, task: str, size: int = 8) -> dict[str, torch.Tensor]:
    return datamodule.collate(datamodule.train_examples(task)[:size])


def test_no_term_on_the_first_task(module, datamodule) -> None:
    strategy = LwF()
    strategy.on_task_start(module, "a", datamodule)
    assert distil(strategy, module, first_chunk(datamodule, "a"), "a") is None


@pytest.mark.parametrize("reuse_features", [True, False])
def test_exactly_zero_while_the_model_equals_its_task_start_copy(
    module, datamodule, reuse_features: bool
) -> None:
    strategy = LwF(reuse_features=reuse_features)
    start(strategy, module, datamodule, ["a", "b"], "c")
    for begin in (0, 8, 16):  # every recorded chunk
        batch = datamodule.collate(datamodule.train_examples("c")[begin : begin + 8])
        assert distil(strategy, module, batch, "c").item() == 0.0


def test_matches_weight_t2_kl_after_a_parameter_change(module, datamodule) -> None:
    strategy = LwF(temperature=3.0, weight=0.5)
    start(strategy, module, datamodule, ["a", "b"], "c")
    previous = copy.deepcopy(module)  # the model as it was at the start of task c
    with torch.no_grad():
        module.adapter += 0.3
    batch = first_chunk(datamodule, "c")
    loss = distil(strategy, module, batch, "c")
    # Source: weight · Σ_p T² · KL(softmax(old/T) || softmax(new/T)), batch mean, computed
    # with torch's kl_div from the saved copy (old) and the changed model (new).
    want = sum(
        9.0
        * F.kl_div(
            F.log_softmax(module.task_logits(batch, p) / 3.0, dim=-1),
            F.log_softmax(previous.task_logits(batch, p) / 3.0, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        for p in ("a", "b")
    )
    assert loss.item() > 0
    torch.testing.assert_close(loss, 0.5 * want)


def test_the_term_trains_the_shared_parameters_and_the_past_heads(module, datamodule) -> None:
    strategy = LwF()
    start(strategy, module, datamodule, ["a"], "b")
    with torch.no_grad():
        module.adapter += 0.3
    distil(strategy, module, first_chunk(datamodule, "b"), "b").backward()
    assert module.adapter.grad.abs().sum() > 0
    assert module.heads["a"].weight.grad.abs().sum() > 0  # θ_o trains, as in Li & Hoiem
    assert module.heads["c"].weight.grad is None


def test_reused_features_equal_separate_passes_and_save_backbone_passes(module, datamodule) -> None:
    shared, separate = LwF(), LwF(reuse_features=False)
    for strategy in (shared, separate):
        start(strategy, module, datamodule, ["a", "b"], "c")
    with torch.no_grad():
        module.adapter += 0.3
    batch = first_chunk(datamodule, "c")
    module.calls = 0
    a = distil(shared, module, batch, "c")
    assert module.calls == 1  # only the module's own forward
    b = distil(separate, module, batch, "c")
    assert module.calls == 1 + 1 + 2  # own forward + one task_logits per past head
    torch.testing.assert_close(a, b)


def test_mismatched_logits_fall_back_to_separate_passes(module, datamodule) -> None:
    strategy = LwF()
    start(strategy, module, datamodule, ["a"], "b")
    batch = first_chunk(datamodule, "b")
    module.task_logits(first_chunk(datamodule, "b", size=8), "b")  # kept features ...
    module.calls = 0
    logits = module.task_logits(batch, "b") + 1.0  # ... do not reproduce these logits
    assert strategy.extra_loss(module, "b", batch, logits).item() == 0.0
    assert module.calls == 1 + 1  # the fallback ran task_logits for head a


def test_targets_are_looked_up_by_example_index(module, datamodule) -> None:
    strategy = LwF()
    start(strategy, module, datamodule, ["a"], "b")
    examples = datamodule.train_examples("b")
    reordered = datamodule.collate([examples[i] for i in (17, 3, 22, 9)])
    assert distil(strategy, module, reordered, "b").abs().item() < 1e-6
    unknown = dict(reordered, index=torch.tensor([5, 6, 8, 11]))  # 6 is no index (3i + 5)
    with pytest.raises(KeyError, match=r"\[6\]"):
        distil(strategy, module, unknown, "b")


def test_recording_restores_modes_and_leaves_no_grads_or_global_rng_draws(
    module, datamodule
) -> None:
    strategy = LwF()
    start(strategy, module, datamodule, ["a"], "b")  # records nothing for the first task
    module.train()
    module.embed.eval()
    module.modes_seen.clear()
    rng = torch.get_rng_state()
    strategy.on_task_end(module, "b", datamodule)
    strategy.on_task_start(module, "c", datamodule)
    assert module.modes_seen == [False] * 3  # 24 examples / 8 per chunk, features reused
    assert module.training and not module.embed.training
    assert all(p.grad is None for p in module.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_state_dict_round_trip_restores_identical_behaviour(module, datamodule) -> None:
    first = LwF()
    start(first, module, datamodule, ["a", "b"], "c")
    with torch.no_grad():
        module.adapter += 0.3  # half-way through task c
    resumed = LwF()
    resumed.load_state_dict(checkpoint_round_trip(first.state_dict()))
    # The resumed run calls on_task_start again: the targets must stay those of the
    # task-start model, not be re-recorded with the half-trained one.
    resumed.on_task_start(module, "c", datamodule)
    batch = first_chunk(datamodule, "c")
    want = distil(first, module, batch, "c")
    assert want.item() > 0
    assert torch.equal(distil(resumed, module, batch, "c"), want)


def test_weight_zero_turns_the_term_off(module, datamodule) -> None:
    strategy = LwF(weight=0.0)
    start(strategy, module, datamodule, ["a"], "b")
    with torch.no_grad():
        module.adapter += 0.3
    assert distil(strategy, module, first_chunk(datamodule, "b"), "b") is None
