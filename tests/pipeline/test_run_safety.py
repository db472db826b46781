"""Nothing lost, nothing wrong: run directories belong to one experiment and one process,
checkpoint writes are atomic, damaged files are named and skipped, bad values are refused
before anything loads, and one bad job does not sink a sweep."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import open_dict

from curlora.checks.config import ConfigError, validate_config
from curlora.run.atomic import OutputError, remove_stale_temp_files
from curlora.run.checksum import verify_checksum
from curlora.run.guard import RunLock
from curlora.run.state import PROGRESS_SHA256_KEY, AtomicCheckpointIO, json_sha256
from curlora.train import run
from tests.conftest import FAST, REPO_ROOT, TINY, compose_run_config, figures_off, run_cli
from tests.pipeline import faults

SHORT = ["trainer.max_epochs=1"]
NUMBERS = ("accuracy_matrix", "initial_accuracy", "perplexity", "metrics")


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    return {k: results[k] for k in NUMBERS}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A completed short run: (its directory, its results)."""
    cfg = compose_run_config(tmp_path_factory.mktemp("finished"), [*FAST, *SHORT])
    return Path(cfg.paths.output_dir), run(cfg)


def _in(run_dir: Path, tmp_path: Path, *overrides: str):
    cfg = compose_run_config(tmp_path, [*FAST, *SHORT, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


# ---------------------------------------------------------------- one directory, one run
def test_a_new_run_never_inherits_another_runs_checkpoints(finished, tmp_path: Path) -> None:
    source, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    before = (copy / "results.json").read_text()
    with pytest.raises(ConfigError, match=r"already holds a different run.*optimizer.lr"):
        run(_in(copy, tmp_path, "optimizer.lr=0.05"))
    assert (copy / "results.json").read_text() == before


def test_the_same_experiment_in_its_directory_is_not_run_twice(finished, tmp_path) -> None:
    source, results = finished
    start = time.perf_counter()
    again = run(_in(source, tmp_path))
    assert again == json.loads((source / "results.json").read_text())
    assert _numbers(again) == _numbers(results)
    assert time.perf_counter() - start < 5  # read from disk, nothing retrained


def test_two_processes_never_share_a_directory(finished, tmp_path: Path) -> None:
    source, _ = finished
    with RunLock(source), pytest.raises(ConfigError, match="in use by another running process"):
        run(_in(source, tmp_path))


def test_two_runs_started_at_the_same_moment_keep_their_own_results(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    processes = [
        subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "train.py"), *TINY, f"alpha={alpha}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for alpha in (0.5, 2.0)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
    runs = sorted((tmp_path / "logs" / "runs").iterdir())
    assert len(runs) == 2
    alphas = set()
    for run_dir in runs:
        results = json.loads((run_dir / "results.json").read_text())
        saved = (run_dir / "run_config.yaml").read_text()
        assert results["status"] == "completed"
        assert f"alpha: {results['config']['alpha']}" in saved
        alphas.add(results["config"]["alpha"])
    assert alphas == {0.5, 2.0}


# ---------------------------------------------------------------- atomic checkpoint writes
def test_checkpoint_temp_file_is_beside_it_even_with_tmpdir_elsewhere(tmp_path, monkeypatch):
    elsewhere = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path / "tmp"
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    seen: list[Path] = []
    real_save = torch.save

    def spy(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(Path(f))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    assert [p.parent for p in seen] == [path.parent]
    assert torch.load(path) == {"step": 1}


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    # A process that is killed half-way through writing the next checkpoint.
    script = f"""
import os, torch
from curlora.run.state import AtomicCheckpointIO
def half_then_killed(obj, f, *args, **kwargs):
    open(f, "wb").write(b"x" * 1000)
    os._exit(9)
torch.save = half_then_killed
AtomicCheckpointIO().save_checkpoint({{"step": 2}}, {str(path)!r})
"""
    env = {**os.environ, "TMPDIR": "/dev/shm" if Path("/dev/shm").is_dir() else str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert done.returncode == 9
    assert torch.load(path) == {"step": 1}  # the good checkpoint is intact
    stale = remove_stale_temp_files(tmp_path)
    assert len(stale) == 1 and stale[0].parent == path.parent
    # The checkpoint and its checksum, which still matches it (the kill came before both).
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    verify_checksum(path)


# ---------------------------------------------------------------- damaged run files
CRASH = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: %s, step: %d, marker: '%s'}"
)


@pytest.fixture
def no_plots() -> Iterator[None]:
    """The runs below draw no figures: no check here reads them."""
    with figures_off():
        yield


def _crashed_run(run_config, tmp_path: Path, task: str, step: int) -> Path:
    cfg = run_config(*SHORT, CRASH % (task, step, tmp_path / "crashed"))
    with pytest.raises(faults.SimulatedCrash):
        run(cfg)
    return Path(cfg.paths.output_dir)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: (d / "progress.json").write_text('{"tasks": ["pa'), "progress.json"),
        (lambda d: (d / "progress.json").write_text('{"status": "running"}'), "progress.json"),
        (lambda d: (d / "checkpoints" / "task_0.ckpt").write_bytes(b""), "task_0.ckpt"),
        (
            lambda d: (d / "checkpoints" / "task_1_steps" / "last.ckpt").write_bytes(b"\0" * 99),
            "last.ckpt",
        ),
    ],
    ids=["truncated-progress", "progress-wrong-shape", "empty-task-ckpt", "damaged-step-ckpt"],
)
def test_resume_names_a_damaged_file_and_falls_back(
    run_config, tmp_path: Path, finished, damage, named: str, caplog, no_plots
) -> None:
    # Crash in task 1 after its step-20 checkpoint; then damage one file.
    run_dir = _crashed_run(run_config, tmp_path, "reviews", 22)
    damage(run_dir)
    resumed = run(run_config(f"resume={run_dir}"))
    assert resumed["status"] == "completed"
    assert any(named in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)
    # Falling back to an earlier good state changes nothing: the numbers are the same.
    assert _numbers(resumed) == _numbers(finished[1])


