"""The words grid's stability–plasticity frontier: plasticity is the gain over each run's own
zero-shot accuracy, and methods are compared at equal plasticity only once every rate of
theirs has the seeds the report's intervals need."""

from __future__ import annotations

from pathlib import Path

import pytest

from curlora.reporting import words_report
from curlora.reporting.frontier import frontier_points, zero_shot_reference
from curlora.reporting.protocol_check import ProtocolCheck, record
from curlora.reporting.words_frontier import FRONTIER_FIGURE
from tests.reporting.test_protocol_check import FORGETS, KEEPS, _run
from tests.reporting.test_words_report import _as, _report, _store

# Right after each task 0.7 (FORGETS and KEEPS: 0.9); every run's zero-shot accuracy is 0.5.
LEARNS_LESS = [[0.7, 0.5, 0.5], [0.7, 0.7, 0.5], [0.7, 0.7, 0.7]]


def _method(root: Path, method: str, seed: int, lr: float, matrix: list, ppl: float):
    run = _as(_run(root / "runs" / method, seed, lr, matrix, 0.8), method)
    run.results["metrics"]["ppl_ratio_final"] = ppl
    return run


def test_plasticity_is_the_gain_over_the_runs_own_zero_shot_accuracy(tmp_path: Path) -> None:
    runs = [_method(tmp_path, "lora", s, 1e-3, FORGETS, 1.5) for s in (1, 2, 3)]
    runs += [_method(tmp_path, "lora", s, 3e-4, LEARNS_LESS, 1.1) for s in (1, 2, 3)]
    slow, fast = frontier_points(runs, [0, 1], 16, reference=zero_shot_reference)
    # mean over tasks of (accuracy right after the task − 0.5 before training)
    assert slow["lr"] == 3e-4 and slow["plasticity"].mean == pytest.approx(0.2)
    assert fast["lr"] == 1e-3 and fast["plasticity"].mean == pytest.approx(0.4)
    assert fast["bwt_learned"].mean == pytest.approx(-0.25)  # (−0.3 − 0.2) / 2
    assert fast["seeds"] == [1, 2, 3]
    # Without a control (no head_only run, no zero-shot reference given) there is no frontier.
    assert frontier_points(runs, [0, 1], 16) == []


def _measurable_check(store: Path, monkeypatch: pytest.MonkeyPatch, runs: list) -> None:
    monkeypatch.setattr(words_report, "load_grid", lambda root: runs)
    forgets = {"n": 3, "mean": -0.25, "std": 0.0, "low": -0.3, "high": -0.2, "test_noise": True}
    record(store, [ProtocolCheck("first", "lora", 1e-3, [1, 2, 3], forgets, forgets, 0.02, True)])


def test_the_report_compares_two_methods_at_equal_plasticity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    runs = [_method(store, "curlora", s, 1e-3, KEEPS, 1.0) for s in (1, 2, 3)]
    runs += [_method(store, "lora", s, 1e-3, FORGETS, 1.5) for s in (1, 2, 3)]
    _measurable_check(store, monkeypatch, runs)
    report = _report(store, tmp_path)
    section = report[report.index("## Stability–plasticity frontier") :]
    assert "over the zero-shot accuracy" in section and "Descriptive" in section
    assert "| curlora | 0.001 | 1,2,3 | 0.400 ± 0.000 |" in section
    # Both learn +0.4 over zero-shot; CURLoRA keeps everything at ×1.0, LoRA forgets at ×1.5.
    line = (
        "- at plasticity +0.400 (over zero-shot; the middle of the overlap [+0.400, +0.400]): "
        "curlora perplexity ratio 1.000, BWT (learned tasks) +0.000; "
        "lora perplexity ratio 1.500, BWT (learned tasks) -0.250"
    )
    assert line in section
    summary = (tmp_path / "summary.md").read_text()
    assert "At equal plasticity (descriptive" in summary and line in summary
    assert (tmp_path / FRONTIER_FIGURE).stat().st_size > 0


def test_a_method_short_of_seeds_is_shown_but_not_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    runs = [_method(store, "curlora", s, 1e-3, KEEPS, 1.0) for s in (1, 2, 3)]
    runs += [_method(store, "lora", s, 1e-3, FORGETS, 1.5) for s in (1, 2)]
    _measurable_check(store, monkeypatch, runs)
    report = _report(store, tmp_path)
    # In the table, with the seeds it rests on, and no interval on 2 seeds (as in Table 2).
    row = next(line for line in report.splitlines() if line.startswith("| lora | 0.001 | 1,2 |"))
    assert row.endswith("| ×1.500 n/a (2 seeds) |")
    assert "Not compared at equal plasticity until every rate has 3 seeds: lora." in report
    assert "at plasticity" not in report
    assert "At equal plasticity" not in (tmp_path / "summary.md").read_text()
