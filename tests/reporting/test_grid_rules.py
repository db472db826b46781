"""The rules in ``grid.yaml`` are checked before a report uses any: a rule it cannot use
makes the file damaged, named in one warning with the key and what is valid, the report
says it used the default rules, and no number comes from the bad rule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from curlora.reporting.grid import Rules
from tests.conftest import REPO_ROOT
from tests.reporting.report_copies import (
    COMMITTED_REPORT,
    TABLE1,
    TINY_WORDS,
    copy_store,
    report_only,
    without_warnings,
)

# Every grid.yaml a report has read or will read: the stored grids and the shipped configs.
GRIDS = sorted(
    {
        *COMMITTED_REPORT.glob("*/grid.yaml"),
        TINY_WORDS / "grid.yaml",
        *(REPO_ROOT / "src" / "curlora" / "configs" / "reproduce").glob("*.yaml"),
    }
)


def _with(section: str | None, key: str, value: Any) -> dict[str, Any]:
    grid = yaml.safe_load((TABLE1 / "grid.yaml").read_text(encoding="utf-8"))
    (grid[section] if section else grid)[key] = value
    return grid


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("margins", "accuracy", float("nan")),  # every comparison with it false
        ("margins", "accuracy", float("inf")),
        ("margins", "accuracy", 1.5),  # no task could ever be learned
        ("margins", "accuracy", -0.02),
        ("margins", "accuracy", "0.02"),  # a string float() would have taken
        ("margins", "accuracy", True),
        ("margins", "ppl_ratio", 0.9),  # "keeps perplexity" below 1 is a drop
        ("margins", "ppl_ratio", float("nan")),
        ("bootstrap", "replicates", 0),  # every interval nan
        ("bootstrap", "replicates", 1),  # one draw has no sample variance
        ("bootstrap", "replicates", -5),  # numpy's "negative dimensions"
        ("bootstrap", "replicates", 10**6),  # memory: past the stated cap
        ("bootstrap", "replicates", 10**30),
        ("bootstrap", "replicates", 2000.5),  # int() would have cut it
        ("bootstrap", "seed", -1),  # numpy takes no negative seed
        ("bootstrap", "seed", 0.5),
        (None, "seeds", [1311, "1312"]),
        (None, "seeds", 1311),
        (None, "ranks", [16.5]),
        (None, "ranks", [0]),
        (None, "headline_methods", "curlora"),  # a string: tuple() would spell it out
        (None, "matched_controls", ["vera\x1b[2J"]),
        (None, "lrs", {"curlora": [float("nan")]}),
        (None, "lrs", {"curlora": [-0.001]}),
        (None, "margins", 0.02),
        (None, "bootstrap", [2000]),
        (None, "selection", "best"),
    ],
)
def test_a_rule_a_report_cannot_use_is_a_damaged_grid_yaml_named_by_key(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    section: str | None,
    key: str,
    value: Any,
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_with(section, key, value)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="curlora"):
        rules = Rules.read(path)
    assert rules == Rules()  # the defaults, not a number made from the bad rule
    dotted = f"{section}.{key}" if section else key
    assert rules.damaged is not None and rules.damaged.startswith(dotted)
    assert "valid: " in rules.damaged
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and dotted in warnings[0]
    assert "\n" not in warnings[0]


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_stored_and_shipped_grid_keeps_its_rules(path: Path) -> None:
    grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = Rules.read(path)
    assert rules.damaged is None
    margins, boot = grid.get("margins") or {}, grid.get("bootstrap") or {}
    assert rules.accuracy_margin == margins.get("accuracy", Rules.accuracy_margin)
    assert rules.replicates == boot.get("replicates", Rules.replicates)
    assert list(rules.seeds) == list(grid.get("seeds") or [])


def test_a_damaged_rule_is_said_in_the_report_and_moves_no_number(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A negative bootstrap once ended the report in numpy ("negative dimensions", exit 1,
    # grid.yaml unnamed). The committed grid's margins and bootstrap are the defaults', so
    # its numbers (summary.md: the README's block) are the committed ones, under the warning.
    store = copy_store(TABLE1, tmp_path)
    grid = yaml.safe_load((store / "grid.yaml").read_text(encoding="utf-8"))
    grid["bootstrap"]["replicates"] = -5
    (store / "grid.yaml").write_text(yaml.safe_dump(grid), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="curlora"):
        code = report_only("table1_cpu", store, tmp_path / "report")
    assert code == 0, capsys.readouterr().err
    named = [r.getMessage() for r in caplog.records if str(store / "grid.yaml") in r.getMessage()]
    assert len(named) == 1 and "bootstrap.replicates is -5" in named[0]
    warning = "**Warning:** `grid.yaml` is damaged (bootstrap.replicates is -5; valid: an integer"
    report = (tmp_path / "report" / "REPORT.md").read_text(encoding="utf-8")
    assert warning in report
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert warning in summary
    assert without_warnings(summary) == (COMMITTED_REPORT / "summary.md").read_text("utf-8")


@pytest.mark.parametrize(
    "text",
    ["margins:\n  accuracy: " + "9" * 5000 + "\n", "seeds: " + "[" * 5000 + "\n"],
    ids=["5000-digit int", "deep nesting"],
)
def test_yaml_past_what_a_reader_can_parse_is_a_damaged_grid_yaml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    # PyYAML's int() of 5000 digits raises ValueError (Python's digit limit), deep nesting
    # RecursionError: neither is a YAMLError, and both once ended the report unnamed.
    from curlora.reporting.reproduction import planned_runs
    from curlora.reporting.words_report import read_grid

    path = tmp_path / "grid.yaml"
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="curlora"):
        assert Rules.read(path) == Rules()
        assert read_grid(path) == {}
        assert planned_runs(path) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(str(path) in w and "\n" not in w for w in warnings)
