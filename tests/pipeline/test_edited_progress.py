"""An edited record is a damaged file, never a number a resumed run reports.

``progress.json`` carries a sha256 of its fields, and every score of a record read back
(``progress.json``, the record inside a task checkpoint) must agree with its confusion
matrix and per-example outcomes. Each test takes a real tiny run and edits its files the
way someone could: a number alone, a number with the sha256 rewritten, a number with its
outcomes dropped; resume then names the file and falls back (at worst to measuring the
evaluation before training again).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from curlora.reporting.results import load_results
from curlora.run.checksum import write_checksum
from curlora.run.state import (
    PROGRESS_FILE,
    PROGRESS_SHA256_KEY,
    DamagedFile,
    json_sha256,
    latest_task_checkpoint,
    read_progress,
    task_checkpoint,
)
from curlora.train import run
from tests.conftest import TINY, compose_run_config
from tests.pipeline.tiny_runs import completed_tiny_run, copy_run

RUN = [*TINY, "logger=none"]
TASKS = 3  # the tiny run's


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return completed_tiny_run(tmp_path_factory.mktemp("completed"), ["logger=none"])


def _copy(completed: Path, tmp_path: Path) -> Path:
    return copy_run(completed, tmp_path / "run")


def _edit_progress(run_dir: Path, change: Callable[[dict[str, Any]], Any], rehash: bool) -> Path:
    """``change`` the saved fields; with ``rehash`` also rewrite the sha256 to match."""
    path = run_dir / PROGRESS_FILE
    saved = json.loads(path.read_text())
    change(saved)
    if rehash:
        fields = {k: v for k, v in saved.items() if k != PROGRESS_SHA256_KEY}
        saved[PROGRESS_SHA256_KEY] = json_sha256(fields)
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return path


def _first_initial_score(saved: dict[str, Any]) -> dict[str, Any]:
    return saved["initial"]["scores"][saved["tasks"][0]]


def _damaged(caplog: pytest.LogCaptureFixture, path: Path) -> bool:
    return any(str(path) in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)


def test_an_edited_initial_evaluation_is_measured_again(
    completed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's case: status set back to running, the first task's accuracy before
    training and the perplexity edited, the checkpoints removed. Before the checks the
    resume reported both edited numbers (perplexity ratio x2.047 instead of x1.000)."""
    run_dir = _copy(completed, tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "results.json").unlink()

    def edit(saved: dict[str, Any]) -> None:
        saved["status"] = "running"
        _first_initial_score(saved)["accuracy"] = 0.95
        saved["initial"]["perplexity"]["ppl"] = 35.0

    path = _edit_progress(run_dir, edit, rehash=False)
    caplog.set_level(logging.WARNING)
    resumed = run(compose_run_config(tmp_path, [*RUN, f"resume={run_dir}"]))
    truth = load_results(completed / "results.json")
    assert resumed["status"] == "completed"
    assert resumed["initial_accuracy"] == truth["initial_accuracy"]
    assert resumed["perplexity"]["initial"] == truth["perplexity"]["initial"]
    assert _damaged(caplog, path)


def test_an_edited_perplexity_does_not_match_the_sha256(completed: Path, tmp_path: Path) -> None:
    """The perplexity has no per-example outcomes: the sha256 is what finds it."""
    run_dir = _copy(completed, tmp_path)
    assert read_progress(run_dir) is not None  # as written, it reads

    def edit(saved: dict[str, Any]) -> None:
        saved["initial"]["perplexity"]["ppl"] = 35.0

    path = _edit_progress(run_dir, edit, rehash=False)
    with pytest.raises(DamagedFile, match="sha256") as error:
        read_progress(run_dir)
    assert error.value.path == path


@pytest.mark.parametrize("drop_outcomes", [False, True], ids=["score", "score-and-outcomes"])
def test_a_score_rehashed_with_its_file_still_disagrees_with_itself(
    completed: Path, tmp_path: Path, drop_outcomes: bool
) -> None:
    """Whoever rewrites the sha256 too is still caught by the outcomes; dropping them leaves
    the confusion matrix, which the accuracy must also agree with."""
    run_dir = _copy(completed, tmp_path)

    def edit(saved: dict[str, Any]) -> None:
        score = _first_initial_score(saved)
        score["accuracy"] = 0.95
        if drop_outcomes:
            score["correct"] = None

    path = _edit_progress(run_dir, edit, rehash=True)
    with pytest.raises(DamagedFile) as error:
        read_progress(run_dir)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert "initial.scores." in message and "accuracy 0.95 disagrees" in message


def test_a_task_checkpoint_whose_record_disagrees_is_skipped(
    completed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A task checkpoint rewritten with a matching checksum beside it: its record's edited
    accuracy makes it damaged, and resume falls back to the checkpoint before it."""
    run_dir = _copy(completed, tmp_path)
    path = task_checkpoint(run_dir, TASKS - 1)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    record = payload["record"]
    record["after_task"][-1]["scores"][record["tasks"][0]]["accuracy"] = 0.95
    torch.save(payload, path)
    write_checksum(path)
    caplog.set_level(logging.WARNING)
    found = latest_task_checkpoint(run_dir, TASKS)
    assert found is not None and found[0] == TASKS - 2
    assert _damaged(caplog, path)


def test_progress_carries_its_sha256_and_older_files_without_it_still_read(
    completed: Path, tmp_path: Path
) -> None:
    """progress.json written before the sha256 was kept reads as before."""
    run_dir = _copy(completed, tmp_path)
    saved = json.loads((run_dir / PROGRESS_FILE).read_text())
    assert len(saved[PROGRESS_SHA256_KEY]) == 64
    expected = read_progress(run_dir)
    _edit_progress(run_dir, lambda s: s.pop(PROGRESS_SHA256_KEY), rehash=False)
    assert read_progress(run_dir) == expected
