"""What a command would refuse in any of its jobs is refused before Hydra writes anything:
every job of a sweep is value-checked before the first one trains, and a refused
``resume=`` leaves the run it names as it was (no ``.hydra/resume_*``, no line appended to
its ``train.log``). In process through ``curlora.composition.check_command_line`` (what
``curlora.cli.main`` asks before Hydra starts); a few real commands where what is left on
disk, the exit code or the imports are the point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curlora.cli import EXIT_CONFIG
from curlora.composition import check_command_line
from tests.conftest import REPO_ROOT, TINY, run_cli
from tests.pipeline.tiny_runs import completed_tiny_run, copy_run

TINY_RUN = [*TINY, "logger=none"]


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid configuration: "), stderr
    return lines[0]


def _snapshot(run_dir: Path) -> dict[str, bytes | None]:
    """Every entry below ``run_dir`` with its bytes (None for a directory)."""
    return {
        str(p.relative_to(run_dir)): None if p.is_dir() else p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
    }


# ------------------------------------------------ a bad value among a sweep's good ones
@pytest.mark.parametrize(
    ("swept", "words"),
    [
        ("rank=8,abc", "rank='abc' is not valid"),
        # Refused by the whole check, which builds a Trainer: Lightning prints nothing.
        ("trainer.precision=32-true,bf16-true", "trainer.precision='bf16-true'"),
    ],
    ids=["settings", "whole-check"],
)
def test_a_bad_value_after_a_good_one_is_refused_before_the_first_job_trains(
    tmp_path: Path, swept: str, words: str
) -> None:
    """``-m rank=8,abc`` trained the rank=8 job, then refused abc (exit 1, two job
    directories and a multirun.yaml left)."""
    done = run_cli(["-m", *TINY_RUN, swept], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert words in line and "the sweep's job" in line and f"{swept.split(',')[-1]})" in line
    assert list(tmp_path.iterdir()) == []  # no logs/multiruns/<time>/


@pytest.mark.parametrize(
    ("swept", "words"),
    [
        # A bad first value: its error was printed, then the next job trained.
        (["rank=abc,8"], ["rank='abc' is not valid", "rank=abc)"]),
        # A fixed bad value: every job wrote its directory and failed (exit 1).
        (["rank=8,16", "seed=abc"], ["seed='abc' is not valid", "rank=8 seed=abc)"]),
        # A job's value that does not resolve.
        (["rank=8,${nope}"], ["rank does not resolve: Interpolation key 'nope' not found"]),
        # A value the run's whole check refuses (it builds the Trainer).
        (["trainer.precision=32-true,bf16-true"], ["trainer.precision='bf16-true'"]),
        # A sweep the config makes too (its grid of EWC's lambda): each of its jobs.
        (["hparams_search=ewc_lambda", "rank=8,abc"], ["rank='abc'", "strategy.ewc_lambda=0.1"]),
    ],
    ids=["bad-first", "fixed-bad", "unresolvable", "whole-check", "config-grid"],
)
def test_every_job_of_a_sweep_is_checked_before_any_runs(swept, words) -> None:
    line = check_command_line(["-m", *TINY_RUN, *swept])
    assert line is not None and "\n" not in line, line
    assert line.startswith("invalid configuration: ") and "the sweep's job" in line, line
    for word in words:
        assert word in line, line


def test_what_only_a_job_can_judge_is_left_to_the_job() -> None:
    """A sweep refuses a value no job could take (``rank=-1``); a rank above the model's
    layer sizes fails that job alone (the sweep goes on past it), and a sweeper or launcher
    that chooses values as it goes or runs jobs elsewhere leaves the values to its jobs."""
    line = check_command_line(["-m", *TINY_RUN, "rank=4,-1"])
    assert line is not None and "rank=-1 is not valid" in line, line
    assert check_command_line(["-m", *TINY_RUN, "rank=4,100000"]) is None
    assert check_command_line(["-m", *TINY_RUN, "hydra/launcher=slurm", "rank=4,-1"]) is None


# ------------------------------------------------ a refused resume writes nothing there
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed ``debug=tiny`` run (rank 8), never resumed itself: each test copies it."""
    return completed_tiny_run(tmp_path_factory.mktemp("finished"), ["rank=8"])


def test_a_refused_resume_leaves_the_run_untouched(finished: Path, tmp_path: Path) -> None:
    """It wrote ``.hydra/resume_<time>/`` and an ERROR line into the run's ``train.log``
    before refusing, seconds later."""
    run_dir = copy_run(finished, tmp_path / "received")
    (run_dir / "train.log").write_text("the run's own log\n")
    before = _snapshot(run_dir)
    done = run_cli([f"resume={run_dir}", "rank=abc"], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "would change the experiment being resumed: rank=abc (the run has rank=8)" in line
    assert _snapshot(run_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["received"]  # no logs/ either


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("method=lora", "method=lora (the run has method='curlora')"),
        ("seed=5", "seed=5 (the run has seed=1311)"),
    ],
)
def test_a_resume_that_would_change_the_experiment_is_refused_first(
    finished: Path, tmp_path: Path, override: str, words: str
) -> None:
    run_dir = copy_run(finished, tmp_path / "received")
    line = check_command_line([f"resume={run_dir}", override])
    assert line is not None and words in line and "\n" not in line, line
    # What a resume takes from its command is no change: the run's own checks agree.
    assert check_command_line([f"resume={run_dir}", "trainer.enable_progress_bar=true"]) is None


def test_a_resume_of_no_run_is_refused_before_torch_loads(tmp_path: Path) -> None:
    """A path that does not exist, a file, an empty directory: refused by the run after
    Hydra started and torch loaded (seconds); now before either."""
    a_file, empty = tmp_path / "notes.txt", tmp_path / "empty"
    a_file.write_text("not a run")
    empty.mkdir()
    for place in (tmp_path / "nonexistent", a_file, empty):
        line = check_command_line([f"resume={place}"])
        assert line is not None and f"resume='{place}' is invalid" in line, line
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['train.py', *sys.argv[1:]]\n"
        "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
        "except SystemExit as end:\n    print('exit', end.code)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            f"resume={tmp_path / 'nonexistent'}",
            f"hydra.run.dir={tmp_path / 'run'}",  # never the checkout, whatever happens
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["exit", "2", "False"], done.stdout + done.stderr[-3000:]
    assert "resume=" in _one_line(done.stderr)
