"""``logger_state.json`` from someone else chooses neither the W&B run nor what is dropped.

The W&B logger keeps its run id and the highest step and point it logged in the run's
``logger_state.json``, so a run continued after SIGTERM is one W&B run that logs nothing
twice. A received directory carries that file too: its id must not pick a run of the
receiver's to append to, and its counts must not silently drop this session's rows. The
unit tests give the logger a stand-in run (``log``, ``define_metric``), as
``test_wandb_resume_steps`` does; the last one resumes a received tiny run with W&B offline.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from curlora.run.state import LOGGER_STATE_FILE, read_logger_state, update_logger_state
from curlora.train import run
from curlora.wandb_logger import RUN_ID, WandbLogger
from tests.conftest import TINY, compose_run_config
from tests.pipeline.wandb_records import FakeRun, offline_runs

RECEIVED_STATE = {
    "wandb_run_id": "victimrun1",
    "wandb_logged_step": 1_000_000,
    "wandb_logged_point": 1000,
}


def session(run_dir: Path) -> tuple[WandbLogger, FakeRun]:
    logger = WandbLogger(run_dir=str(run_dir), save_dir=str(run_dir), mode="disabled")
    fake = FakeRun()
    logger._experiment = fake  # Lightning's WandbLogger returns it as .experiment
    return logger, fake


def run_id(logger: WandbLogger) -> str:
    return logger._wandb_init["id"]


def warned(caplog: pytest.LogCaptureFixture, *words: str) -> bool:
    return any(all(w in r.getMessage() for w in words) for r in caplog.records)


def test_the_run_id_is_saved_when_the_run_starts_logging_never_when_built(tmp_path) -> None:
    """Building the logger (what Hydra does wherever a config names it) writes nothing:
    not even the directory its ``run_dir`` names. The id is saved by the run's first use."""
    victim = tmp_path / "victim_home"
    logger, _ = session(victim)
    assert not victim.exists(), "building the logger wrote into its run_dir"
    victim.mkdir()  # the run directory, made by the run before it logs
    logger.log_metrics({"train/loss": 1.0}, 1)
    state = read_logger_state(victim)
    assert state["wandb_run_id"] == run_id(logger) and RUN_ID.fullmatch(run_id(logger))
    assert state["wandb_logged_step"] == 1


def test_a_received_run_id_is_not_reused(tmp_path, caplog) -> None:
    """A malformed id, or a well-formed one saved for another directory (a copy or a
    received run), gets a new id with a warning naming the file; the directory the id was
    saved for keeps it (a run continued after SIGTERM stays one W&B run)."""
    own = tmp_path / "own"
    own.mkdir()
    first, _ = session(own)
    first.log_metrics({"train/loss": 1.0}, 1)
    copy = tmp_path / "copy"
    shutil.copytree(own, copy)
    assert run_id(session(own)[0]) == run_id(first)
    assert run_id(session(copy)[0]) not in (run_id(first), None)
    assert warned(caplog, str(copy / LOGGER_STATE_FILE), run_id(first), "new W&B run")
    update_logger_state(own, wandb_run_id="victimrun1")  # right directory, not W&B's form
    again = session(own)[0]
    assert run_id(again) != "victimrun1" and RUN_ID.fullmatch(run_id(again))
    assert warned(caplog, str(own / LOGGER_STATE_FILE), "'victimrun1'", "not a W&B run id")


def test_saved_counts_beyond_what_the_run_reaches_drop_nothing(tmp_path, caplog) -> None:
    """Counts this session's first task does not reach are ignored with a warning naming
    the file, and every row is logged, in order; the file then holds the true counts."""
    own = tmp_path / "run"
    own.mkdir()
    first, _ = session(own)
    first.log_at_point({"eval/a/acc": 0.5}, 0)
    first.log_metrics({"train/loss": 1.0}, 10)
    first.advance_to(10)
    first.log_at_point({"eval/a/acc": 0.6}, 1)
    update_logger_state(own, wandb_logged_step=1_000_000, wandb_logged_point=1000)
    second, fake = session(own)  # resumes task 2, steps 11..20
    assert run_id(second) == run_id(first)  # one's own run: the same W&B run
    for step in range(11, 21):
        second.log_metrics({"train/loss": 1.0 / step}, step)
    second.advance_to(20)
    second.log_at_point({"eval/a/acc": 0.7}, 2)
    sent = fake.rows
    assert [s for s, row in sent if "train/loss" in row] == list(range(11, 21))
    assert [row["tasks_trained"] for _, row in sent if "tasks_trained" in row] == [2]
    assert [s for s, _ in sent] == sorted(s for s, _ in sent)
    where = str(own / LOGGER_STATE_FILE)
    assert warned(caplog, where, "wandb_logged_step=1000000", "ignored")
    assert warned(caplog, where, "wandb_logged_point=1000", "ignored")
    state = json.loads((own / LOGGER_STATE_FILE).read_text())
    assert (state["wandb_logged_step"], state["wandb_logged_point"]) == (20, 2)


@pytest.fixture(scope="module")
def sent_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ``run_config.yaml`` of a real ``debug=tiny`` run, as a sender passes it on."""
    root = tmp_path_factory.mktemp("sent")
    cfg = compose_run_config(root, TINY)
    assert run(cfg)["status"] == "completed"
    return (Path(cfg.paths.output_dir) / "run_config.yaml").read_text()


def test_a_received_logger_state_neither_picks_the_run_nor_drops_its_points(
    sent_config: str, tmp_path: Path, caplog
) -> None:
    """A received directory of ``run_config.yaml`` and ``logger_state.json`` (a run id of
    the sender's choosing, counts past any run): the resume trains from the start and logs to a
    new W&B run of its own, every evaluation point included (``debug=tiny`` trains too few
    steps per task for a training row; the unit tests above follow those)."""
    caplog.set_level(logging.WARNING, logger="curlora")
    run_dir = tmp_path / "received"
    run_dir.mkdir()
    (run_dir / "run_config.yaml").write_text(sent_config)
    (run_dir / LOGGER_STATE_FILE).write_text(json.dumps(RECEIVED_STATE))
    cfg = compose_run_config(tmp_path, [*TINY, "logger=wandb", f"resume={run_dir}"])
    assert run(cfg)["status"] == "completed"
    (offline,) = offline_runs(run_dir)
    assert offline.run.run_id != "victimrun1" and RUN_ID.fullmatch(offline.run.run_id)
    assert [v for _, v in offline.column("tasks_trained")] == [0, 1, 2, 3]
    assert warned(caplog, str(run_dir / LOGGER_STATE_FILE), "victimrun1")
