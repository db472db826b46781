"""Joint: replay of every training example of every past task (the upper bound)."""

from __future__ import annotations

from curlora.strategies.joint import Joint
from tests.strategies.conftest import N_TRAIN


def test_joint_keeps_every_training_example_and_replays_each_past_task(module, datamodule) -> None:
    strategy = Joint(seed=0)
    for task in ("a", "b"):
        strategy.on_task_start(module, task, datamodule)
        strategy.on_task_end(module, task, datamodule)
    for task in ("a", "b"):
        kept = strategy.buffer(task)
        assert len(kept) == N_TRAIN  # the whole training split, in order
        assert [e["index"] for e in kept] == [e["index"] for e in datamodule.train_examples(task)]
    strategy.on_task_start(module, "c", datamodule)
    current = datamodule.collate(datamodule.train_examples("c")[:4])
    replayed = strategy.extra_batches(module, "c", current)
    assert [t for t, _ in replayed] == ["a", "b"]
    assert all(batch["labels"].shape == (4,) for _, batch in replayed)
    assert strategy.name == "joint"
