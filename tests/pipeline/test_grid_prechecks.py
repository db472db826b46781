"""``curlora-reproduce`` refuses bad input before it writes anything, and stops its jobs
with it when it is signalled.

Bad input: exit 2 and one ``error:`` line naming the key, the value and what is valid, with
no ``.lock``, no ``grid.yaml`` and no job directory left behind: a ``reproduce.*`` key of
the wrong type or range (``curlora.grid.settings``), a setting every job would refuse at
its start (``curlora.grid.prechecks``), two modes or two grids at once. A grid that never
ran has no report, and says how to start it. A SIGTERM or SIGINT to the grid process is
passed on to its running jobs (``curlora.grid.children``), which save and exit; none is
left training.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from curlora import reproduce
from curlora.grid.prechecks import planned_jobs
from curlora.grid.status import grid_running

EXIT_CONFIG = 2


def _one_line(text: str) -> str:
    """The one ``error:`` line of a refused command (and no traceback)."""
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in text.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def _refused(tmp_path: Path, capsys: Any, monkeypatch: Any, *args: str) -> str:
    """Run the grid command in process (no job can start); assert it exits 2 having
    written nothing, and return its error line."""
    ran: list[Any] = []
    monkeypatch.setattr(reproduce, "multirun", lambda *a, **k: ran.append(a) or 0)
    grid = ["reproduce=tiny", *args] if not any(a.startswith("reproduce=") for a in args) else args
    where = [f"reproduce.dir={tmp_path / 'work'}", f"reproduce.results_dir={tmp_path / 'store'}"]
    assert reproduce.main([*grid, *where]) == EXIT_CONFIG
    assert ran == []
    assert not (tmp_path / "work").exists() and not (tmp_path / "store").exists()
    return _one_line(capsys.readouterr().err)


# ------------------------------------------------ the grid's own keys
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("reproduce.workers=abc", "reproduce.workers='abc' is not valid; valid: an integer ≥ 1"),
        ("reproduce.workers=-1", "reproduce.workers=-1 is not valid; valid: an integer ≥ 1"),
        ("reproduce.workers=0", "reproduce.workers=0 is not valid; valid: an integer ≥ 1"),
        ("reproduce.workers=1.5", "reproduce.workers=1.5 is not valid"),
        ("reproduce.controls=head_only", "reproduce.controls='head_only' is not valid"),
        ("reproduce.lrs.curlora=[]", "reproduce.lrs.curlora=[] is not valid"),
        ("reproduce.lrs.curlora=[-1e-3]", "reproduce.lrs.curlora=-0.001 is not valid"),
        ("reproduce.headline_methods=[dora]", "reproduce.headline_methods='dora' is not valid"),
        ("reproduce.headline_seeds=[-3]", "reproduce.headline_seeds=-3 is not valid"),
        ("reproduce.rank_sweep.ranks=[0]", "reproduce.rank_sweep.ranks=0 is not valid"),
        ("reproduce.sampling=uniform", "reproduce.sampling='uniform' is not valid"),
        ("reproduce.name=a/b", "reproduce.name='a/b' is not valid"),
        ("reproduce.margins.accuracy=.nan", "reproduce.margins.accuracy is '.nan'; valid"),
        ("reproduce.bootstrap.replicates=0", "reproduce.bootstrap.replicates is 0; valid"),
    ],
)
def test_a_grid_key_of_the_wrong_type_or_range_is_one_line_and_nothing_written(
    tmp_path: Path, capsys: Any, monkeypatch: Any, override: str, words: str
) -> None:
    """``workers=abc`` was a traceback after the lock and grid.yaml were written, and
    ``workers=0`` silently ran one part at a time."""
    assert words in _refused(tmp_path, capsys, monkeypatch, override)


# ------------------------------------------------ what every job would refuse
@pytest.mark.parametrize(
    ("args", "words"),
    [
        # data, the callbacks and the loggers are left out of the settings checked without
        # torch: each job refused them.
        (["data.batch_size=0"], "data.batch_size=0 is not valid"),
        (["callbacks.perplexity.stride=1000"], "callbacks.perplexity.stride=1000 is not valid"),
        # reproduce=tiny's jobs log to CSV (debug=tiny, one of the grid's overrides).
        (["logger.csv.save_dir=${nope}"], "logger.csv.save_dir does not resolve"),
        # One phase's jobs only: the rank sweep, after hours of the rest.
        (["reproduce.rank_sweep.ranks=[100000]"], "part ranks/curlora would refuse it"),
        # The fallback protocol's jobs only (a words grid whose first protocol finds
        # forgetting not measurable).
        (
            [
                "reproduce=tiny_words",
                'reproduce.protocol_check.fallback_overrides=["trainer.max_epochs=0"]',
            ],
            "trainer.max_epochs=0 is not valid",
        ),
    ],
)
def test_a_setting_a_job_would_refuse_is_refused_before_the_grid_starts(
    tmp_path: Path, capsys: Any, monkeypatch: Any, args: list[str], words: str
) -> None:
    assert words in _refused(tmp_path, capsys, monkeypatch, *args)


def test_a_setting_of_what_the_grids_own_overrides_choose_is_taken(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """The extra settings are checked as the jobs compose them, after the grid's overrides:
    ``logger.csv.*`` was refused as a key of the default logger (W&B), which no job of
    ``reproduce=tiny`` uses."""
    ran: list[list[str]] = []
    monkeypatch.setattr(
        reproduce, "multirun", lambda _dir, overrides, *_: ran.append(overrides) or 0
    )
    where = [f"reproduce.dir={tmp_path / 'work'}", f"reproduce.results_dir={tmp_path / 'store'}"]
    reproduce.main(["reproduce=tiny", "logger.csv.name=mine", *where])
    assert "is not a key of logger" not in capsys.readouterr().err
    assert ran and all("logger.csv.name=mine" in overrides for overrides in ran)


def test_each_way_a_job_composes_is_checked_once() -> None:
    """The controls, each method at each rank, the sampling modes: seeds and rates differ
    in value only and are checked as values."""
    grid = reproduce.compose(["reproduce=table1_cpu"]).reproduce
    jobs = planned_jobs(grid, [])
    methods = {o for _, overrides in jobs for o in overrides if o.startswith("method")}
    assert methods == {
        *(f"method={m}" for m in [*grid.lrs, *grid.controls]),
        *(f"method.sampling={s}" for s in grid.sampling),
    }
    ranks = {o for _, overrides in jobs for o in overrides if o.startswith("rank=")}
    assert ranks == {f"rank={r}" for r in [*grid.ranks, *grid.rank_sweep.ranks]}
    assert len(jobs) == 13  # of 77 jobs


# ------------------------------------------------ the command line
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--status", "--report-only"], "--report-only and --status cannot be combined"),
        (["reproduce=tiny", "reproduce=tiny_words"], "reproduce=tiny and reproduce=tiny_words"),
    ],
)
def test_two_modes_or_two_grids_are_refused(
    tmp_path: Path, capsys: Any, monkeypatch: Any, args: list[str], words: str
) -> None:
    assert words in _refused(tmp_path, capsys, monkeypatch, *args)


def test_the_report_of_a_grid_that_never_ran_says_how_to_start_it(
    tmp_path: Path, capsys: Any
) -> None:
    where = [f"reproduce.dir={tmp_path / 'work'}", f"reproduce.results_dir={tmp_path / 'store'}"]
    assert reproduce.main(["reproduce=tiny", "--report-only", *where]) == 1
    line = _one_line(capsys.readouterr().err)
    start = " ".join(["curlora-reproduce", "reproduce=tiny", *where])
    assert "the grid has not run yet" in line
    assert f"start it with `{start}`" in line and f"`{start} --status`" in line
    assert "logs" not in line  # no folder of logs that does not exist
    assert not (tmp_path / "work").exists() and not (tmp_path / "store").exists()


# ------------------------------------------------ signals
# A stand-in for a part's `python -m curlora.cli -m ...`: it records its pid and a child
# of its own (a DataLoader worker, W&B's service), and on SIGTERM or SIGINT it "saves its
# checkpoint" and exits 128 + the signal, as a job does.
STUB = """\
#!{python}
import os, signal, subprocess, sys, time
from pathlib import Path

