"""A run whose outcomes.json has null ("not recorded") at some evaluation points has no
per-example outcomes to resample: the report says so, naming the run in what it left out,
rather than giving that run's intervals over seeds alone without a word. No stored run has
such a point (``test_every_stored_run_keeps_its_outcomes``), so no committed report
changes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from curlora.reporting.grid import load_grid
from tests.reporting.report_copies import TINY_WORDS, copy_store, report_only


def _last_point_not_recorded(path: Path, key: str) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    strings = next(iter(data[key].values()))
    strings[-1] = None
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("key", ["eval", "eval_exact_match"])
def test_a_run_with_outcomes_not_recorded_at_some_points_is_named_in_the_report(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    key: str,
) -> None:
    store = copy_store(TINY_WORDS, tmp_path)
    run = next(p.parent for p in sorted(store.rglob("outcomes.json")) if "headline" in str(p))
    _last_point_not_recorded(run / "outcomes.json", key)
    with caplog.at_level(logging.WARNING, logger="curlora"):
        code = report_only("tiny_words", store, tmp_path / "report")
    assert code == 0, capsys.readouterr().err
    assert str(run / "outcomes.json") in caplog.text
    (loaded,) = load_grid(run)
    assert loaded.outcomes is None and loaded.exact_match_outcomes is None
    why = f"{key}: outcomes not recorded at some points"
    assert loaded.outcomes_left_out == why
    said = f"left out of 1 run(s): `{(run / 'outcomes.json').relative_to(store)}` ({why})"
    for name in ("REPORT.md", "summary.md"):
        assert said in (tmp_path / "report" / name).read_text(encoding="utf-8"), name
