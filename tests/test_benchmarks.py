"""The training-throughput benchmark runs end to end (tiny model, one round): its table has
a row per method with the trainable count that apply_adapter reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "training_throughput.py"


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
