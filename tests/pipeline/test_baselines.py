"""Every method and every strategy completes a 3-task run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curlora.interrupts import InterruptGuard
from curlora.loop import TaskLoop
from curlora.run_report import write_run_report
from curlora.run_state import load_task_checkpoint, task_checkpoint
from curlora.train import run

SHORT = [
    "trainer.max_epochs=1",
    "data.task_specs.pairs.train_limit=64",
    "data.task_specs.reviews.train_limit=64",
    "data.task_specs.moods.train_limit=64",
]
METHODS = [
    "curlora",
    "lora",
    "lora_paper",
    "head_only",
    "full",
    "osf",
    "pissa",
    "mica",
    "olora",
    "dora",
    "o_lora",
    "tinylora",
    "vera",
    "corda",
]
# CorDA calibrates on the corpus after the perplexity's scored prefix: the synthetic corpus
# (~2,800 tokens) needs a shorter prefix and calibration than the defaults.
EXTRA = {
    "corda": [
        "callbacks.perplexity.max_tokens=1024",
        "method.calibration_tokens=512",
        "method.calibration_length=64",
    ]
}
STRATEGIES = ["ewc", "replay", "lwf", "joint", "separate"]


def _frozen_weights(loop: TaskLoop) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone() for n, p in loop.backbone.named_parameters() if not p.requires_grad
    }


@pytest.mark.parametrize("method", METHODS)
def test_each_method_completes_three_tasks(run_config, method: str) -> None:
    cfg = run_config(f"method={method}", *SHORT, *EXTRA.get(method, []))
    loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    frozen_before = _frozen_weights(loop)
    if method == "o_lora":  # later tasks' adapters are frozen until their task (checked below)
        frozen_before = {n: p for n, p in frozen_before.items() if ".lora_" not in n}
    trainable_before = {
        n: p.detach().clone() for n, p in loop.backbone.named_parameters() if p.requires_grad
    }
    loop.run()
    results = write_run_report(cfg, loop.run_dir, loop.record, loop.context(), "completed")
    assert results["status"] == "completed"
    assert all(v is not None for row in results["accuracy_matrix"] for v in row)
    # Frozen parameters never move, whatever the method.
    for name, before in frozen_before.items():
        assert torch.equal(before, dict(loop.backbone.named_parameters())[name]), name
    if method == "head_only":
        # Nothing in the backbone trains, so the LM is untouched: perplexity bit-identical.
        assert not trainable_before
        ppl = results["perplexity"]
        assert ppl["after_task"] == [ppl["initial"]] * 3
    if method == "full":
        # Every backbone weight trains; the attention and MLP weights must have moved.
        moved = [
            n
            for n, p in loop.backbone.named_parameters()
            if not torch.equal(p, trainable_before[n])
        ]
        assert any("mlp" in n for n in moved) and any("self_attn" in n for n in moved)
        assert not frozen_before
    if method == "o_lora":
        # Each task trained its own adapter (B moved off zero) and later tasks left it as
        # it was at the end of its task (the task checkpoint holds that state).
        final = loop.module.training_state()["adapter_state"]
        for index, task in enumerate(loop.tasks):
            at_end = load_task_checkpoint(task_checkpoint(loop.run_dir, index))
            mine = {k: v for k, v in final.items() if f".{task}." in k}
            assert any(v.abs().sum() > 0 for k, v in mine.items() if ".lora_B." in k), task
            for key, value in mine.items():
                assert torch.equal(at_end["training_state"]["adapter_state"][key], value), key


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_completes_three_tasks(run_config, strategy: str) -> None:
    results = run(run_config(f"strategy={strategy}", *SHORT))
    assert results["status"] == "completed"
    assert all(v is not None for row in results["accuracy_matrix"] for v in row)
    assert results["config"]["strategy"]["_target_"].rsplit(".", 1)[0].endswith(strategy)


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
