"""The retention suite's intervals carry its rows' own noise when every run recorded its
per-row outcomes (``outcomes.json``'s ``retention``): one bootstrap of the suite's rows,
shared by every run, as the trained tasks' intervals resample theirs. Runs made before the
outcomes were recorded keep intervals over seeds alone, and outcomes that disagree with
results.json's retention matrix are left out by name, as any disagreement is."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest

from curlora.reporting import words_report
from curlora.reporting.grid import GridRun
from tests.reporting.test_protocol_check import KEEPS, _run
from tests.reporting.test_words_report import _as, _report, _store

SUITE = ["analogy_semantic", "wiki_cloze"]
ROWS = 100
BEFORE = "1" * 80 + "0" * 20  # 0.80 on each suite task before training
LORA_AFTER = "1" * 60 + "0" * 40  # LoRA loses rows 60..79 of each task; CURLoRA keeps them


def _with_rows(run: GridRun, after: str, record: bool = True) -> GridRun:
    """``run`` with the suite measured at every point (before training, then after each of
    its 3 tasks: the before-training rows until the last) and, when ``record``, its per-row
    outcomes written beside it."""
    strings = [BEFORE, BEFORE, BEFORE, after]
    accuracy = [s.count("1") / ROWS for s in strings]
    results = json.loads(json.dumps(run.results))
    results["retention"] = {
        "tasks": SUITE,
        "n": [ROWS] * len(SUITE),
        "acc": [[a] * len(SUITE) for a in accuracy],
        "acc_norm": [[a] * len(SUITE) for a in accuracy],
    }
    if record:
        path = run.path / "outcomes.json"
        outcomes = json.loads(path.read_text())
        outcomes["retention"] = {task: list(strings) for task in SUITE}
        path.write_text(json.dumps(outcomes))
    return GridRun(run.path, results)


def _pair_runs(store: Path, record: bool, unrecorded_seeds: tuple[int, ...] = ()) -> list[GridRun]:
    runs = []
    for seed in (1, 2, 3):  # every seed measures the same: the spread over seeds is zero
        kept = record and seed not in unrecorded_seeds
        lora = _as(_run(store / "runs" / "lora", seed, 1e-3, KEEPS, 0.8), "lora")
        runs.append(_with_rows(lora, LORA_AFTER, kept))
        cur = _as(_run(store / "runs" / "cur", seed, 1e-3, KEEPS, 0.8), "curlora")
        runs.append(_with_rows(cur, BEFORE, kept))
    return runs


def _question(report: str) -> str:
    return next(line for line in report.splitlines() if "keep more of what the base" in line)


def _interval(row: str) -> tuple[float, float]:
    low, high = re.search(r"\[([-+.\d]+), ([-+.\d]+)\]", row).groups()
    return float(low), float(high)


@pytest.mark.parametrize("record", [True, False], ids=["rows recorded", "rows not recorded"])
def test_the_retention_question_resamples_the_suite_rows_when_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: bool
) -> None:
    store = _store(tmp_path)
    runs = _pair_runs(store, record)
    monkeypatch.setattr(words_report, "load_grid", lambda root: runs)
    report = _report(store, tmp_path)
    row = _question(report)
    assert "0.200 ± 0.000" in row  # CURLoRA keeps 0.80, LoRA 0.60, on every seed
    low, high = _interval(row)
    section = report[report.index("## What the base model knew") :]
    if not record:
        # Seeds alone, which agree: an interval of width zero, and the report says what it
        # leaves out.
        assert (low, high) == (0.2, 0.2)
        assert "the suite's fixed rows' own noise is not in it" in row
        assert "The intervals leave out the rows' own noise" in section
        return
    # Rows only: the per-row difference is 1 on 20 of each task's 100 rows (population
    # variance 0.2 * 0.8 = 0.16); the statistic averages the two tasks, each resampled on
    # its own, so v_test = (0.16 / 100 + 0.16 / 100) / 4 = 0.0008 and the half-width is
    # t(0.975, 2) * sqrt(0.0008) = 4.303 * 0.0283 = 0.122 (the bootstrap's 400 replicates
    # estimate it to a few per cent).
    assert (high - low) / 2 == pytest.approx(4.303 * math.sqrt(0.0008), rel=0.1)
    assert low < 0.2 < high
    assert "(over seeds and the suite's rows)" in row
    assert "95 % CI over seeds and the suite's rows" in section
    assert "The intervals carry the rows' own noise" in section
    # Table 2's retention ratio resamples the same rows: LoRA's 0.60 / 0.80 = 0.750.
    table = report[report.index("## Table 2") : report.index("## What the base model knew")]
    lora = next(line for line in table.splitlines() if line.startswith("| lora r16"))
    ratio_low, ratio_high = _interval(lora.split("|")[-2])
    assert ratio_low < 0.75 < ratio_high


def test_a_run_without_every_point_recorded_keeps_its_other_outcomes(tmp_path: Path) -> None:
    # A run resumed across the change: its evaluation before training has no row outcomes.
    run = _with_rows(_run(tmp_path, 1, 1e-3, KEEPS, 0.8), LORA_AFTER)
    path = run.path / "outcomes.json"
    outcomes = json.loads(path.read_text())
    for strings in outcomes["retention"].values():
        strings[0] = None
    path.write_text(json.dumps(outcomes))
    loaded = GridRun(run.path, run.results)
    assert loaded.retention_outcomes is None
    assert loaded.outcomes is not None and loaded.outcomes_left_out is None


def test_retention_rows_that_disagree_with_results_leave_the_file_out_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _with_rows(_run(tmp_path, 1, 1e-3, KEEPS, 0.8), LORA_AFTER)
    path = run.path / "outcomes.json"
    outcomes = json.loads(path.read_text())
    outcomes["retention"]["wiki_cloze"][-1] = "1" * ROWS  # "kept everything"; results: 0.60
    path.write_text(json.dumps(outcomes))
    with caplog.at_level(logging.WARNING, logger="curlora"):
        loaded = GridRun(run.path, run.results)
        assert loaded.retention_outcomes is None and loaded.outcomes is None
    assert str(path) in caplog.text
    assert "retention disagrees with results.json: wiki_cloze after c" in (
        loaded.outcomes_left_out or ""
    )
    assert "100 of 100 right, results.json says 0.6" in (loaded.outcomes_left_out or "")


def test_a_comparison_with_a_run_without_rows_is_over_seeds_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seed 2's pair ran before the rows were recorded: no shared bootstrap can include it,
    # so the question is over seeds alone, and the section counts the runs without rows.
    store = _store(tmp_path)
    runs = _pair_runs(store, True, unrecorded_seeds=(2,))
    monkeypatch.setattr(words_report, "load_grid", lambda root: runs)
    report = _report(store, tmp_path)
    row = _question(report)
    assert _interval(row) == (0.2, 0.2)
    assert "the suite's fixed rows' own noise is not in it" in row
    section = report[report.index("## What the base model knew") :]
    assert "over the suite's rows where every run of a cell recorded them" in section
    assert "Where a cell has a run without its per-row outcomes (2 of 6 runs)" in section


@pytest.mark.parametrize(
    "node",
    [["0101"], {}, {"analogy_semantic": "1" * ROWS, "wiki_cloze": "1" * ROWS}, {"x": None}],
    ids=["a list", "no task", "a string, not points", "another task"],
)
def test_a_retention_node_of_another_shape_leaves_the_file_out_without_a_crash(
    tmp_path: Path, node: object
) -> None:
    run = _with_rows(_run(tmp_path, 1, 1e-3, KEEPS, 0.8), LORA_AFTER)
    path = run.path / "outcomes.json"
    outcomes = json.loads(path.read_text())
    outcomes["retention"] = node
    path.write_text(json.dumps(outcomes))
    loaded = GridRun(run.path, run.results)
    assert loaded.retention_outcomes is None and loaded.outcomes is None
    assert loaded.outcomes_left_out
