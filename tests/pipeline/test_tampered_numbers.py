"""A received or damaged run directory never silently changes a number.

Each test takes a real tiny run, changes what someone could (an edited ``run_config.yaml``
with the last task removed, a checkpoint of another base model, a flipped byte in
``heads.safetensors``) and checks the resume or the reader refuses it in one line naming
the file, while files from before the fingerprint was kept still resume.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from curlora.adapters.saving import HEADS_NAME, AdapterFileError, load_heads
from curlora.checks.config import ConfigError
from curlora.run.checksum import sidecar, write_checksum
from curlora.run.guard import RUN_CONFIG_FILE
from curlora.run.state import (
    PROGRESS_FILE,
    PROGRESS_SHA256_KEY,
    STEP_ELAPSED_KEY,
    STEP_FINGERPRINT_KEY,
    check_step_checkpoint,
    load_task_checkpoint,
    read_progress,
    step_checkpoint,
    task_checkpoint,
    write_progress,
)
from curlora.train import run
from tests.conftest import TINY, compose_run_config
from tests.pipeline import faults
from tests.pipeline.tiny_runs import completed_tiny_run

RUN = [*TINY, "logger=none"]
LAST = 2  # the index of the tiny run's last task


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed tiny run (three tasks): every file a resume or a reader reads."""
    return completed_tiny_run(tmp_path_factory.mktemp("completed"), ["logger=none"])


def _without_last_task(completed: Path, tmp_path: Path) -> Path:
    """A copy of the run as if it stopped before its last task checkpoint: the last task
    and the results gone, so resume trains the last task again."""
    run_dir = tmp_path / "run"
    shutil.copytree(completed, run_dir)
    last = task_checkpoint(run_dir, LAST)
    for path in (last, sidecar(last), run_dir / "results.json"):
        path.unlink()
    return run_dir


def _edit_config(run_dir: Path) -> None:
    """Another experiment in the same file: another learning rate and base model weights."""
    path = run_dir / RUN_CONFIG_FILE
    config = yaml.safe_load(path.read_text())
    config["optimizer"]["lr"] = float(config["optimizer"]["lr"]) * 10
    config["model"]["init_seed"] = int(config["model"]["init_seed"]) + 1
    path.write_text(yaml.safe_dump(config))


def _resume(tmp_path: Path, run_dir: Path) -> dict[str, Any]:
    return run(compose_run_config(tmp_path, [*RUN, f"resume={run_dir}"]))


def _rewrite_checkpoint(path: Path, change: Any) -> None:
    """``change(payload)`` on a task checkpoint, saved again with a matching checksum (what
    someone who edits a file can do): only the fingerprint stands in the way."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    change(payload)
    torch.save(payload, path)
    write_checksum(path)


def _one_line_naming(error: BaseException, path: Path, *words: str) -> None:
    message = str(error)
    assert str(path) in message and "\n" not in message, message
    assert all(word in message for word in words), message


# ---------------------------------------------------------------- an edited run_config.yaml
def test_an_edited_config_is_refused_naming_progress(completed: Path, tmp_path: Path) -> None:
    """Before the fingerprint: exit 0, tasks 1-2 of the old experiment and task 3 of the
    new one, results.json claiming the new config for the whole run."""
    run_dir = _without_last_task(completed, tmp_path)
    _edit_config(run_dir)
    with pytest.raises(ConfigError) as error:
        _resume(tmp_path, run_dir)
    _one_line_naming(error.value, run_dir / PROGRESS_FILE, "another experiment", RUN_CONFIG_FILE)
    assert not (run_dir / "results.json").exists()  # refused before anything was written
    assert not task_checkpoint(run_dir, LAST).exists()


def test_an_edited_config_is_refused_naming_the_task_checkpoint(
    completed: Path, tmp_path: Path
) -> None:
    """Without progress.json the last task checkpoint's own fingerprint refuses it."""
    run_dir = _without_last_task(completed, tmp_path)
    (run_dir / PROGRESS_FILE).unlink()
    _edit_config(run_dir)
    with pytest.raises(ConfigError) as error:
        _resume(tmp_path, run_dir)
    _one_line_naming(error.value, task_checkpoint(run_dir, LAST - 1), "another experiment")


