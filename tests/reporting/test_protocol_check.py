"""The protocol check of a grid (``curlora.reporting.protocol_check``) on fabricated runs:
its rule decides on the chosen rate's all-task BWT interval, em-BWT is read from the
per-example exact matches, and the decision is recorded and read back unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from curlora.reporting.grid import GridRun
from curlora.reporting.protocol_check import (
    FALLBACK,
    RULE,
    DamagedCheck,
    check_config,
    decide,
    decided_prefix,
    protocol_runs,
    read_checks,
    record,
)

TASKS = ["a", "b", "c"]
ROWS = 1000


def _strings(accuracies: list[float]) -> list[str]:
    return ["1" * round(a * ROWS) + "0" * (ROWS - round(a * ROWS)) for a in accuracies]


def _run(root: Path, seed: int, lr: float, matrix: list[list[float]], validation: float) -> GridRun:
    """A head=words LoRA run: accuracy = ``matrix``, exact match = accuracy − 0.1."""
    path = root / f"lr{lr}" / f"s{seed}"
    path.mkdir(parents=True)
    initial = [0.5, 0.5, 0.5]
    em = [[v - 0.1 for v in row] for row in matrix]
    em_initial = [0.4, 0.4, 0.4]
    columns = lambda rows, first: {  # noqa: E731 -- task -> one string per evaluation point
        t: _strings([first[j], *(row[j] for row in rows)]) for j, t in enumerate(TASKS)
    }
    outcomes = {"eval": columns(matrix, initial), "eval_exact_match": columns(em, em_initial)}
    (path / "outcomes.json").write_text(json.dumps(outcomes))
    results = {
        "method": "lora",
        "rank": 16,
        "seed": seed,
        "tasks": TASKS,
        "accuracy_matrix": matrix,
        "initial_accuracy": initial,
        "majority_baseline": [0.5, 0.5, 0.5],
        "metrics": {"ppl_ratio_final": 1.0},
        "config": {"optimizer": {"lr": lr}, "method": {"name": "lora"}},
        "validation": {"accuracy_matrix": [[validation] * 3]},
        "head": {"initial_exact_match": em_initial, "exact_match_matrix": em},
        "warnings": [],
    }
    return GridRun(path, results)


def _grid_file(tmp_path: Path) -> Path:
    grid = {
        "seeds": [1, 2, 3],
        "ranks": [16],
        "lrs": {"lora": [1e-3, 3e-3]},
        "margins": {"accuracy": 0.02},
        "bootstrap": {"replicates": 400, "seed": 0},
        "protocol_check": {"method": "lora", "measurable": RULE, "fallback_overrides": []},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


# R[i][j]: task j after training task i. BWT = mean over j < 2 of R[2][j] − R[j][j].
FORGETS = [[0.9, 0.5, 0.5], [0.8, 0.9, 0.5], [0.6, 0.7, 0.9]]  # BWT = (−0.3 − 0.2) / 2
KEEPS = [[0.9, 0.5, 0.5], [0.9, 0.9, 0.5], [0.9, 0.9, 0.9]]  # BWT = 0


def test_the_rule_reads_the_chosen_rates_bwt_interval(tmp_path: Path) -> None:
    # The chosen rate (best validation, 0.8) forgets; the other (0.7) does not: the check
    # must read the chosen one's runs only.
    bwt = -0.25
    runs = [_run(tmp_path, s, 1e-3, FORGETS, 0.8) for s in (1, 2, 3)]
    runs += [_run(tmp_path, s, 3e-3, KEEPS, 0.7) for s in (1, 2, 3)]
    check = decide(runs, _grid_file(tmp_path), "first", "lora")
    assert check.lr == 1e-3 and check.seeds == [1, 2, 3]
    assert check.acc_bwt["mean"] == pytest.approx(bwt)
    assert check.em_bwt is not None and check.em_bwt["mean"] == pytest.approx(bwt)
    assert check.acc_bwt["test_noise"] is True and check.em_bwt["test_noise"] is True
    assert check.measurable is True
    assert "measurable" in check.line() and "acc-BWT -0.250" in check.line()
    # the line shows the interval the rule read, not only mean ± std
    high = f"{check.acc_bwt['high']:+.3f}]"
    assert "95 % CI [" in check.line() and high in check.line()


def test_no_forgetting_is_not_measurable(tmp_path: Path) -> None:
    runs = [_run(tmp_path, s, 1e-3, KEEPS, 0.8) for s in (1, 2, 3)]
    check = decide(runs, _grid_file(tmp_path), "first", "lora")
    assert check.acc_bwt["mean"] == pytest.approx(0.0)
    assert check.measurable is False
    assert "not measurable" in check.line()
    # ...and what that means with these seeds: the mean the rule could have resolved,
    # -(margin + half-width of the interval it read), so "not measurable" is not "absent".
    half = (check.acc_bwt["high"] - check.acc_bwt["low"]) / 2
    assert f"half-width is {half:.3f}" in check.line()
    assert f"below {-(check.margin + half):+.3f}" in check.line()


def test_without_runs_nothing_is_measurable(tmp_path: Path) -> None:
    check = decide([], _grid_file(tmp_path), "first", "lora")
    assert check.lr is None and check.measurable is False
    assert "no completed runs" in check.line()


def test_the_decision_is_recorded_and_read_back(tmp_path: Path) -> None:
    runs = [_run(tmp_path, s, 1e-3, FORGETS, 0.8) for s in (1, 2)]
    check = decide(runs, _grid_file(tmp_path), "first", "lora")
    record(tmp_path, [check])
    assert read_checks(tmp_path) == [check]
    assert read_checks(tmp_path / "elsewhere") == []
    (tmp_path / "protocol_check.json").write_text('{"protocol": "first"}')
    with pytest.raises(DamagedCheck, match=r"protocol_check\.json is damaged .*delete it"):
        read_checks(tmp_path)


def test_the_grid_runs_under_the_prefix_its_first_check_decided(tmp_path: Path) -> None:
    """Undecided: None (the grid must run the check first); measurable under the first
    protocol: ""; not measurable: the fallback prefix, whatever the fallback check said."""
    runs = [_run(tmp_path, s, 1e-3, FORGETS, 0.8) for s in (1, 2)]
    first = decide(runs, _grid_file(tmp_path), "first", "lora")
    assert decided_prefix([]) is None
    assert decided_prefix([first]) == ("" if first.measurable else FALLBACK)
    unmeasurable = dataclasses.replace(first, measurable=False)
    fallback = dataclasses.replace(first, protocol="fallback", measurable=True)
    assert decided_prefix([unmeasurable, fallback]) == FALLBACK
    assert decided_prefix([fallback]) is None
    assert decided_prefix([dataclasses.replace(first, measurable=True)]) == ""


def test_runs_split_by_protocol(tmp_path: Path) -> None:
    first = _run(tmp_path / "runs" / "lr_grid", 1, 1e-3, KEEPS, 0.8)
    fallback = _run(tmp_path / "runs" / "fallback" / "lr_grid", 1, 1e-3, KEEPS, 0.8)
    assert protocol_runs([first, fallback], tmp_path / "runs", fallback=False) == [first]
    assert protocol_runs([first, fallback], tmp_path / "runs", fallback=True) == [fallback]


@pytest.mark.parametrize(
    ("check", "named"),
    [
        ({"method": "lora", "measurable": "acc_bwt_mean < 0"}, "measurable"),
        ({"method": "dora", "measurable": RULE}, "method='dora'"),
    ],
)
def test_a_rule_or_method_the_code_cannot_apply_is_refused(check: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        check_config({"lrs": {"lora": [1e-3]}, "protocol_check": check})
