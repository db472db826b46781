"""A run's per-example outcomes are used only when they are what its results.json says was
measured: at every evaluation point each task's share of right answers *is* the stored
accuracy (exact match likewise), on the eval split's rows. Outcomes that disagree are
named in one warning, left out (the run's intervals are over seeds alone, as for a run
that recorded none) and the report says so; genuine outcomes are always used."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from curlora.reporting.grid import load_grid
from tests.reporting.report_copies import (
    COMMITTED_REPORT,
    HEADLINE_RUN,
    TABLE1,
    TINY_WORDS,
    copy_store,
    report_only,
    without_warnings,
)

Damage = Callable[[dict[str, Any]], None]


def _each_string(change: Callable[[str], str], key: str = "eval") -> Damage:
    def damage(data: dict[str, Any]) -> None:
        for strings in data[key].values():
            strings[:] = [change(s) for s in strings]

    return damage


def _last_point_all_right(data: dict[str, Any]) -> None:
    for strings in data["eval"].values():
        strings[-1] = "1" * len(strings[-1])


def _one_flip(data: dict[str, Any]) -> None:
    strings = next(iter(data["eval"].values()))
    strings[1] = ("0" if strings[1][0] == "1" else "1") + strings[1][1:]


def _a_point_fewer(data: dict[str, Any]) -> None:
    for strings in data["eval"].values():
        del strings[-1]


def _points_of_two_lengths(data: dict[str, Any]) -> None:
    strings = next(iter(data["eval"].values()))
    strings[0] = strings[0][:-1]


DAMAGES: dict[str, Damage] = {
    # the audit's case: CURLoRA "forgot nothing" while results.json says it did
    "last point all right": _last_point_all_right,
    "one answer flipped": _one_flip,
    # the same shares on twice the rows: every accuracy agrees, the eval split does not
    "every row twice": _each_string(lambda s: s + s),
    "not 0 and 1": _each_string(lambda s: s.replace("0", "x")),
    "a point fewer": _a_point_fewer,
    "points of two lengths": _points_of_two_lengths,
}


def _damaged_copy(source: Path, tmp_path: Path, damage: Damage) -> Path:
    run = copy_store(source, tmp_path)
    path = run / "outcomes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    damage(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return run


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_outcomes_that_disagree_with_results_are_left_out_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Damage
) -> None:
    run_dir = _damaged_copy(TABLE1 / HEADLINE_RUN, tmp_path, damage)
    with caplog.at_level(logging.WARNING, logger="curlora"):
        (run,) = load_grid(run_dir)
        assert run.outcomes is None and run.score_outcomes("acc") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(run_dir / "outcomes.json") in warnings[0]
    assert "disagrees with results.json" in (run.outcomes_left_out or "")
    (genuine,) = load_grid(TABLE1 / HEADLINE_RUN)  # the same run as stored: used
    assert genuine.outcomes is not None and genuine.outcomes_left_out is None


def test_exact_match_outcomes_are_checked_against_the_exact_match_matrix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = next(TINY_WORDS.rglob("outcomes.json")).parent
    run_dir = _damaged_copy(
        source, tmp_path, _each_string(lambda s: "1" * len(s), key="eval_exact_match")
    )
    with caplog.at_level(logging.WARNING, logger="curlora"):
        (run,) = load_grid(run_dir)
        # the whole file is left out: one score that disagrees makes the other suspect
        assert run.exact_match_outcomes is None and run.outcomes is None
    assert str(run_dir / "outcomes.json") in caplog.text
    assert "eval_exact_match disagrees" in (run.outcomes_left_out or "")
    (genuine,) = load_grid(source)
    assert genuine.exact_match_outcomes is not None and genuine.outcomes_left_out is None


@pytest.mark.parametrize("store", [TABLE1, TINY_WORDS, COMMITTED_REPORT / "table2_words"])
def test_every_stored_run_keeps_its_outcomes(store: Path) -> None:
    runs = load_grid(store)
    assert runs
    for run in runs:
        assert run.outcomes_left_out is None, run.path
        assert run.outcomes is not None, run.path
        if run.answers_in_words:
            assert run.exact_match_outcomes is not None, run.path


def test_the_report_keeps_the_measured_numbers_and_says_what_it_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # The audit: one headline run's last evaluation made all right moved CURLoRA's
    # learned-task BWT from the measured -0.036 ± 0.029 to a forgery, exit 0, unnamed.
    store = copy_store(TABLE1, tmp_path)
    path = store / HEADLINE_RUN / "outcomes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    _last_point_all_right(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="curlora"):
        code = report_only("table1_cpu", store, tmp_path / "report")
    assert code == 0, capsys.readouterr().err
    assert str(path) in caplog.text
    said = f"**Warning:** per-example outcomes left out of 1 run(s): `{HEADLINE_RUN}/outcomes.json`"
    report = (tmp_path / "report" / "REPORT.md").read_text(encoding="utf-8")
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert said in report and said in summary
    committed = (COMMITTED_REPORT / "summary.md").read_text(encoding="utf-8")
    curlora_row = next(line for line in committed.splitlines() if line.startswith("| curlora"))
    assert "| -0.036 ± 0.029 |" in curlora_row  # the measured learned-task BWT
    assert curlora_row in without_warnings(summary).splitlines()
