"""W&B helpers with wandb disabled (no network, no account) and with wandb absent.

Expected values are the fabricated results of conftest.results_kwargs."""

from __future__ import annotations

import sys

import pytest

from curlora.reporting.wandb_report import (
    accuracy_rows,
    accuracy_table,
    evaluation_objects,
    running_metrics,
    summary_metrics,
)

TASKS = ["a", "b"]
INITIAL = [0.5, 0.4]
R = [[0.9, None], [0.8, 0.7]]  # task b not evaluated after task a
MAJORITY = [0.5, 0.6]
ROWS = [
    [0, "before training", "a", 0.5, 0.5],
    [0, "before training", "b", 0.4, 0.6],
    [1, "a", "a", 0.9, 0.5],  # the None cell left out
    [2, "b", "a", 0.8, 0.5],
    [2, "b", "b", 0.7, 0.6],
]


def test_accuracy_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb = pytest.importorskip("wandb")
    table = accuracy_table(INITIAL, R, TASKS, MAJORITY)
    assert isinstance(table, wandb.Table)
    assert table.columns == ["tasks_trained", "after_task", "task", "accuracy", "majority"]
    assert table.data == ROWS


def test_accuracy_table_without_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    assert accuracy_table(INITIAL, R, TASKS, MAJORITY) is None
    assert accuracy_rows(INITIAL, R, TASKS, MAJORITY) == ROWS


def test_running_metrics_over_the_tasks_trained_so_far() -> None:
    assert running_metrics([]) == {}  # before training: nothing seen
    assert running_metrics([[0.9, None]]) == {"eval/avg_acc": 0.9}  # BWT needs a second task
    both = running_metrics(R)
    assert both["eval/avg_acc"] == pytest.approx(0.75)  # (0.8 + 0.7) / 2
    assert both["eval/bwt"] == pytest.approx(-0.1)  # 0.8 - 0.9
    assert "eval/a/forgetting" not in both  # without task names: no per-task keys


def test_forgetting_per_task_at_each_point() -> None:
    # Avalanche's per-experience forgetting: R[j][j] - R[k][j] for every task j trained.
    three = [[0.9, 0.5, 0.4], [0.7, 0.8, 0.5], [0.6, 0.85, 0.75]]
    tasks = ["a", "b", "c"]
    first = running_metrics(three[:1], tasks)
    assert first["eval/a/forgetting"] == 0.0 and "eval/b/forgetting" not in first
    second = running_metrics(three[:2], tasks)
    assert second["eval/a/forgetting"] == pytest.approx(0.2)  # 0.9 - 0.7
    assert second["eval/b/forgetting"] == 0.0 and "eval/c/forgetting" not in second
    last = running_metrics(three, tasks)
    assert last["eval/a/forgetting"] == pytest.approx(0.3)  # 0.9 - 0.6
    assert last["eval/b/forgetting"] == pytest.approx(-0.05)  # 0.8 - 0.85: it improved
    assert last["eval/c/forgetting"] == 0.0


def test_evaluation_objects_are_wandb_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    pytest.importorskip("wandb")
    from wandb.plot.custom_chart import CustomChart

    confusion = {"a": [[3, 1], [0, 4]], "b": [[2, 2], [1, 3]]}
    objects = evaluation_objects(INITIAL, R, TASKS, MAJORITY, [10.0, 11.0, 12.0], confusion)
    assert set(objects) == {
        "eval/forgetting_curve",
        "eval/accuracy_matrix",
        "lm/perplexity_curve",
        "eval/a/confusion",
        "eval/b/confusion",
    }
    curve = objects["eval/forgetting_curve"]
    assert isinstance(curve, CustomChart)
    assert curve.spec.spec_name == "wandb/lineseries/v0"
    lines = {}
    for x, line, value in curve.table.data:
        lines.setdefault(line, []).append((x, value))
    # x = tasks trained; task b's missing cell after task a is left out of its line; the
    # tasks' majority rates differ, so each is its own reference line.
    assert lines["a"] == [(0, 0.5), (1, 0.9), (2, 0.8)]
    assert lines["b"] == [(0, 0.4), (2, 0.7)]
    assert lines["b majority-class rate"] == [(0, 0.6), (2, 0.6)]
    matrix = objects["eval/a/confusion"]
    assert matrix.spec.spec_name == "wandb/confusion_matrix/v1"
    counts = {(t, p): n for t, p, n in matrix.table.data}
    assert counts == {("class 0", "class 0"): 3, ("class 0", "class 1"): 1} | {
        ("class 1", "class 0"): 0,
        ("class 1", "class 1"): 4,
    }  # no class_names: "class <id>", never a bare "0" that reads like a count
    named = evaluation_objects(
        INITIAL, R, TASKS, MAJORITY, [10.0], confusion, {"a": ["negative", "positive"]}
    )["eval/a/confusion"]
    counts = {(t, p): n for t, p, n in named.table.data}
    assert counts[("negative", "positive")] == 1 and counts[("positive", "positive")] == 4


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