def test_a_failed_resume_never_overwrites_good_state(run_config, tmp_path: Path, no_plots) -> None:
    run_dir = _crashed_run(run_config, tmp_path, "reviews", 22)
    progress = json.loads((run_dir / "progress.json").read_text())
    progress["tasks"] = ["pairs", "moods", "reviews"]  # not what the run trained
    # With its sha256 rewritten to match: else it is merely damaged, and resume goes on.
    progress.pop(PROGRESS_SHA256_KEY)
    progress[PROGRESS_SHA256_KEY] = json_sha256(progress)
    (run_dir / "progress.json").write_text(json.dumps(progress))
    before = {p: p.read_bytes() for p in (run_dir / "progress.json", run_dir / "results.json")}
    with pytest.raises(ConfigError, match=r"progress.json"):
        run(run_config(f"resume={run_dir}"))
    assert {p: p.read_bytes() for p in before} == before


def test_resume_refuses_overrides_that_change_the_experiment(
    run_config, tmp_path, caplog, no_plots
):
    run_dir = _crashed_run(run_config, tmp_path, "reviews", 22)
    for override in ("rank=8", "method=lora", "tasks=[moods,reviews,pairs]"):
        cfg = run_config(f"resume={run_dir}", override)
        with pytest.raises(ConfigError, match=r"would change the experiment") as error:
            run(cfg, overrides=[f"resume={run_dir}", override])
        assert override.split("=")[0] in str(error.value)
    # An override that does not change the numbers is this machine's setting: it applies.
    cfg = run_config(f"resume={run_dir}", "logger=csv")
    results = run(cfg, overrides=[f"resume={run_dir}", "logger=csv"])
    assert results["status"] == "completed"
    assert any((run_dir / "csv").glob("version_*/metrics.csv"))
    assert not any("ignoring logger=csv" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- refused up front
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("optimizer.weight_decay=-1", ["optimizer", "weight_decay", "-1"]),
        ("trainer.accumulate_grad_batches=0", ["trainer.accumulate_grad_batches", "0"]),
        ("seed=4294967296", ["seed", "4294967296", "4294967295"]),
        ("trainer.limit_train_batches=0", ["trainer.limit_train_batches", "trains nothing"]),
        ("trainer.precision=bogus", ["trainer.precision", "bogus"]),
        ("trainer.devices=2", ["trainer.devices=2", "2 processes", "trainer=ddp_cpu"]),
        ("data.num_workers=-1", ["data.num_workers", "-1"]),
        ("+foo=1", ["foo", "not a setting"]),
        ("+optimizer.lrr=1", ["optimizer", "lrr"]),
    ],
)
def test_bad_values_are_refused_before_anything_loads(run_config, override, words) -> None:
    with pytest.raises(ConfigError) as error:
        validate_config(run_config(override))
    for word in words:
        assert word in str(error.value), str(error.value)


