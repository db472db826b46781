"""A number in results.json is what happened: a blown-up language model shows as inf/NaN
with a warning (never an earlier value, never a crash), and every head is scored on its
own task's data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from curlora.reporting.results import load_results
from curlora.reporting.sweep import summarize_sweep
from curlora.train import run

SHORT = ["trainer.max_epochs=1"]
BREAK = "+callbacks.fault={_target_: tests.pipeline.faults.BreakLMHead, task: moods, how: %s}"


def test_perplexity_that_overflows_after_the_last_task_is_shown(run_config) -> None:
    cfg = run_config(*SHORT, BREAK % "overflow")
    results = run(cfg)
    assert results["status"] == "completed"
    assert results["perplexity"]["after_task"][2] == "inf"
    assert results["metrics"]["ppl_ratio_final"] == "inf"  # not the last finite ratio
    (warning,) = [w for w in results["warnings"] if w["reason"] == "non_finite_perplexity"]
    assert warning["evaluated_after"] == "moods" and "inf" in warning["detail"]
    run_dir = Path(cfg.paths.output_dir)
    assert load_results(run_dir / "results.json")["metrics"]["ppl_ratio_final"] == math.inf
    # The sweep report prints it instead of dropping the run.
    summary = summarize_sweep(run_dir.parent, write=False)
    assert len(summary.rows) == 1 and summary.rows[0]["ppl_ratio_final"] == math.inf
    assert "| inf |" in summary.markdown


def test_nan_perplexity_does_not_cost_the_run_its_results(run_config) -> None:
    cfg = run_config(*SHORT, BREAK % "not_a_number")
    results = run(cfg)
    assert results["status"] == "completed"
    run_dir = Path(cfg.paths.output_dir)
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["perplexity"]["after_task"][2] == "nan"
    assert json.loads((run_dir / "progress.json").read_text())["status"] == "completed"
    assert any(w["reason"] == "non_finite_perplexity" for w in on_disk["warnings"])


@pytest.mark.parametrize("reverse", [False, True], ids=["as-served", "loaders-reversed"])
def test_each_head_is_scored_on_its_own_tasks_data(run_config, monkeypatch, reverse) -> None:
    # Eval splits of different sizes (100, 60, 30 examples): a head scored on another task's
    # loader would report a confusion total that is not its task's size.
    from curlora.data.datamodule import TaskSequenceDataModule

    if reverse:  # the mistake this test exists to catch
        served = TaskSequenceDataModule.val_dataloader
        monkeypatch.setattr(
            TaskSequenceDataModule, "val_dataloader", lambda self: served(self)[::-1]
        )
    cfg = run_config(
        *SHORT,
        "data.task_specs.reviews.eval_limit=60",
        "data.task_specs.moods.eval_limit=30",
    )
    from curlora.loop import TaskLoop
    from curlora.run.interrupts import InterruptGuard

    loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    loop._evaluate(-1)
    sizes = {t: s.size for t, s in loop.record.initial.scores.items()}
    expected = {"pairs": 100, "reviews": 60, "moods": 30}
    if reverse:
        assert sizes != expected
    else:
        assert sizes == expected


def test_bf16_mixed_precision_keeps_float32_adapters_and_learns(run_config) -> None:
    """trainer.precision=bf16-mixed (CPU autocast here, GPU autocast on a GPU): the
    backbone computes in bfloat16, while U, the heads and the saved adapter stay float32,
    and the run still learns (accuracy above the majority rate on the first task)."""
    from safetensors.torch import load_file

    results = run(run_config("trainer.precision=bf16-mixed"))
    assert results["status"] == "completed"
    run_dir = Path(results["config"]["paths"]["output_dir"])
    adapter = load_file(next((run_dir / "adapter").glob("*.safetensors")))
    floats = {t.dtype for t in adapter.values() if t.is_floating_point()}
    assert floats == {torch.float32}  # (besides CURLoRA's int64 column/row indices)
    heads = load_file(run_dir / "heads.safetensors")
    assert {t.dtype for t in heads.values()} == {torch.float32}
    R, majority = results["accuracy_matrix"], results["majority_baseline"]
    assert all(math.isfinite(x) for x in results["perplexity"]["after_task"])
    assert R[0][0] > majority[0]
