"""The runs a report pairs by test example have the same rows of each task: a run whose
outcomes have another count than the report's other runs (each file agreeing with its own
results.json) is named in a warning and its outcomes left out, as outcomes that disagree
with results.json are; the report goes on, its intervals over that run over seeds alone.
Genuine runs of one grid share their eval splits: none is ever left out."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from curlora.reporting.claims import bwt_summary
from curlora.reporting.grid import GridRun, load_grid
from curlora.reporting.row_counts import leave_out_odd_row_counts
from tests.reporting.grid_runs import RULES, grid_run, setting
from tests.reporting.report_copies import (
    COMMITTED_REPORT,
    HEADLINE_RUN,
    TABLE1,
    TINY_WORDS,
    copy_store,
    report_only,
)

MATRIX = [[0.9, 0.5, 0.5], [0.8, 0.9, 0.5], [0.7, 0.8, 0.9]]


def _every_row_twice(run: Path) -> None:
    """Each outcome string doubled and the eval split sizes results.json records doubled
    with it: every accuracy, and the run's own check, still agree; other runs do not."""
    path = run / "outcomes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("eval", "eval_exact_match"):
        for strings in (data.get(key) or {}).values():
            strings[:] = [s + s for s in strings]
    path.write_text(json.dumps(data), encoding="utf-8")
    path = run / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    for splits in results["label_balance"].values():
        splits["eval"]["size"] *= 2
    path.write_text(json.dumps(results), encoding="utf-8")


@pytest.mark.parametrize(
    ("grid", "source", "run"),
    [
        ("table1_cpu", TABLE1, HEADLINE_RUN),
        ("tiny_words", TINY_WORDS, None),  # both scores, under the words report
    ],
    ids=["table1_cpu", "tiny_words"],
)
def test_a_run_with_other_row_counts_is_left_out_by_name_and_the_report_goes_on(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    grid: str,
    source: Path,
    run: Path | None,
) -> None:
    store = copy_store(source, tmp_path)
    if run is None:  # a run of the headline setting, whose seeds are paired
        run = next(p.parent for p in sorted(store.rglob("results.json")) if "headline" in str(p))
        run = run.relative_to(store)
    _every_row_twice(store / run)
    with caplog.at_level(logging.WARNING, logger="curlora"):
        code = report_only(grid, store, tmp_path / "report")
    assert code == 0, capsys.readouterr().err  # once: an array error naming no file
    named = [r.getMessage() for r in caplog.records if str(store / run) in r.getMessage()]
    assert named and all("cannot be paired" in line for line in named)
    said = f"per-example outcomes left out of 1 run(s): `{run / 'outcomes.json'}` (cannot be"
    for name in ("REPORT.md", "summary.md"):
        assert said in (tmp_path / "report" / name).read_text(encoding="utf-8"), name


@pytest.mark.parametrize("store", [TABLE1, TINY_WORDS, COMMITTED_REPORT / "table2_words"])
def test_no_stored_run_is_left_out_for_its_row_counts(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = load_grid(store)
    with caplog.at_level(logging.WARNING, logger="curlora"):
        leave_out_odd_row_counts(runs)
    assert not caplog.records
    assert all(run.outcomes_left_out is None and run.outcomes is not None for run in runs)


def _doubled(run: GridRun) -> GridRun:
    """``run`` with every outcome string doubled (results.json records no split size)."""
    path = run.path / "outcomes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["eval"] = {t: [s + s for s in strings] for t, strings in data["eval"].items()}
    path.write_text(json.dumps(data), encoding="utf-8")
    return GridRun(run.path, run.results)


def test_the_odd_run_out_of_several_is_left_out_and_the_interval_is_over_seeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = [grid_run(tmp_path, "lora", seed, MATRIX, 1.0) for seed in (1, 2)]
    runs.append(_doubled(grid_run(tmp_path, "lora", 3, MATRIX, 1.0)))
    with caplog.at_level(logging.WARNING, logger="curlora"):
        leave_out_odd_row_counts(runs)
    assert [r.outcomes is None for r in runs] == [False, False, True]
    said = "a: 2000 test rows, where 2 of the 3 runs record 1000"
    assert said in (runs[2].outcomes_left_out or "")
    assert str(runs[2].path / "outcomes.json") in caplog.text
    summary = bwt_summary(RULES, setting("lora", runs), None)  # once an array error
    assert summary.n == 3 and not summary.test_noise


def test_when_no_count_is_the_most_common_every_run_is_left_out(tmp_path: Path) -> None:
    # Two runs, two counts: neither can be trusted over the other.
    runs = [
        grid_run(tmp_path, "lora", 1, MATRIX, 1.0),
        _doubled(grid_run(tmp_path, "lora", 2, MATRIX, 1.0)),
    ]
    leave_out_odd_row_counts(runs)
    assert all("the runs disagree on its test rows" in (r.outcomes_left_out or "") for r in runs)
    assert not bwt_summary(RULES, setting("lora", runs), None).test_noise
