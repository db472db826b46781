"""The console of a run: its own lines once each, no library boilerplate, progress bars,
and the summary table at the end; ``curlora-report`` prints the same table later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY, run_cli

BOILERPLATE = (
    "GPU available",
    "TPU available",
    "litlogger",
    "Loading `train_dataloader`",
    "LeafSpec",
)


def _report(path: Path) -> str:
    script = Path(sys.executable).parent / "curlora-report"
    done = subprocess.run([str(script), str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_console_is_readable_and_ends_with_the_table(tmp_path: Path) -> None:
    done = run_cli([*TINY, "trainer.enable_progress_bar=true"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    assert not [b for b in BOILERPLATE if b in console], console[:3000]
    lines = [line for line in console.replace("\r", "\n").splitlines() if line.strip()]
    logged = [line for line in lines if "][curlora][" in line]  # the run's own log lines
    assert len(logged) == len(set(logged))  # nothing printed twice
    assert "Perplexity" in console and "Validation" in console  # progress bars
    (run_dir,) = (tmp_path / "logs" / "runs").iterdir()
    table = _report(run_dir).strip().splitlines()
    # The run ends with its table; curlora-report prints it again for the finished run.
    tail = done.stdout.strip().splitlines()  # the log; progress bars go to stderr
    assert table[0] in tail[-len(table) - 2 :]
    assert "status completed" in "\n".join(table) and "after moods" in "\n".join(table)
    assert any("pairs (0.500)" in line for line in table)  # majority rate beside each task


def test_report_of_a_sweep_directory_is_its_table(tmp_path: Path) -> None:
    assert run_cli(["-m", "seed=1,2", *TINY], cwd=tmp_path).returncode == 0
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    text = _report(sweep)
    assert "## Sweep: 2 runs" in text and "Mean ± std" in text