marks = Path(os.environ["STUB_MARKS"])

def stop(signum, frame):
    time.sleep(0.5)  # the checkpoint
    (marks / f"{{os.getpid()}}.saved").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
helper = subprocess.Popen(["sleep", "120"])
(marks / "tmp").mkdir(exist_ok=True)
staged = marks / "tmp" / str(os.getpid())
staged.write_text(f"{{os.getpid()}} {{helper.pid}}")
os.replace(staged, marks / f"{{os.getpid()}}.pids")  # whole when the test reads it
time.sleep(120)
"""
# The grid process: curlora-reproduce with the stand-in as its jobs' Python (and the jobs'
# checks, which need the real jobs, left out).
DRIVER = """\
import sys
from curlora import reproduce
from curlora.grid import prechecks

prechecks.check_jobs = lambda *args, **kwargs: None
sys.executable = {stub!r}
sys.exit(reproduce.main(sys.argv[1:]))
"""


def test_a_signal_before_any_job_started_ends_the_grid_with_its_code(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """SIGTERM while the jobs are checked (no job running): exit 143, nothing written, and
    the handler the grid found is back."""
    from curlora.grid import prechecks

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")

    def signalled(*_: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler ends the grid at once
        pytest.fail("the SIGTERM did not end the grid")

    monkeypatch.setattr(prechecks, "check_jobs", signalled)
    before = signal.getsignal(signal.SIGTERM)
    where = [f"reproduce.dir={tmp_path / 'work'}", f"reproduce.results_dir={tmp_path / 'store'}"]
    assert reproduce.main(["reproduce=tiny", *where]) == 143
    assert "the grid was interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before
    assert not (tmp_path / "work").exists() and not (tmp_path / "store").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("signum", "code", "passed_on"),
    [
        (signal.SIGTERM, 143, signal.SIGTERM),
        (signal.SIGINT, 130, signal.SIGINT),
        (signal.SIGHUP, 129, signal.SIGTERM),  # the terminal closed: the jobs save and stop
    ],
)
def test_a_signal_to_the_grid_stops_its_jobs_and_leaves_none_running(
    tmp_path: Path, signum: int, code: int, passed_on: int
) -> None:
    """``kill <grid pid>`` left the running job training, reparented to PID 1."""
    marks = tmp_path / "marks"
    marks.mkdir()
    stub = tmp_path / "stub.py"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(stub=str(stub)))
    work = tmp_path / "work"
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # not a pipe: a job left running would hold it open
        grid = subprocess.Popen(
            [
                sys.executable,
                str(driver),
                "reproduce=tiny",
                "reproduce.workers=2",  # two jobs running at once
                f"reproduce.dir={work}",
                f"reproduce.results_dir={tmp_path / 'store'}",
            ],
            env={**os.environ, "STUB_MARKS": str(marks)},
            stderr=stderr,
            start_new_session=True,  # a signal to the test's group does not reach it
            # Under nohup or as a shell's background job the test inherits SIGHUP or SIGINT
            # ignored, and the grid rightly keeps an ignored signal ignored: the grid gets
            # the default disposition a terminal gives, which is what this test sends to.
            preexec_fn=functools.partial(signal.signal, signum, signal.SIG_DFL),
        )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.glob("*.pids"))) < 2 and time.monotonic() < deadline:
            assert grid.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        pids = [int(p) for f in marks.glob("*.pids") for p in f.read_text().split()]
        assert len(pids) == 4
        os.kill(grid.pid, signum)  # the grid process alone, as a scheduler or kill does
        try:
            grid.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the grid did not end: it is waiting for jobs that never got the signal")
        err = log.read_text()
        assert grid.returncode == code, err[-3000:]
        assert "the grid was interrupted; run the same command again" in err
        saved = sorted(f.read_text() for f in marks.glob("*.saved"))
        assert saved == [signal.Signals(passed_on).name] * 2  # once each, and each saved
        time.sleep(0.5)  # the helpers' group got the signal too
        assert [pid for pid in pids if _alive(pid)] == []
        assert len(list(marks.glob("*.pids"))) == 2  # no part started after the signal
        assert grid_running(work) is None  # the lock is released
    finally:
        if grid.poll() is None:
            grid.kill()
        for pid in pids:  # what the old grid left running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
