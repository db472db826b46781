"""A run killed between two checkpoints and resumed does not log a step twice to W&B.

The W&B logger is given a stand-in run (what ``wandb.init`` returns: ``log`` and
``define_metric``), so the rows it would send are recorded without wandb; the run's
state (``logger_state.json``) is the real one.
"""

from __future__ import annotations

from pathlib import Path

from curlora.wandb_logger import WandbLogger
from tests.pipeline.wandb_records import FakeRun


def session(run_dir: Path) -> tuple[WandbLogger, FakeRun]:
    logger = WandbLogger(run_dir=str(run_dir), mode="disabled")
    fake = FakeRun()
    logger._experiment = fake  # Lightning's WandbLogger returns it as .experiment
    return logger, fake


def test_steps_and_points_an_earlier_session_logged_are_not_logged_again(tmp_path) -> None:
    first, sent_first = session(tmp_path)
    first.log_at_point({"eval/a/acc": 0.5}, 0)  # before training
    # Task 1: steps 1..5 logged, the last checkpoint at step 2, then a SIGKILL.
    for step in range(1, 6):
        first.log_metrics({"train/a/loss": 1.0 / step}, step)
    first.log_at_point({"eval/a/acc": 0.7}, 1)
    # The resumed session repeats steps 3..5 from the step-2 checkpoint and the point 1.
    second, sent_second = session(tmp_path)
    second.log_at_point({"eval/a/acc": 0.5}, 0)
    for step in range(3, 9):
        second.log_metrics({"train/a/loss": 1.0 / step}, step)
    second.log_at_point({"eval/a/acc": 0.7}, 1)
    second.log_at_point({"eval/a/acc": 0.8}, 2)
    train = [s for s, row in sent_second.rows if "train/a/loss" in row]
    points = [row["tasks_trained"] for _, row in sent_second.rows if "tasks_trained" in row]
    assert train == [6, 7, 8]  # 3..5 were logged by the first session
    assert points == [2]
    assert [s for s, row in sent_first.rows if "train/a/loss" in row] == [1, 2, 3, 4, 5]
    # Steps never repeat over the two sessions (what `wandb sync` uploads as one run).
    steps = [s for s, row in [*sent_first.rows, *sent_second.rows] if "train/a/loss" in row]
    assert steps == sorted(set(steps))


def test_without_a_run_directory_nothing_is_remembered(tmp_path) -> None:
    logger = WandbLogger(mode="disabled")
    fake = FakeRun()
    logger._experiment = fake
    logger.log_metrics({"train/a/loss": 1.0}, 1)
    logger.log_metrics({"train/a/loss": 0.5}, 2)
    assert [s for s, _ in fake.rows] == [1, 2]
    assert list(tmp_path.iterdir()) == []
