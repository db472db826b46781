"""``curlora-report``'s one error line: what is wrong with a results.json, and what a sweep
directory without one holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from curlora.reporting.console import main
from curlora.reporting.results import validate_results


def _report_error(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


def test_a_schema_error_names_its_first_problem_and_counts_the_rest(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = make_results()
    results["seed"] = "one"
    results["surplus"] = 1
    problems = validate_results(results)
    assert len(problems) >= 2
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results), encoding="utf-8")
    err = _report_error(path.parent, capsys)
    head = f"error: {path} does not follow the results.json schema: "
    assert err.startswith(head) and not err.endswith(":"), err
    assert err == f"{head}{problems[0]} (and {len(problems) - 1} more)", err


def _job(sweep: Path, name: str, log: str | None = "error: invalid configuration") -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- {name.split('_', 1)[1]}\n")
    if log is not None:
        (job / "train.log").write_text(log + "\n")
    return job


def test_a_sweep_whose_jobs_all_failed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    first = _job(sweep, "0_seed=1")
    _job(sweep, "1_seed=2")
    _job(sweep, "2_seed=3", log=None)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    err = _report_error(sweep, capsys)
    assert err == (
        f"error: no results.json in or below {sweep}: 0 of 3 jobs completed; each job's log "
        f"says why, e.g. {first / 'train.log'}"
    )
    # A directory with no job in it: the message as it was.
    (tmp_path / "empty").mkdir()
    assert _report_error(tmp_path / "empty", capsys) == (
        f"error: no results.json in or below {tmp_path / 'empty'}"
    )
