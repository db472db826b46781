"""Replay: Algorithm R's guarantees, the per-task buffers, the replayed batches, resume."""

from __future__ import annotations

import io

import pytest
import torch

from curlora.strategies.replay import Replay, reservoir_sample
from tests.strategies.conftest import N_TRAIN, NUM_CLASSES


def checkpoint_round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def current_batch(datamodule, task: str, size: int = 4) -> dict[str, torch.Tensor]:
    return datamodule.collate(datamodule.train_examples(task)[:size])


def test_reservoir_keeps_a_short_stream_whole_and_never_exceeds_its_size() -> None:
    g = torch.Generator().manual_seed(0)
    assert reservoir_sample(range(3), 5, g) == ([0, 1, 2], 3)
    kept, seen = reservoir_sample(range(100), 5, g)
    assert seen == 100 and len(kept) == 5 and len(set(kept)) == 5


def test_reservoir_keeps_each_item_with_probability_size_over_n() -> None:
    # Algorithm R keeps every item with probability k/n = 2/4. Over 20000 seeded trials each
    # count is Binomial(20000, 0.5): mean 10000, sd ≈ 70.7; allow 5 sd. A classic bug
    # (j drawn from 0..i−1) keeps item 2 always (count 20000) and item 3 2/3 of the time.
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(20000):
        kept, _ = reservoir_sample(range(4), 2, g)
        counts[kept] += 1
    assert bool(((counts - 10000).abs() < 5 * 70.7).all()), counts


def test_reservoir_is_deterministic_for_a_seed() -> None:
    def sample(seed: int) -> list[int]:
        return reservoir_sample(range(100), 10, torch.Generator().manual_seed(seed))[0]

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_buffers_hold_examples_of_every_past_task_within_their_size(module, datamodule) -> None:
    strategy = Replay(buffer_size=5)
    for task in ("a", "b"):
        strategy.on_task_start(module, task, datamodule)
        strategy.on_task_end(module, task, datamodule)
    for task in ("a", "b"):
        kept = strategy.buffer(task)
        assert len(kept) == 5  # 24 examples streamed, 5 kept
        assert all(any(e is x for x in datamodule.train_examples(task)) for e in kept)
    assert strategy.buffer("c") == []
    large = Replay(buffer_size=100)
    large.on_task_end(module, "a", datamodule)
    assert len(large.buffer("a")) == N_TRAIN  # fewer examples than the size: all kept


def test_extra_batches_one_per_past_task_from_its_own_buffer(module, datamodule) -> None:
    strategy = Replay(buffer_size=5)
    strategy.on_task_start(module, "a", datamodule)
    assert strategy.extra_batches(module, "a", current_batch(datamodule, "a")) == []
    for task in ("a", "b"):
        strategy.on_task_end(module, task, datamodule)
    strategy.on_task_start(module, "c", datamodule)
    replayed = strategy.extra_batches(module, "c", current_batch(datamodule, "c", size=3))
    assert [t for t, _ in replayed] == ["a", "b"]  # training order; never the current task
    for task, batch in replayed:
        kept = {e["index"] for e in strategy.buffer(task)}
        assert batch["labels"].shape == (3,)  # replay_batch_size null: the current batch's
        assert set(batch["index"].tolist()) <= kept and len(set(batch["index"].tolist())) == 3
        assert int(batch["labels"].max()) < NUM_CLASSES[task]
        assert set(batch) == {"input_ids", "attention_mask", "labels", "index"}


def test_replay_batch_size_is_capped_by_the_buffer(module, datamodule) -> None:
    strategy = Replay(buffer_size=5, replay_batch_size=8)
    strategy.on_task_start(module, "a", datamodule)
    strategy.on_task_end(module, "a", datamodule)
    [(task, batch)] = strategy.extra_batches(module, "b", current_batch(datamodule, "b"))
    assert task == "a" and sorted(batch["index"].tolist()) == sorted(
        e["index"] for e in strategy.buffer("a")
    )
    small = Replay(buffer_size=5, replay_batch_size=2)
    small.on_task_end(module, "a", datamodule)
    [(_, batch)] = small.extra_batches(module, "b", current_batch(datamodule, "b"))
    assert batch["labels"].shape == (2,)


def test_replay_draws_do_not_touch_the_global_rng(module, datamodule) -> None:
    strategy = Replay(buffer_size=5)
    rng = torch.get_rng_state()
    strategy.on_task_end(module, "a", datamodule)
    strategy.extra_batches(module, "b", current_batch(datamodule, "b"))
    assert torch.equal(torch.get_rng_state(), rng)


def test_state_dict_round_trip_restores_identical_behaviour(module, datamodule) -> None:
    first = Replay(buffer_size=5, seed=1)
    first.on_task_start(module, "a", datamodule)
    first.on_task_end(module, "a", datamodule)
    first.extra_batches(module, "b", current_batch(datamodule, "b"))  # advance the draws
    resumed = Replay(buffer_size=5, seed=99)  # generator states must come from the state
    resumed.load_state_dict(checkpoint_round_trip(first.state_dict()))
    with pytest.raises(RuntimeError, match="on_task_start"):  # resume skipped the hook
        resumed.extra_batches(module, "b", current_batch(datamodule, "b"))
    resumed.on_task_start(module, "b", datamodule)
    for _ in range(3):
        [(_, want)] = first.extra_batches(module, "b", current_batch(datamodule, "b"))
        [(_, got)] = resumed.extra_batches(module, "b", current_batch(datamodule, "b"))
        assert all(torch.equal(want[k], got[k]) for k in want)
    first.on_task_end(module, "b", datamodule)
    resumed.on_task_end(module, "b", datamodule)
    assert first.buffer("b") == resumed.buffer("b")
    with pytest.raises(ValueError, match="buffer_size"):
        Replay(buffer_size=2).load_state_dict(first.state_dict())


def test_repeated_task_end_keeps_the_buffer(module, datamodule) -> None:
    strategy = Replay(buffer_size=5)
    strategy.on_task_end(module, "a", datamodule)
    kept = strategy.buffer("a")
    strategy.on_task_end(module, "a", datamodule)
    assert strategy.buffer("a") == kept
