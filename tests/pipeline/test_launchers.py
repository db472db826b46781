"""Sweeps through hydra-submitit-launcher: jobs in their own processes (hydra/launcher=local) and
the SLURM config's documented knobs. Commands as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli

# The README's command as written, with the README-command tests' debug=tiny (they do not
# run it again: tests/pipeline/test_readme_commands.py, RUN_ELSEWHERE).
SUBMITIT_SWEEP = ["-m", "hydra/launcher=local", "seed=1311,1312,1313", *TINY]


@pytest.mark.slow  # about 20 s: submitit's local launcher
def test_a_sweep_runs_as_local_submitit_jobs(tmp_path: Path) -> None:
    done = run_cli(SUBMITIT_SWEEP, cwd=tmp_path, OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    results = sorted((tmp_path / "logs" / "multiruns").glob("*/*/results.json"))
    assert [p.parent.name for p in results] == ["0_seed=1311", "1_seed=1312", "2_seed=1313"]
    assert {json.loads(p.read_text())["status"] for p in results} == {"completed"}
    # Each job ran in a process of its own, through submitit.
    assert list((tmp_path / "logs" / "multiruns").glob("*/.submitit/*"))


@pytest.mark.slow  # about 15 s: submitit's local launcher
def test_a_failed_submitit_job_is_named_and_the_sweep_exits_1(tmp_path: Path) -> None:
    done = run_cli(
        ["-m", "hydra/launcher=local", "rank=4,9999", "debug=tiny"],
        cwd=tmp_path,
        OMP_NUM_THREADS="1",
    )
    assert done.returncode == 1
    assert "1 job(s) of the sweep did not complete: 1_rank=9999" in done.stderr


def test_the_local_launcher_lifts_submitits_hour_per_job(tmp_path: Path) -> None:
    # submitit_local's timeout_min is 60: a longer job (the paper's run, a words-grid job
    # on a CPU) would be stopped mid-task.
    done = run_cli(["hydra/launcher=local", "--cfg", "hydra", "-p", "hydra.launcher"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher" in (
        done.stdout
    )
    assert "timeout_min: 4320" in done.stdout


def test_the_slurm_launcher_config_has_its_documented_knobs(tmp_path: Path) -> None:
    done = run_cli(["hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for line in (
        "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "gpus_per_node: 1",
        "tasks_per_node: 1",
        "timeout_min: 720",
        "max_num_timeout: 3",
        "partition: null",
    ):
        assert line in done.stdout
