"""The command line as a user meets it: entry points, exit codes, one-line errors, signals,
run directory names. Every command runs in a subprocess from a fresh working directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TINY, compose_run_config, run_cli
from tests.pipeline.heavy_probe import probe_train

FAULTS = {"PYTHONPATH": str(REPO_ROOT)}  # so Hydra can build tests.pipeline.faults callbacks


def _runs(cwd: Path) -> list[Path]:
    root = cwd / "logs" / "runs"
    return sorted(root.iterdir()) if root.exists() else []


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def script_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess, Path]:
    """``curlora-train debug=tiny`` run once: the script's own test, and the uninterrupted
    reference that the SIGTERM test's resumed run must match (one tiny run fewer)."""
    cwd = tmp_path_factory.mktemp("curlora-train")
    script = Path(sys.executable).parent / "curlora-train"
    done = subprocess.run(
        [str(script), *TINY], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    return done, cwd


def test_curlora_train_script_runs(script_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    done, cwd = script_run
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = _runs(cwd)
    assert _results(run_dir)["status"] == "completed"


def test_missing_required_value_is_one_line_exit_2_and_leaves_no_directory(tmp_path: Path) -> None:
    done = run_cli(["model=hub"], cwd=tmp_path)
    assert done.returncode == 2
    assert "model.name_or_path must be set" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert _runs(tmp_path) == []  # refused before it started: no stray run directory


def test_typo_key_is_refused_before_anything_loads(tmp_path: Path) -> None:
    done = run_cli(["+foo=1", *TINY], cwd=tmp_path)
    assert done.returncode == 2 and "'foo' is not a setting" in done.stderr
    assert "Traceback" not in done.stderr and _runs(tmp_path) == []
    # The terminal gets one line (stderr), not a log line beside it, and the fresh working
    # directory is left as it was: no empty logs/runs/ that the refused run made.
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [done.stderr.strip()] and lines[0].startswith("error: invalid configuration")
    assert list(tmp_path.iterdir()) == []


def test_two_hydra_modes_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    # Hydra refuses `-m ... --cfg job` with a ValueError traceback (exit 1, "a bug").
    done = run_cli(["-m", "seed=1,2", "--cfg", "job"], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: invalid command line: --multirun and --cfg cannot be combined; use one of "
        "--run, --multirun, --cfg, --info, --shell-completion (a sweep's config: --cfg job "
        "without -m)"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["+foo=1", "rank=-3", "optimizer.lr=fast"])
def test_a_bad_value_is_refused_before_torch_or_lightning_load(tmp_path: Path, bad: str) -> None:
    args = [bad, *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    done = probe_train(args)
    assert "exit 2" in done.stdout and "invalid configuration" in done.stderr, done.stderr
    assert "heavy: []" in done.stdout
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_exits_4_with_results(tmp_path: Path) -> None:
    poison = "+callbacks.fault={_target_: tests.pipeline.faults.PoisonHead, task: reviews, step: 1}"
    done = run_cli([*TINY, poison], cwd=tmp_path, **FAULTS)
    assert done.returncode == 4, done.stderr[-3000:]
    (run_dir,) = _runs(tmp_path)
    results = _results(run_dir)
    assert results["status"].startswith("stopped: non-finite loss")
    assert all(v is not None for v in results["accuracy_matrix"][0])  # task 1 is kept


def test_run_directory_names_say_what_defines_the_run(tmp_path: Path) -> None:
    # One run through the CLI: the directory it creates carries the name.
    assert run_cli(["method=curlora", "strategy=ewc", *TINY], cwd=tmp_path).returncode == 0
    assert [p.name.split("_", 2)[2] for p in _runs(tmp_path)] == ["curlora_r16_ewc_s1311"]
    # The name is the resolver in hydra.run.dir (configs/hydra/default.yaml): no rank for a
    # method without one; the strategy when it is not plain sequential.
    from curlora.resolvers import run_tag

    for overrides, name in (
        (["method=head_only", "strategy=ewc"], "head_only_ewc_s1311"),
        (["method=lora", "rank=8", "seed=7"], "lora_r8_s7"),
    ):
        cfg = compose_run_config(tmp_path, [*overrides, *TINY])
        assert run_tag(cfg.method, cfg.strategy, cfg.seed) == name


def test_sigterm_checkpoints_exits_143_and_resume_matches(
    tmp_path: Path, script_run: tuple[subprocess.CompletedProcess, Path]
) -> None:
    # The reference: the same tiny run, uninterrupted (``curlora-train`` runs train.py's main).
    reference_done, reference_dir = script_run
    assert reference_done.returncode == 0, reference_done.stderr[-3000:]
    (reference,) = _runs(reference_dir)

    term = "+callbacks.fault={_target_: tests.pipeline.faults.SignalAt, task: reviews, step: 1}"
    done = run_cli([*TINY, term], cwd=tmp_path, **FAULTS)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (run_dir,) = _runs(tmp_path)
    assert _results(run_dir)["status"] == "interrupted by SIGTERM"
    # The batch in flight was finished and saved before stopping.
    assert (run_dir / "checkpoints" / "task_1_steps" / "last.ckpt").exists()
    resumed = run_cli([f"resume={run_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The run's log says the task was taken up mid-way, at the step the signal left it
    # (the batch in flight when SIGTERM came was finished: one optimizer step of reviews).
    said = (run_dir / "train.log").read_text()
    kept = "resume: task 2 continues from its step checkpoint (optimizer step 1 of the task)"
    assert kept in said, said[-3000:]
    numbers = ("accuracy_matrix", "initial_accuracy", "perplexity", "metrics")
    assert {k: _results(run_dir)[k] for k in numbers} == {
        k: _results(reference)[k] for k in numbers
    }


def test_sigint_right_after_start_is_one_line_exit_130(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *TINY],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # importing and composing the config
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "interrupted by SIGINT" in stderr


def test_an_interrupt_recorded_before_the_guard_is_not_lost() -> None:
    """Python swallows a KeyboardInterrupt raised inside a __del__; the entry point's
    handler records the signal and the run's guard takes it over."""
    import train  # the root entry point module (tests run from the repository root)

    from curlora.run.interrupts import InterruptGuard, RunInterrupted

    early = train.EarlyInterrupt()
    previous = signal.signal(signal.SIGINT, early)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # what a __del__ does with it
            early(signal.SIGINT, None)
        with InterruptGuard() as guard, pytest.raises(RunInterrupted) as raised:
            guard.check()
        assert raised.value.exit_code == 130
    finally:
        signal.signal(signal.SIGINT, previous)


def test_several_devices_are_refused_in_one_line(tmp_path: Path) -> None:
    done = run_cli([*TINY, "trainer.accelerator=cpu", "trainer.devices=2"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "trainer.devices=2" in done.stderr and "Traceback" not in done.stderr
    assert not list((tmp_path / "logs").glob("runs/*"))  # refused before a run directory
