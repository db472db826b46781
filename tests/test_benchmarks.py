"""The training-throughput benchmark runs end to end (tiny model, one round): its table has
a row per method with the trainable count that apply_adapter reports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "training_throughput.py"


@pytest.mark.slow  # about 20 s of training in subprocesses
def test_training_throughput_prints_a_row_per_method(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARK), "--model", "tiny_llama"]
    command += ["--methods", "lora,curlora,head_only", "--rounds", "1", "--steps", "1"]
    command += ["--batch", "2", "--seq", "16", "--threads", "1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"lora", "curlora", "head_only"}
    assert rows["head_only"][1] == "0" and rows["lora"][3] == "1.00"
    assert all(float(row[2]) > 0 for row in rows.values())


@pytest.mark.slow  # four short training jobs in subprocesses: minutes on 2 cores
def test_grid_throughput_prints_the_ceiling_the_step_rates_and_the_ratio(tmp_path: Path) -> None:
    script = BENCHMARK.with_name("grid_throughput.py")
    command = [sys.executable, str(script), "--tiny", "--batch", "2", "--seq", "16"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("fp32 matmul 1024³") for line in lines)
    steps = [line for line in lines if " step (batch 2 × 16 tokens" in line]
    assert len(steps) == 2 and all("of the matmul rate" in line for line in steps)
    ratio = float(lines[-1].rsplit("ratio ", 1)[1])
    assert ratio > 0


def test_words_head_benchmark_prints_both_ratios(tmp_path: Path) -> None:
    """benchmarks/words_head.py on the tiny model, one round: a training-step line and an
    evaluation line, each with two positive words/linear ratios."""
    script = BENCHMARK.with_name("words_head.py")
    command = [sys.executable, str(script), "--rounds", "1", "--threads", "1"]
    command += ["--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "words/linear" in line]
    assert [line.split(",")[0].split(" (")[0] for line in lines] == [
        "training step",
        "evaluation point",
    ]
    for line in lines:
        ratios = [float(part.split()[0].rstrip(",")) for part in line.split(" x")[1:]]
        assert len(ratios) == 2 and all(r > 0 for r in ratios), line


def test_report_bootstrap_benchmark_prints_its_ratio_and_the_shared_draws(tmp_path: Path) -> None:
    """benchmarks/report_bootstrap.py on the committed words grid, one round: both builds
    write the same report (the script exits 1 otherwise), and the shared build drew each
    task set once and reused it."""
    script = BENCHMARK.with_name("report_bootstrap.py")
    command = [sys.executable, str(script), "--rounds", "1", "--grid", "table2_words"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.splitlines()[-1]
    hits, draws = (int(n) for n in re.search(r"\((\d+) hits, (\d+) draws\)", last).groups())
    assert draws >= 1 and hits > draws, last
    assert float(last.rsplit("shared / fresh ", 1)[1]) > 0


def test_grid_schedule_replays_the_committed_grid_both_ways(tmp_path: Path) -> None:
    """The scheduler benchmark replays table2_words's recorded job times (sleeps, about a
    second each way at this scale) with a barrier between stages and without: each way's
    idle worker time is its makespan × workers minus the same recorded job time."""
    script = BENCHMARK.with_name("grid_schedule.py")
    command = [sys.executable, str(script), "--grid", "table2_words", "--minute-s", "0.0002"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    head, *ways, last = done.stdout.splitlines()
    work_h = float(re.search(r"([\d.]+) h of recorded job time", head).group(1))
    assert work_h > 0 and " 2 workers" in head
    for way, name in zip(ways, ("stages", "scheduler"), strict=True):
        found = re.search(r"(\w+): makespan ([\d.]+) h, idle worker time (-?[\d.]+) h", way)
        assert found and found.group(1) == name
        makespan, idle = float(found.group(2)), float(found.group(3))
        assert idle == pytest.approx(2 * makespan - work_h, abs=0.1)  # printed rounded
    assert last.startswith("makespan ratio scheduler / stages ")
