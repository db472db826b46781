"""W&B helpers with wandb disabled (no network, no account) and with wandb absent.

Expected values are the fabricated results of conftest.results_kwargs."""

from __future__ import annotations

import sys

import pytest

from curlora.reporting.wandb_report import accuracy_rows, accuracy_table, summary_metrics

TASKS = ["a", "b"]
R = [[0.9, None], [0.8, 0.7]]  # task b not evaluated after task a


def test_accuracy_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb = pytest.importorskip("wandb")
    table = accuracy_table(R, TASKS)
    assert isinstance(table, wandb.Table)
    assert table.columns == ["after_task", "task", "accuracy"]
    assert table.data == [["a", "a", 0.9], ["b", "a", 0.8], ["b", "b", 0.7]]  # None cell left out


def test_accuracy_table_without_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    assert accuracy_table(R, TASKS) is None
    assert accuracy_rows(R, TASKS) == [["a", "a", 0.9], ["b", "a", 0.8], ["b", "b", 0.7]]


def test_summary_metrics(make_results, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # the summary never needs wandb
    results = make_results(perplexity={"initial": 10.0, "after_task": [11.0, 12.5], "tokens": 99})
    summary = summary_metrics(results)
    assert summary["final/avg_accuracy"] == pytest.approx(2.20 / 3)  # (0.60 + 0.85 + 0.75) / 3
    assert summary["final/forgetting_max"] == pytest.approx(0.15)  # tests/metrics arithmetic
    assert summary["final/sst2/acc"] == 0.85  # last row of conftest.MATRIX
    assert summary["final/sst2/majority"] == 0.509
    assert summary["initial/mrpc/acc"] == 0.50
    assert summary["lm/ppl_final"] == 12.5  # last measured; after_task[2] is null
    assert summary["lm/tokens"] == 99 and summary["status"] == "completed"
    assert summary["final/ppl_ratio_final"] == pytest.approx(1.25)  # 12.5 / 10.0
    assert all(value is not None for value in summary.values())
    assert all(isinstance(value, (int, float, str)) for value in summary.values())