def test_unusable_output_places_and_model_paths_are_refused(run_config, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    cfg = run_config()
    with open_dict(cfg):
        cfg.paths.output_dir = str(a_file)
    with pytest.raises(ConfigError, match=r"paths.output_dir.*it is a file"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match=r"model.name_or_path='/nonexistent'"):
        validate_config(run_config("model=hub", "model.name_or_path=/nonexistent"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_an_accelerator_the_machine_lacks_is_refused(run_config) -> None:
    with pytest.raises(ConfigError, match=r"trainer.accelerator='gpu'.*no gpu"):
        validate_config(run_config("trainer.accelerator=gpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_the_machine_trainer_configs_check_what_they_need(run_config) -> None:
    validate_config(run_config("trainer=cpu"))
    validate_config(run_config("trainer=ddp_cpu"))
    for gpu_config in ("trainer=gpu", "trainer=ddp"):
        with pytest.raises(ConfigError, match=r"trainer.accelerator='gpu'"):
            validate_config(run_config(gpu_config))


def test_an_adapter_that_never_moves_is_flagged(run_config) -> None:
    # alpha = 1e30: Adam's second moment overflows and U stays exactly 0.
    results = run(run_config(*SHORT, "alpha=1e30"))
    inert = [w for w in results["warnings"] if w["reason"] == "inert_adapter"]
    assert [w["evaluated_after"] for w in inert] == ["pairs", "reviews", "moods"]


# ---------------------------------------------------------------- sweeps and outputs
def test_one_bad_job_does_not_sink_a_sweep(tmp_path: Path) -> None:
    done = run_cli(["-m", "rank=100000,4", *TINY], cwd=tmp_path)
    assert done.returncode == 1
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    good = json.loads((sweep / "1_rank=4" / "results.json").read_text())
    assert good["status"] == "completed"
    assert "1 job(s) of the sweep did not complete: 0_rank=100000" in done.stderr
    assert "rank=100000" in done.stderr and "Traceback" not in done.stderr


def test_a_read_only_disk_mid_run_is_one_line_and_the_results_reach_the_log(
    run_config, monkeypatch, caplog
) -> None:
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if faults.READ_ONLY["on"]:
            raise OSError(30, "Read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setitem(faults.READ_ONLY, "on", False)
    fault = "+callbacks.fault={_target_: tests.pipeline.faults.ReadOnlyFrom, task: reviews}"
    with pytest.raises(OutputError, match=r"could not write .*Read-only file system"):
        run(run_config(*SHORT, "checkpoint.every_n_train_steps=5", fault))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(m.startswith("results (not saved)") and '"accuracy_matrix"' in m for m in errors)


def test_a_grid_job_survives_retuning_its_methods_default_rate(tmp_path: Path) -> None:
    """optimizer.lr is what a run trains with; method.lr only its default. A job that set
    optimizer.lr is the same experiment after the method's default rate changes, while a
    different optimizer.lr is a different experiment."""
    from curlora.run.guard import config_differences, experiment_view

    job = compose_run_config(tmp_path, [*TINY, "method=lora", "optimizer.lr=0.003"])
    retuned = compose_run_config(
        tmp_path, [*TINY, "method=lora", "optimizer.lr=0.003", "method.lr=0.01"]
    )
    other = compose_run_config(tmp_path, [*TINY, "method=lora", "optimizer.lr=0.001"])
    assert config_differences(experiment_view(job), experiment_view(retuned)) == []
    # Memory savers do not change the experiment either (a resume may switch them).
    saver = compose_run_config(
        tmp_path, [*TINY, "method=lora", "optimizer.lr=0.003", "model.gradient_checkpointing=true"]
    )
    assert config_differences(experiment_view(job), experiment_view(saver)) == []
    assert config_differences(experiment_view(job), experiment_view(other)) == [
        "optimizer.lr: 0.003 → 0.001"
    ]


def test_a_run_saved_before_settings_were_added_is_the_same_experiment(tmp_path: Path) -> None:
    """A run saved before the head and retention groups and the tasks' prompt keys existed
    (the committed grid's jobs): at their defaults it is the same experiment, so a grid
    rerun skips it; under head=words (or with a retention suite) it is not."""
    from curlora.run.guard import config_differences, experiment_view

    current = experiment_view(compose_run_config(tmp_path, [*TINY, "method=lora"]))
    saved = json.loads(json.dumps(current))
    del saved["head"], saved["retention"]
    for spec in saved["data"]["task_specs"].values():
        for key in ("class_names", "template", "label_words"):
            spec.pop(key, None)
    saved["data"]["task_specs"].pop("unused_task", None)
    # The default trainer names Lightning's defaults since (one process, one machine).
    assert current["trainer"]["strategy"] == "auto" and current["trainer"]["num_nodes"] == 1
    del saved["trainer"]["strategy"], saved["trainer"]["num_nodes"]
    current["data"]["task_specs"]["unused_task"] = {"num_classes": 2}  # added, not trained
    assert config_differences(saved, current) == []
    two_nodes = json.loads(json.dumps(current))
    two_nodes["trainer"]["num_nodes"] = 2
    assert config_differences(saved, two_nodes) == ["trainer.num_nodes: '(absent)' → 2"]
    words = experiment_view(compose_run_config(tmp_path, [*TINY, "method=lora", "head=words"]))
    assert any(d.startswith("head.name: '(absent)'") for d in config_differences(saved, words))
    assert any(".template: '(absent)'" in d for d in config_differences(saved, words))
    kept = experiment_view(
        compose_run_config(tmp_path, [*TINY, "method=lora", "retention=offline"])
    )
    assert any(d.startswith("retention.suite") for d in config_differences(saved, kept))
