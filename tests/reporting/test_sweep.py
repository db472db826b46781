"""Sweep report over fabricated results files (expected values are the fabricated inputs)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curlora.reporting.results import write_results
from curlora.reporting.sweep import aggregate, main, strategy_name, summarize_sweep


@pytest.fixture
def multirun(tmp_path: Path, make_results) -> Path:
    """Hydra-like multirun dir: 3 valid runs (one stopped early), one broken file."""
    root = tmp_path / "multirun"
    write_results(root / "0" / "results.json", make_results(seed=1))
    write_results(
        root / "1" / "results.json",
        make_results(seed=2, accuracy_matrix=[[0.9, 0.5, 0.5], [0.8, 0.9, 0.5], [0.7, 0.8, 0.9]]),
    )
    write_results(
        root / "2" / "results.json",
        make_results(
            method="head_only",
            rank=None,
            config={"strategy": {"_target_": "curlora.strategies.ewc.EWC"}},
            accuracy_matrix=[[0.70, 0.50, 0.50]],
            status="stopped: out of time",
        ),
    )
    (root / "3").mkdir()
    (root / "3" / "results.json").write_text('{"method": "lora"}')
    return root


def test_table_rows_and_columns(multirun: Path) -> None:
    summary = summarize_sweep(multirun)
    assert [p.parent.name for p, _ in summary.skipped] == ["3"]
    assert [(r["method"], r["strategy"], r["rank"], r["seed"]) for r in summary.rows] == [
        ("curlora", "sequential", 16, 1),  # conftest config: strategy.name = sequential
        ("curlora", "sequential", 16, 2),
        ("head_only", "ewc", None, 1311),  # strategy from _target_ curlora.strategies.ewc.EWC
    ]
    assert summary.columns[:7] == [
        "run", "method", "strategy", "rank", "trainable_params", "seed", "status"
    ]  # fmt: skip
    first, second, stopped = summary.rows
    assert first["sst2/acc"] == 0.85 and first["sst2/majority"] == 0.509  # last row, conftest
    assert second["mrpc/acc"] == 0.7  # fabricated last row [0.7, 0.8, 0.9]
    assert stopped["mrpc/acc"] == 0.70 and stopped["status"] == "stopped: out of time"
    assert first["forgetting_max"] == pytest.approx(0.15)  # tests/metrics arithmetic


def test_files_written_and_consistent(multirun: Path, tmp_path: Path) -> None:
    summary = summarize_sweep(multirun, out_dir=tmp_path / "report")
    assert summary.csv_path == tmp_path / "report" / "sweep_summary.csv"
    with summary.csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and list(rows[0]) == summary.columns
    assert rows[2]["rank"] == ""  # None -> empty cell
    assert float(rows[0]["avg_accuracy"]) == pytest.approx(2.20 / 3)  # (0.60 + 0.85 + 0.75) / 3
    markdown = summary.markdown_path.read_text()
    assert markdown == summary.markdown
    assert "| 0.7333 |" in markdown  # ACC of run 0 to 4 decimals
    # two seeds of (curlora, sequential, 16): mean ± std of the final mrpc accuracy
    # mean(0.60, 0.70) = 0.65, sample std = 0.0707
    assert "0.6500 ± 0.0707" in markdown


def test_cli_prints_markdown(multirun: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(multirun)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Sweep: 3 runs") and "head_only" in out
    assert (multirun / "sweep_summary.csv").exists() and (multirun / "sweep_summary.md").exists()


def test_cli_errors(tmp_path: Path) -> None:
    assert main([str(tmp_path / "absent")]) == 2
    assert main([str(tmp_path)]) == 1  # no results below


def test_module_entry_point(multirun: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "curlora.reporting.sweep", str(multirun)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| curlora |" in proc.stdout


def test_strategy_name() -> None:
    assert strategy_name({}) is None
    assert strategy_name({"strategy": "replay"}) == "replay"
    assert strategy_name({"strategy": {"name": "lwf", "_target_": "x.y.Z"}}) == "lwf"
    assert strategy_name({"strategy": {"_target_": "curlora.strategies.replay.Replay"}}) == "replay"


def test_swept_config_keys_become_columns_and_settings() -> None:
    """Runs that differ in a swept key (EWC's λ) are separate settings, never pooled."""
    from curlora.reporting.sweep import aggregate, varying_config_keys

    base = {"method": {"name": "curlora", "seed": 1}, "strategy": {"_target_": "x.ewc.EWC"}}
    configs = [
        {**base, "strategy": {**base["strategy"], "ewc_lambda": lam}, "paths": {"out": str(i)}}
        for i, lam in enumerate([1.0, 10.0])
    ]
    # Paths differ too, but do not make a new setting.
    assert varying_config_keys(configs) == ["strategy.ewc_lambda"]
    columns = ["run", "method", "strategy", "rank", "strategy.ewc_lambda", "seed", "avg_accuracy"]
    rows = [
        {
            "run": "a",
            "method": "curlora",
            "strategy": "ewc",
            "rank": 16,
            "strategy.ewc_lambda": 1.0,
            "seed": 1,
            "avg_accuracy": 0.6,
        },
        {
            "run": "b",
            "method": "curlora",
            "strategy": "ewc",
            "rank": 16,
            "strategy.ewc_lambda": 10.0,
            "seed": 1,
            "avg_accuracy": 0.7,
        },
        {
            "run": "c",
            "method": "curlora",
            "strategy": "ewc",
            "rank": 16,
            "strategy.ewc_lambda": 10.0,
            "seed": 2,
            "avg_accuracy": 0.8,
        },
    ]
    _, groups = aggregate(columns, rows)
    assert [(g["strategy.ewc_lambda"], g["runs"]) for g in groups] == [(1.0, 1), (10.0, 2)]
    # λ = 10 pools its two seeds only: mean(0.7, 0.8) = 0.75, sample std 0.0707.
    assert groups[1]["avg_accuracy"] == "0.7500 ± 0.0707"


def test_settings_are_grouped_by_trainable_count(multirun: Path) -> None:
    # Same method, strategy and rank but another trainable count (a matched-parameter
    # control at another size) is another setting: never pooled as a repeat.
    summary = summarize_sweep(multirun)
    columns, groups = aggregate(
        summary.columns,
        [dict(row, trainable_params=100 + row["seed"]) for row in summary.rows],
    )
    assert "trainable_params" in columns
    assert all(group["runs"] == 1 for group in groups)
