"""results.json: schema, atomic JSON-safe writing, validating reader, non-finite values."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from curlora.metrics.continual import summarize
from curlora.reporting.results import (
    RESULT_KEYS,
    ResultsError,
    build_results,
    final_accuracies,
    load_results,
    validate_results,
    write_results,
)
from curlora.run import atomic as atomic_module
from curlora.run.atomic import OutputError

TASKS = ["mrpc", "sst2", "sentiment140"]  # as in conftest.results_kwargs
MATRIX = [[0.80, 0.95, 0.40], [0.85, 0.90, 0.45], [0.60, 0.85, 0.75]]  # conftest.MATRIX

CORE_KEYS = [
    "method", "rank", "seed", "tasks", "accuracy_matrix", "initial_accuracy", "perplexity",
    "metrics", "majority_baseline", "trainable_params", "status", "config",
]  # fmt: skip


def test_schema_keys(make_results) -> None:
    results = make_results()
    assert (
        list(results)
        == [*CORE_KEYS, "warnings", "label_balance", "validation", "probe", "head", "retention"]
        == list(RESULT_KEYS)
    )
    assert set(results["perplexity"]) == {"initial", "after_task", "tokens"}
    assert validate_results(results) == []


def test_the_words_section_carries_prompts_and_the_exact_match(make_results) -> None:
    """head=words: em matrix padded to T rows, its BWT from the same formula as the acc's."""
    tasks = make_results()["tasks"]
    em = [[0.9, 0.1, 0.0], [0.5, 0.8, 0.2]]  # a stopped run: two of three rows
    head = {
        "name": "words",
        "prompts": {
            t: {"template": "{text} Answer:", "label_words": [" no", " yes"]} for t in tasks
        },
        "exact_match_matrix": em,
        "initial_exact_match": [0.0, 0.1, 0.2],
    }
    results = make_results(head=head)
    assert validate_results(results) == []
    assert results["head"]["exact_match_matrix"][2] == [None, None, None]
    assert results["head"]["exact_match_bwt"] == pytest.approx(0.5 - 0.9)  # R[1][0] - R[0][0]
    broken = {**results, "head": {**results["head"], "exact_match_matrix": [[2.0]]}}
    assert any("head.exact_match_matrix" in p for p in validate_results(broken))


def test_metrics_are_computed_from_the_matrix(make_results) -> None:
    results = make_results()
    expected = summarize(MATRIX, [0.50, 0.50, 0.35], 10.0, [11.0, 12.0, 12.5])
    assert results["metrics"] == expected
    assert results["metrics"]["forgetting_max"] == pytest.approx(0.15)  # tests/metrics arithmetic


def test_roundtrip_is_strict_json(make_results, tmp_path: Path) -> None:
    results = make_results(
        initial_accuracy={"mrpc": 0.5, "sst2": float("nan"), "sentiment140": 0.35},
        warnings=[{"task": "sst2", "evaluated_after": 1, "reason": "single_class",
                   "accuracy": 0.509, "majority_baseline": 0.509, "top_class_share": 1.0,
                   "detail": "predicts one class"}],
        label_balance={"sst2": {"eval": {"label_counts": [428, 444], "majority": float("nan")}}},
    )  # fmt: skip
    path = write_results(tmp_path / "run" / "results.json", results)
    text = path.read_text()
    on_disk = json.loads(
        text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")
    )
    assert on_disk == results
    # A measured NaN is written as the string "nan" (a result, not a gap), and read back
    # as a float NaN; null stays for what was never measured.
    assert on_disk["initial_accuracy"] == [0.5, "nan", 0.35]
    loaded = load_results(path)
    assert math.isnan(loaded["initial_accuracy"][1])
    assert loaded["label_balance"]["sst2"]["eval"]["majority"] == "nan"


def test_non_finite_perplexity_is_shown_not_dropped(make_results, tmp_path: Path) -> None:
    # after_task = [11, 12, inf]: the language model blew up after the last task.
    results = make_results(perplexity={"initial": 10.0, "after_task": [11.0, 12.0, math.inf]})
    assert results["perplexity"]["after_task"] == [11.0, 12.0, "inf"]
    assert results["metrics"]["ppl_ratio_final"] == "inf"  # not 12 / 10 = 1.2
    loaded = load_results(write_results(tmp_path / "results.json", results))
    assert loaded["perplexity"]["after_task"][2] == math.inf
    assert loaded["metrics"]["ppl_ratio_final"] == math.inf


def test_partial_run_is_padded_with_nulls(make_results) -> None:
    results = make_results(
        accuracy_matrix=MATRIX[:2],
        perplexity={"initial": 10.0, "after_task": [11.0, 13.0]},
        status="stopped: KeyboardInterrupt",
    )
    assert results["accuracy_matrix"][2] == [None, None, None]
    assert results["perplexity"] == {"initial": 10.0, "after_task": [11.0, 13.0, None], "tokens": 0}
    assert results["metrics"]["ppl_ratio_final"] == pytest.approx(1.3)  # 13.0 / 10.0
    assert final_accuracies(results) == MATRIX[1]  # last evaluated row


def test_invalid_results_are_rejected(make_results, results_args) -> None:
    with pytest.raises(ResultsError, match="do not fit 3 tasks"):
        build_results(**results_args(accuracy_matrix=[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ResultsError, match="metrics"):
        build_results(**results_args(metrics={"avg_accuracy": 0.5}))
    results = make_results()
    bad = {**results, "extra": 1, "rank": True, "accuracy_matrix": [[1.5] * 3] * 3}
    del bad["status"]
    problems = validate_results(bad)
    assert any("missing keys ['status']" in p for p in problems)
    assert any("unknown keys ['extra']" in p for p in problems)
    bad["status"] = "completed"
    problems = validate_results(bad)
    assert any(p.startswith("rank") for p in problems)
    assert any(p.startswith("accuracy_matrix[0]") for p in problems)  # 1.5 is not an accuracy


def test_write_is_atomic(make_results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_results(tmp_path / "results.json", make_results())
    before = path.read_text()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_module.os, "replace", failing_replace)
    with pytest.raises(OutputError, match="disk full"):
        write_results(path, make_results(status="completed-again"))
    assert path.read_text() == before  # old file intact
    assert os.listdir(tmp_path) == ["results.json"]  # no temp file left behind


def test_invalid_results_never_touch_the_file(make_results, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    with pytest.raises(ResultsError):
        write_results(path, {**make_results(), "tasks": []})
    assert not path.exists()


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"method": "lora"}))
    with pytest.raises(ResultsError, match="missing keys"):
        load_results(tmp_path / "b.json")


def test_per_task_mappings_follow_task_order(results_args) -> None:
    results = build_results(
        **results_args(majority_baseline={t: 0.5 + i / 10 for i, t in enumerate(TASKS)})
    )
    assert results["majority_baseline"] == [0.5, 0.6, 0.7]
