"""What only some baselines promise, on a 3-task run (every baseline's contract, the run
completing among it, is in ``tests/contract``)."""

from __future__ import annotations

from pathlib import Path

import torch

from curlora.loop import TaskLoop
from curlora.run.interrupts import InterruptGuard
from curlora.run.state import load_task_checkpoint, task_checkpoint
from curlora.train import run

SHORT = [
    "trainer.max_epochs=1",
    "data.task_specs.pairs.train_limit=64",
    "data.task_specs.reviews.train_limit=64",
    "data.task_specs.moods.train_limit=64",
]


def test_o_lora_trains_one_adapter_per_task_and_keeps_it(run_config) -> None:
    # Each task trained its own adapter (B moved off zero) and later tasks left it as it
    # was at the end of its task (the task checkpoint holds that state).
    cfg = run_config("method=o_lora", *SHORT)
    loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    loop.run()
    final = loop.module.training_state()["adapter_state"]
    for index, task in enumerate(loop.tasks):
        at_end = load_task_checkpoint(task_checkpoint(loop.run_dir, index))
        mine = {k: v for k, v in final.items() if f".{task}." in k}
        assert any(v.abs().sum() > 0 for k, v in mine.items() if ".lora_B." in k), task
        for key, value in mine.items():
            assert torch.equal(at_end["training_state"]["adapter_state"][key], value), key


def test_full_fine_tuning_moves_attention_and_mlp_weights(run_config) -> None:
    cfg = run_config("method=full", *SHORT)
    loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    before = {n: p.detach().clone() for n, p in loop.backbone.named_parameters()}
    assert all(p.requires_grad for p in loop.backbone.parameters())
    loop.run()
    moved = [n for n, p in loop.backbone.named_parameters() if not torch.equal(p, before[n])]
    assert any("mlp" in n for n in moved) and any("self_attn" in n for n in moved)


def test_separate_adapters_cannot_forget(run_config) -> None:
    # Each task is scored with its own adapter and head, restored bit for bit: every later
    # row of the accuracy matrix repeats the task's accuracy right after its training.
    # Later tasks start from the initial adapter: the evaluation before training of a task
    # not trained yet is what the untrained (initial) adapter scores with that head.
    results = run(run_config("strategy=separate", "method=lora", *SHORT))
    matrix = results["accuracy_matrix"]
    for task in range(3):
        assert all(matrix[later][task] == matrix[task][task] for later in range(task, 3))
    assert results["metrics"]["bwt"] == 0.0
