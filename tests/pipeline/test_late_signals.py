"""A SIGTERM that arrives after the run completed (a scheduler's, while the process closes
its loggers or exits) interrupts nothing: exit 0 and one line that says so, never a silent
exit 143 that a scheduler would read as an interrupted run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from curlora import train
from tests.conftest import TINY

# Starts the entry point with curlora.train.run wrapped to send SIGTERM to its own process
# once the run returned (the run's InterruptGuard is gone by then).
LATE_SIGTERM = """
import os, signal, sys
import curlora.train as train
real = train.run
def run_then_sigterm(*args, **kwargs):
    results = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return results
train.run = run_then_sigterm
from curlora.cli import main
sys.argv = ["curlora-train", *sys.argv[1:]]
main()
"""


def test_sigterm_after_the_run_returned_exits_0_and_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LATE_SIGTERM, *TINY, "logger=none"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "received SIGTERM after the run completed; nothing was interrupted" in done.stderr


def test_sigterm_while_the_report_is_written_leaves_a_completed_run(
    run_config, monkeypatch, caplog
) -> None:
    # Inside the run's guard but after the loop's last check: nothing can stop any more.
    real = train.write_run_report

    def report_then_sigterm(*args, **kwargs):
        results = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return results

    monkeypatch.setattr(train, "write_run_report", report_then_sigterm)
    caplog.set_level(logging.WARNING, logger="curlora")
    results = train.run(run_config())
    assert results["status"] == "completed"
    assert "received SIGTERM after the last task finished: the run completed; nothing was " in (
        caplog.text
    )
