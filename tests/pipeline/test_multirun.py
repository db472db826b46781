"""Sweeps that survive a crash. (The README's six-job sweep itself runs, as written, in
test_readme_commands.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_crashed_sweep_rerun_skips_finished_jobs_and_completes_the_rest(tmp_path: Path) -> None:
    """Kill a 4-job sweep (SIGKILL, like a node failure) after its second job finished,
    rerun the same command: the finished jobs are not rerun (results.json untouched), the
    one that was running continues in its directory, and all four complete."""
    import signal
    import time

    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "-m",
        "method=curlora,lora",
        "seed=1,2",
        "debug=tiny",
        f"hydra.sweep.dir={sweep_dir}",
    ]

    def finished() -> list[Path]:
        return sorted(
            p
            for p in sweep_dir.glob("*/results.json")
            if json.loads(p.read_text())["status"] == "completed"
        )

    first = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while len(finished()) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    done_before = {p: (p.stat().st_mtime_ns, p.read_text()) for p in finished()}
    assert 2 <= len(done_before) < 4, "the sweep was not killed part-way"

    rerun = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(finished()) == 4
    assert len(list(sweep_dir.glob("*/results.json"))) == 4  # no job ran in a second directory
    for path, (mtime, text) in done_before.items():
        assert (path.stat().st_mtime_ns, path.read_text()) == (mtime, text)
