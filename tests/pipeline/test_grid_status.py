"""``curlora-reproduce --status``: a grid's progress read from its files, nothing run.

The table2_words grid (configs/reproduce/table2_words.yaml) plans, per seed, LoRA's check
(3 rates × 3 seeds = 9 jobs), then curlora, lora_paper and o_lora × 3 rates × 3 seeds
(27), the headline seeds 1314 and 1315 for 4 methods (8) and replay and joint × 3 seeds
(6). The stores below are written by hand in the shape the grid stores jobs in.
"""

from __future__ import annotations

import json
from pathlib import Path

from curlora import reproduce
from curlora.grid.guard import GridLock
from curlora.reporting.protocol_check import ProtocolCheck, record
from curlora.run.guard import RunLock
from curlora.run.record import Evaluation, RunRecord
from curlora.run.state import write_progress

BWT = {"n": 3, "mean": -0.015, "std": 0.03, "low": -0.1, "high": 0.07, "test_noise": True}
FALLBACK_CHECK = "fallback/lr_grid/s{seed}/lora/optimizer.lr_{lr}/0_run"


def _status(tmp_path: Path, capsys) -> str:
    code = reproduce.main(
        [
            "--status",
            "reproduce=table2_words",
            f"reproduce.dir={tmp_path / 'grid'}",
            f"reproduce.results_dir={tmp_path / 'results'}",
            f"reproduce.report_dir={tmp_path}",
            f"reproduce.readme={tmp_path / 'README.md'}",
        ]
    )
    assert code == 0
    return capsys.readouterr().out


def _job(job_dir: Path, elapsed_s: float, done: int) -> None:
    """A job's files: complete (``done`` = 3) or interrupted after ``done`` tasks; its
    progress.json written by the run's own writer."""
    job_dir.mkdir(parents=True)
    status = "completed" if done == 3 else "running"
    after = [Evaluation({}) if i < done else None for i in range(3)]
    record = RunRecord(["a", "b", "c"], after_task=after, status=status, elapsed_s=elapsed_s)
    write_progress(job_dir, record)
    (job_dir / "results.json").write_text(json.dumps({"status": status}))
    for name in ("run_config.yaml", "outcomes.json"):
        (job_dir / name).write_text("{}\n")


def test_an_undecided_check_counts_its_jobs_and_plans_nothing_after_it(tmp_path, capsys) -> None:
    out = _status(tmp_path, capsys)
    assert out.splitlines()[:3] == [
        "table2_words: 0 of 9 planned jobs stored",
        "  protocol check, first protocol: 0 of 9",
        "  the rest of the grid: planned once the protocol check decides (its jobs above)",
    ]
    assert "grid process: none; run the same curlora-reproduce command to continue" in out
    assert "time left: 9 job(s); no estimate until a job of this protocol is stored" in out
    assert not (tmp_path / "grid").exists()  # nothing written, no lock taken