def test_a_checkpoint_of_another_base_model_is_refused(completed: Path, tmp_path: Path) -> None:
    run_dir = _without_last_task(completed, tmp_path)
    (run_dir / PROGRESS_FILE).unlink()
    path = task_checkpoint(run_dir, LAST - 1)
    _rewrite_checkpoint(path, lambda p: p["record"]["fingerprint"].update(base="0" * 64))
    with pytest.raises(ConfigError) as error:
        _resume(tmp_path, run_dir)
    _one_line_naming(error.value, path, "another base model")


def test_files_without_a_fingerprint_still_resume(
    completed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Run directories written before the fingerprint was kept continue as before, and the
    files this session writes carry it."""
    run_dir = _without_last_task(completed, tmp_path)
    progress = run_dir / PROGRESS_FILE
    text = progress.read_text()
    assert '"fingerprint"' in text
    saved = json.loads(text)
    saved.pop("fingerprint")
    saved.pop(PROGRESS_SHA256_KEY)  # kept since the fingerprint: older files have neither
    progress.write_text(json.dumps(saved, indent=2) + "\n")
    for index in range(LAST):
        _rewrite_checkpoint(
            task_checkpoint(run_dir, index), lambda p: p["record"].pop("fingerprint")
        )
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert not [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    last = torch.load(task_checkpoint(run_dir, LAST), map_location="cpu", weights_only=True)
    assert set(last["record"]["fingerprint"]) == {"experiment", "base"}


# ---------------------------------------------------------------- step checkpoints
@pytest.fixture(scope="module")
def stopped_mid_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run that crashed at step 2 of its second task, with a step checkpoint every
    step: the resume continues that task from ``task_1_steps/last.ckpt``."""
    root = tmp_path_factory.mktemp("stopped")
    crash = (
        "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: reviews, "
        f"step: 2, marker: '{root / 'crashed'}'}}"
    )
    cfg = compose_run_config(root, [*RUN, "checkpoint.every_n_train_steps=1", crash])
    with pytest.raises(faults.SimulatedCrash):
        run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert step_checkpoint(run_dir, 1).is_file()
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


def test_step_checkpoints_carry_the_runs_fingerprint(stopped_mid_task: Path) -> None:
    step = torch.load(step_checkpoint(stopped_mid_task, 1), map_location="cpu", weights_only=True)
    task = torch.load(task_checkpoint(stopped_mid_task, 0), map_location="cpu", weights_only=True)
    assert step[STEP_FINGERPRINT_KEY] == task["record"]["fingerprint"]
    assert set(step[STEP_FINGERPRINT_KEY]) == {"experiment", "base"}


@pytest.mark.parametrize("part", ["experiment", "base"])
def test_a_step_checkpoint_of_another_run_is_refused(
    stopped_mid_task: Path, tmp_path: Path, part: str
) -> None:
    """A step checkpoint dropped in from another run (its checksum rewritten with it) would
    continue the task with that run's adapter and optimizer: refused naming the file,
    before anything trains."""
    run_dir = _copy(stopped_mid_task, tmp_path)
    path = step_checkpoint(run_dir, 1)
    _rewrite_checkpoint(path, lambda p: p[STEP_FINGERPRINT_KEY].update({part: "0" * 64}))
    before = path.read_bytes()
    with pytest.raises(ConfigError) as error:
        _resume(tmp_path, run_dir)
    _one_line_naming(error.value, path, "another")
    assert path.read_bytes() == before and not task_checkpoint(run_dir, 1).exists()


def test_a_step_checkpoint_without_a_fingerprint_still_resumes(
    stopped_mid_task: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Written before the fingerprint was kept: the task continues from it, as before."""
    run_dir = _copy(stopped_mid_task, tmp_path)
    _rewrite_checkpoint(step_checkpoint(run_dir, 1), lambda p: p.pop(STEP_FINGERPRINT_KEY))
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert not [r.getMessage() for r in caplog.records if "restarting task" in r.getMessage()]


def test_step_checkpoints_carry_the_runs_wall_time(stopped_mid_task: Path) -> None:
    """Stamped when saved: after the first task's record, before the crash's progress.json."""
    step = torch.load(step_checkpoint(stopped_mid_task, 1), map_location="cpu", weights_only=True)
    first_task = load_task_checkpoint(task_checkpoint(stopped_mid_task, 0))["record"]
    crashed = read_progress(stopped_mid_task)
    assert crashed is not None
    assert first_task.elapsed_s < step[STEP_ELAPSED_KEY] < crashed.elapsed_s


def test_a_run_killed_mid_task_counts_the_time_up_to_its_step_checkpoint(
    stopped_mid_task: Path, tmp_path: Path
) -> None:
    """A killed process (SIGKILL, a lost machine) leaves ``progress.json`` as the last
    evaluation point wrote it, while training went on to the step checkpoint the resume
    continues from: the run's recorded wall time goes on from the checkpoint's. The stamp
    is moved 10,000 s on, standing in for hours of training before the kill, so the test
    tells it apart from the few seconds a tiny run takes."""
    run_dir = _copy(stopped_mid_task, tmp_path)
    first_task = load_task_checkpoint(task_checkpoint(run_dir, 0))["record"]
    first_task.status = "running"
    write_progress(run_dir, first_task)  # what the evaluation after the first task wrote
    stamp = 0.0

    def later(payload: dict[str, Any]) -> None:
        nonlocal stamp
        payload[STEP_ELAPSED_KEY] = stamp = payload[STEP_ELAPSED_KEY] + 10_000.0

    _rewrite_checkpoint(step_checkpoint(run_dir, 1), later)
    started = time.perf_counter()
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    took = time.perf_counter() - started
    resumed = read_progress(run_dir)
    assert resumed is not None
    assert stamp <= resumed.elapsed_s <= stamp + took


@pytest.mark.parametrize("stamp", [float("inf"), float("nan"), -5.0, "3600", [1.0], None])
def test_a_step_checkpoint_time_that_is_no_time_counts_nothing(
    stopped_mid_task: Path, tmp_path: Path, stamp: Any
) -> None:
    """An edited stamp (or one a bad writer left) is not a wall time: 0 s, and the run's
    time is counted from its records as it was before the stamp was kept."""
    run_dir = _copy(stopped_mid_task, tmp_path)
    path = step_checkpoint(run_dir, 1)
    fingerprint = torch.load(path, map_location="cpu", weights_only=True)[STEP_FINGERPRINT_KEY]
    assert check_step_checkpoint(run_dir, 1, fingerprint) > 0
    _rewrite_checkpoint(path, lambda p: p.update({STEP_ELAPSED_KEY: stamp}))
    assert check_step_checkpoint(run_dir, 1, fingerprint) == 0.0


# ---------------------------------------------------------------- heads.safetensors
def test_heads_carry_the_sha256_of_their_tensors(completed: Path) -> None:
    path = completed / HEADS_NAME
    with safe_open(path, framework="pt") as f:
        assert (f.metadata() or {}).get("sha256")
    heads = load_heads(completed)
    plain = load_file(path)
    assert heads.keys() == plain.keys()
    assert all(torch.equal(heads[name], plain[name]) for name in plain)


def test_a_flipped_byte_in_the_heads_is_refused(completed: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / HEADS_NAME
    data = bytearray((completed / HEADS_NAME).read_bytes())
    data[-1] ^= 0x40  # the file ends with tensor data: the header stays valid JSON
    path.write_bytes(bytes(data))
    with pytest.raises(AdapterFileError) as error:
        load_heads(run_dir)
    _one_line_naming(error.value, path, "damaged", "checksum")


def test_heads_without_the_sha256_load_only_with_the_opt_in(
    completed: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_file(load_file(completed / HEADS_NAME), str(run_dir / HEADS_NAME))  # no metadata
    with pytest.raises(AdapterFileError, match=r"no sha256.*allow_unchecked=True"):
        load_heads(run_dir)
    assert load_heads(run_dir, allow_unchecked=True)
