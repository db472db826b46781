"""``curlora-reproduce`` on the tiny model and synthetic data: the whole grid, interrupted,
run again (finished jobs are not rerun), and a REPORT.md whose numbers are the runs'."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curlora.reporting.reproduction import choose_learning_rates, load_grid
from curlora.reporting.stats import summarize

CLAIMS = ("C1", "C2", "C3a", "C3b", "C4", "C5")


def _reproduce(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "curlora-reproduce"), "reproduce=tiny", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the whole process group can be interrupted
        # A shell's background job (`pytest ... &`, nohup) inherits SIGINT ignored, and the
        # grid keeps an ignored SIGINT ignored (as under nohup it should): give the grid
        # the default Ctrl+C of a terminal, which is what this test interrupts it with.
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL),
    )


def _finished(root: Path) -> dict[Path, float]:
    found = {}
    for path in root.rglob("results.json"):
        if json.loads(path.read_text())["status"] == "completed":
            found[path] = path.stat().st_mtime_ns
    return found


# About 2 min: the whole tiny grid twice. The fast tier checks its parts' order
# (test_grid_order), restore/publish/report (test_fault_injection's grid driver) and the
# committed report's rebuild.
@pytest.mark.slow
def test_reproduce_resumes_and_reports_the_runs_numbers(tmp_path: Path) -> None:
    root = tmp_path / "logs" / "reproduce" / "tiny"
    first = _reproduce(tmp_path)
    deadline = time.monotonic() + 600
    while len(_finished(root)) < 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGINT)  # Ctrl+C part-way through the grid
    _out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err[-3000:]
    assert "run the same command again to continue" in err
    before = _finished(root)
    assert 3 <= len(before) < 13, sorted(before)

    second = _reproduce(tmp_path)
    _out, err = second.communicate(timeout=900)
    assert second.returncode == 0, err[-3000:]
    after = _finished(root)
    # 3 adapter methods × 1 lr × 2 seeds + head_only × 2 + sampling ablation × 2 = 10 jobs.
    assert len(after) == 15, sorted(after)
    for path, mtime in before.items():
        assert after[path] == mtime, f"{path} was run again"

    report = (tmp_path / "logs/reproduce/tiny_results/REPORT.md").read_text()
    for claim in CLAIMS:
        assert f"| {claim} " in report, claim
    assert (tmp_path / "logs/reproduce/tiny_results/frontier.png").exists()
    # The numbers in the report are the runs': Table 1's first accuracy cell of CURLoRA.
    runs = load_grid(tmp_path / "logs/reproduce/tiny_results")
    lrs = choose_learning_rates(runs)
    assert set(lrs) == {"curlora", "lora", "lora_paper"}
    curlora = [
        r
        for r in runs
        if r.method == "curlora" and (r.sampling or "inverted") == "inverted" and r.rank == 4
    ]
    first_cell = summarize(r.results["accuracy_matrix"][0][0] for r in curlora)
    row = next(line for line in report.splitlines() if line.startswith("| after pairs: pairs"))
    assert str(first_cell) in row.split("|")[2]

    # A fresh clone holds only the results directory (committed, for a real grid; here
    # outside the working directory): the report is rebuilt byte for byte, and the grid
    # starts no job.
    fresh = tmp_path / "clone"
    shutil.copytree(tmp_path / "logs/reproduce/tiny_results", fresh / "logs/reproduce/tiny_results")
    committed = (fresh / "logs/reproduce/tiny_results/REPORT.md").read_bytes()
    (fresh / "logs/reproduce/tiny_results/REPORT.md").unlink()
    rebuild = _reproduce(fresh, "--report-only")
    _out, err = rebuild.communicate(timeout=300)
    assert rebuild.returncode == 0, err[-3000:]
    assert (fresh / "logs/reproduce/tiny_results/REPORT.md").read_bytes() == committed
    again = _reproduce(fresh)
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert "running:" not in err, "a committed job was started again"
    assert not list((fresh / "logs").rglob("checkpoints"))
    assert (fresh / "logs/reproduce/tiny_results/REPORT.md").read_bytes() == committed


@pytest.mark.slow  # about 2 minutes on 2 cores
def test_the_words_grid_checks_its_protocol_then_reports(tmp_path: Path) -> None:
    """reproduce=tiny_words: the protocol check on LoRA alone, recorded; on the tiny model
    nothing is learned, so forgetting is not measurable and the grid switches once to the
    fallback protocol; the report shows both checks, the references and the figure."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "curlora-reproduce"), "reproduce=tiny_words"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    store = tmp_path / "logs/reproduce/tiny_words_results"
    checks = json.loads((store / "protocol_check.json").read_text())
    assert [c["protocol"] for c in checks] == ["first", "fallback"]
    assert not checks[0]["measurable"]
    first = [p for p in (store / "runs").rglob("results.json") if "fallback" not in p.parts]
    assert {json.loads(p.read_text())["method"] for p in first} == {"lora"}  # the check alone
    assert list((store / "runs/fallback/references").rglob("results.json"))
    report = (store / "REPORT.md").read_text()
    assert report.count("- protocol check (") == 2 and "## Table 2" in report
    assert "| lora + replay" in report and (store / "words_forgetting.png").exists()