def test_a_fallback_grid_counts_each_phase_and_estimates_from_its_own_jobs(
    tmp_path, capsys
) -> None:
    results, grid = tmp_path / "results", tmp_path / "grid"
    results.mkdir()
    record(results, [ProtocolCheck("first", "lora", 1e-3, [1311], BWT, BWT, 0.02, False)])
    for seed in (1311, 1312, 1313):  # the first protocol's check: 9 jobs of 10 min
        for lr in ("0.0003", "0.001", "0.003"):
            _job(results / "runs" / f"lr_grid/s{seed}/lora/optimizer.lr_{lr}/0_run", 600, 3)
    # Two fallback jobs stored (60 and 80 min), one interrupted after its first task.
    _job(results / "runs" / FALLBACK_CHECK.format(seed=1311, lr="0.0003"), 3600, 3)
    _job(results / "runs" / FALLBACK_CHECK.format(seed=1311, lr="0.001"), 4800, 3)
    _job(grid / FALLBACK_CHECK.format(seed=1311, lr="0.003"), 1500, 1)
    out = _status(tmp_path, capsys)
    assert out.splitlines()[:8] == [
        "table2_words: 11 of 59 planned jobs stored",
        "  protocol check, first protocol: 9 of 9",
        "  protocol check, fallback protocol: 2 of 9",
        # The question's pair first (LoRA's rate grid is the check's), then the others.
        "  rate grid, the question (curlora, lora): 0 of 9",
        "  headline seeds, the question (curlora, lora): 0 of 4",
        "  rate grid, other headline methods (lora_paper, o_lora): 0 of 18",
        "  headline seeds, other headline methods (lora_paper, o_lora): 0 of 4",
        "  references: 0 of 6",
    ]
    job = FALLBACK_CHECK.format(seed=1311, lr="0.003")
    assert (
        f"  interrupted: resumes from its checkpoints: {job} "
        "(1 of 3 tasks; 25 min at its last evaluation point)"
    ) in out
    # 48 fallback jobs left × the median of 60 and 80 min / 2 at once = 1,680 min; the
    # first protocol's 10-min jobs are not part of the estimate.
    assert "time left: about 28 h 00 min for 48 job(s) at 2 at once" in out
    assert "median wall time of 2 stored job(s) of this protocol, 1 h 10 min" in out


def test_a_grid_process_holding_the_lock_is_named_and_its_running_jobs_are_in_progress(
    tmp_path, capsys
) -> None:
    """A job is in progress when a process holds its run directory's lock; one the grid
    stopped, or has not come back to yet (it runs other parts first), is interrupted."""
    grid = tmp_path / "grid"
    running = grid / "lr_grid/s1311/lora/optimizer.lr_0.001/0_run"
    stopped = grid / "lr_grid/s1311/lora/optimizer.lr_0.003/0_run"
    _job(running, 0, 0)
    _job(stopped, 600, 1)
    with GridLock(grid), RunLock(running):
        out = _status(tmp_path, capsys)
    assert "grid process: running (pid " in out
    assert "  in progress: lr_grid/s1311/lora/optimizer.lr_0.001/0_run (0 of 3 tasks)" in out
    assert (
        "  interrupted: resumes from its checkpoints: lr_grid/s1311/lora/optimizer.lr_0.003/0_run"
        " (1 of 3 tasks; 10 min at its last evaluation point)"
    ) in out
    # The probes released their shared locks at once: both can be taken again now.
    with GridLock(grid), RunLock(running):
        pass


def test_a_damaged_check_record_is_said_not_guessed(tmp_path, capsys) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "protocol_check.json").write_text("{not json")
    out = _status(tmp_path, capsys)
    assert "  the protocol check's record cannot be read: " in out
    assert "  the rest of the grid: planned once the protocol check decides" in out


def test_the_committed_cpu_grid_is_complete_and_says_so(tmp_path, capsys) -> None:
    """docs/reproduction/table1_cpu holds all 77 planned jobs (30 + 8 + 18 + 21)."""
    from tests.conftest import REPO_ROOT

    store = REPO_ROOT / "docs" / "reproduction" / "table1_cpu"
    code = reproduce.main(
        ["--status", f"reproduce.dir={tmp_path}", f"reproduce.results_dir={store}"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "table1_cpu: 77 of 77 planned jobs stored"
    assert "grid process: none (every planned job is stored)" in out
    assert "time left: none in the planned phases" in out


def test_a_damaged_progress_file_is_named_and_its_job_still_counted(
    tmp_path, capsys, caplog
) -> None:
    job = tmp_path / "grid" / "lr_grid/s1311/lora/optimizer.lr_0.001/0_run"
    job.mkdir(parents=True)
    (job / "progress.json").write_text('{"tasks": ["a"]')  # cut short
    out = _status(tmp_path, capsys)
    assert "interrupted: resumes from its checkpoints: lr_grid/s1311/lora/" in out
    assert f"{job / 'progress.json'} is damaged" in caplog.text
