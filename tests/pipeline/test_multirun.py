"""The documented sweep command runs six jobs, each in its own directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_method_by_rank_sweep_runs_six_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "CURLORA_CACHE": str(tmp_path / "cache"),
    }
    command = [
        sys.executable,
        "train.py",
        "-m",
        "method=curlora,lora",
        "rank=8,16,24",
        "debug=fast",
        "logger=none",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep_dir}",
        "data.task_specs.pairs.train_limit=32",
        "data.task_specs.reviews.train_limit=32",
        "data.task_specs.moods.train_limit=32",
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted(sweep_dir.glob("*/results.json"))
    assert len(results) == 6
    seen = {(r["method"], r["rank"]) for r in (json.loads(p.read_text()) for p in results)}
    assert seen == {(m, k) for m in ("curlora", "lora") for k in (8, 16, 24)}
    assert all(json.loads(p.read_text())["status"] == "completed" for p in results)
