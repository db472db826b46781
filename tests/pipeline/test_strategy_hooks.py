"""The strategy hooks are called in the order ``curlora.strategies.base`` documents, the
optimizer-step hook sees the step's gradients and the parameters before and after it, and
the checkpoint hooks change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from curlora.strategies import Sequential
from curlora.strategies.si import SynapticIntelligence
from curlora.train import run
from tests.pipeline.faults import SimulatedCrash

TASKS = ["pairs", "reviews", "moods"]
# 64 examples at batch 16: 4 steps per task; SGD so each step is θ − lr·grad exactly.
SHORT = [
    "trainer.max_epochs=1",
    *(f"data.task_specs.{t}.train_limit=64" for t in TASKS),
    "optimizer._target_=torch.optim.SGD",
    "checkpoint.every_n_train_steps=2",
]
CRASH = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: reviews, step: 3, "
    "marker: '%s'}"
)


def recorded(run_config, log: Path, *overrides: str):
    cfg = run_config(*SHORT, *overrides)
    with open_dict(cfg):
        cfg.strategy = OmegaConf.create(
            {"_target_": "tests.pipeline.recorder.HookRecorder", "log": str(log)}
        )
    return cfg


def events(log: Path) -> list[tuple]:
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]


def evaluation() -> list[tuple]:
    return [*(("on_evaluate_task", t, None) for t in TASKS), ("on_evaluation_end", None, None)]


def task(name: str, steps: int = 4, first: int = 1) -> list[tuple]:
    """One task as documented: start; per step extra_batches, extra_loss, the step hook,
    a step checkpoint after every second step; end; evaluation; task checkpoint."""
    out = [("on_task_start", name, None)]
    for step in range(first, steps + 1):
        out += [("extra_batches", name, None), ("extra_loss", name, None)]
        out.append(("on_optimizer_step", name, step))
        if step % 2 == 0:
            out.append(("on_save_checkpoint", None, step))
    out += [("on_task_end", name, None), *evaluation(), ("on_save_checkpoint", None, None)]
    return out


def test_hooks_run_in_the_documented_order(run_config, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    assert run(recorded(run_config, log))["status"] == "completed"
    assert events(log) == [*evaluation(), *(e for t in TASKS for e in task(t))]


def test_a_resumed_run_loads_the_state_before_it_restarts_the_task(run_config, tmp_path) -> None:
    log = tmp_path / "hooks.jsonl"
    cfg = recorded(run_config, log, CRASH % (tmp_path / "crashed"))
    with pytest.raises(SimulatedCrash):
        run(cfg)
    log.unlink()
    resumed = recorded(run_config, log, f"resume={cfg.paths.output_dir}")
    assert run(resumed)["status"] == "completed"
    # From task 1's checkpoint, then from task 2's step-2 checkpoint inside its fit: the
    # state is loaded before on_task_start, and the task continues at step 3.
    assert events(log) == [
        ("on_load_checkpoint", None, None),
        ("on_load_checkpoint", None, None),
        *task("reviews", first=3),
        *task("moods"),
    ]


def test_only_a_strategy_with_a_step_hook_costs_a_copy_per_step() -> None:
    assert SynapticIntelligence.uses_optimizer_step()
    assert not Sequential.uses_optimizer_step()
