"""Crash-safe resume, determinism, the NaN guard and logger failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from curlora.train import run
from tests.conftest import figures_off
from tests.pipeline.faults import SimulatedCrash

# Steps per task with debug=fast: 400 synthetic examples / batch 16 = 25 per epoch, 3 epochs.
CRASH = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: %s, step: %d, marker: '%s'}"
)


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    """Everything in results.json but the config (which holds paths and the fault injector)."""
    return {k: v for k, v in results.items() if k != "config"}


@pytest.fixture(scope="module")
def no_plots() -> Iterator[None]:
    """The runs compared here draw no figures: no comparison reads them."""
    with figures_off():
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, no_plots: None) -> dict[str, Any]:
    """One uninterrupted run, shared by the comparisons below."""
    from tests.conftest import FAST, compose_run_config

    cfg = compose_run_config(tmp_path_factory.mktemp("reference"), FAST)
    return run(cfg)


def test_same_seed_gives_bit_identical_results(
    run_config, reference: dict[str, Any], no_plots: None
) -> None:
    again = run(run_config())
    assert _numbers(again) == _numbers(reference)


@pytest.mark.parametrize(
    ("task", "step"),
    [
        ("reviews", 30),  # task 2, mid-epoch 2: resumes from its step-20 checkpoint
        ("moods", 2),  # task 3 before any step checkpoint: resumes at the task boundary
    ],
)
def test_crash_and_resume_matches_uninterrupted_run(
    run_config, tmp_path: Path, reference: dict[str, Any], task: str, step: int, no_plots: None
) -> None:
    cfg = run_config(CRASH % (task, step, tmp_path / "crashed"))
    with pytest.raises(SimulatedCrash):
        run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    interrupted = json.loads((run_dir / "results.json").read_text())
    assert interrupted["status"].startswith("failed: SimulatedCrash")
    done_before = 1 if task == "reviews" else 2
    assert all(v is not None for v in interrupted["accuracy_matrix"][done_before - 1])
    resumed = run(run_config(f"resume={run_dir}"))
    assert resumed["status"] == "completed"
    assert _numbers(resumed) == _numbers(reference)


def test_non_finite_loss_stops_with_results_and_last_checkpoint(run_config) -> None:
    cfg = run_config(
        "+callbacks.fault={_target_: tests.pipeline.faults.PoisonHead, task: reviews, step: 5}"
    )
    results = run(cfg)
    assert results["status"].startswith("stopped: non-finite loss")
    assert "task 'reviews'" in results["status"] and "step 5" in results["status"]
    # Task 1 finished and was evaluated; its checkpoint is kept.
    assert all(v is not None for v in results["accuracy_matrix"][0])
    assert results["accuracy_matrix"][1] == [None, None, None]
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "checkpoints" / "task_0.ckpt").exists()
    assert json.loads((run_dir / "results.json").read_text())["status"] == results["status"]


def test_unwritable_wandb_directory_still_gives_results(run_config, tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where W&B wants a directory")
    cfg = run_config(
        "logger=wandb", f"logger.wandb.save_dir={blocker}/wandb", "trainer.max_epochs=1"
    )
    results = run(cfg)
    assert results["status"] == "completed"
    assert (Path(cfg.paths.output_dir) / "results.json").exists()


def test_failing_logger_degrades_to_one_warning(run_config, caplog) -> None:
    cfg = run_config(
        "+logger.broken={_target_: tests.pipeline.faults.BrokenLogger}", "trainer.max_epochs=1"
    )
    results = run(cfg)
    assert results["status"] == "completed"
    messages = [
        r.getMessage() for r in caplog.records if "logger 'broken' failed" in r.getMessage()
    ]
    assert len(messages) == 1 and "not writable" in messages[0]


def test_resume_from_a_step_checkpoint_at_an_epoch_end_trains_every_epoch(
    run_config, tmp_path: Path, reference: dict[str, Any], no_plots: None
) -> None:
    # 25 steps per epoch, a step checkpoint every 25 steps: the last one before the crash
    # (step 27 of task 1) was taken on the last batch of epoch 0.
    every = "checkpoint.every_n_train_steps=25"
    cfg = run_config(CRASH % ("pairs", 27, tmp_path / "crashed"), every)
    with pytest.raises(SimulatedCrash):
        run(cfg)
    resumed = run(run_config(f"resume={cfg.paths.output_dir}"))
    assert resumed["status"] == "completed"
    assert _numbers(resumed) == _numbers(reference)


@pytest.fixture(scope="module")
def dropout_reference(tmp_path_factory: pytest.TempPathFactory, no_plots: None) -> dict[str, Any]:
    from tests.conftest import FAST, compose_run_config

    cfg = compose_run_config(tmp_path_factory.mktemp("dropout"), [*FAST, "method.dropout=0.1"])
    return run(cfg)


@pytest.mark.parametrize(("task", "step"), [("reviews", 30), ("moods", 2)])
def test_resume_with_dropout_is_identical(
    run_config,
    tmp_path: Path,
    dropout_reference: dict[str, Any],
    task: str,
    step: int,
    no_plots: None,
) -> None:
    # Dropout draws from the global RNG: a resume must restore its state (task boundary:
    # from the task checkpoint; mid-epoch: from the step checkpoint) and nothing between
    # the restore and the next batch may draw from it (loaders have their own generators).
    cfg = run_config("method.dropout=0.1", CRASH % (task, step, tmp_path / "crashed"))
    with pytest.raises(SimulatedCrash):
        run(cfg)
    resumed = run(run_config(f"resume={cfg.paths.output_dir}"))
    assert _numbers(resumed) == _numbers(dropout_reference)


def test_gradient_checkpointing_changes_memory_not_numbers(
    run_config, reference, no_plots: None
) -> None:
    """Recomputing activations in backward (model.gradient_checkpointing) trains the same
    model: same accuracies, perplexities within float32 rounding."""
    again = run(run_config("model.gradient_checkpointing=true"))
    assert again["accuracy_matrix"] == reference["accuracy_matrix"]
    assert again["perplexity"]["after_task"] == pytest.approx(
        reference["perplexity"]["after_task"], rel=1e-5
    )
    assert again["metrics"] == pytest.approx(reference["metrics"], rel=1e-5, abs=1e-7)
