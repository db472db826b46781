"""What a reader of REPORT.md meets first and where the standard numbers are: the summary
of the verdicts before the rules, the final average accuracy in Table 1 and the README
block, perplexities as geometric means, the tasks a learned-task BWT covers."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from curlora.reporting.claims import claims, headline
from curlora.reporting.grid import Setting
from curlora.reporting.reproduction import summary_block, summary_paragraph
from curlora.reporting.tables import TABLE_ONE_CAPTION, table_one
from tests.reporting.grid_runs import RULES, TASKS, grid_run, setting

REPORT = Path(__file__).resolve().parents[2] / "docs" / "reproduction" / "REPORT.md"


@pytest.fixture
def pair(tmp_path: Path) -> list[Setting]:
    # Last rows: CURLoRA [a, 0.85, 0.80], LoRA [a, 0.86, 0.80]; perplexity after = 10·ratio.
    cur = [
        grid_run(tmp_path, "curlora", s, [[0.8, 0.5, 0.5], [a, 0.85, 0.5], [a, 0.85, 0.8]], r)
        for s, a, r in ((1, 0.795, 1.10), (2, 0.79, 1.12), (3, 0.80, 1.08))
    ]
    lora = [
        grid_run(tmp_path, "lora", s, [[0.8, 0.5, 0.5], [a, 0.86, 0.5], [a, 0.86, 0.8]], r)
        for s, a, r in ((1, 0.70, 1.30), (2, 0.72, 1.35), (3, 0.712, 1.25))
    ]
    return [setting("curlora", cur), setting("lora", lora)]


def _row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_committed_report_opens_with_its_verdicts_then_the_rules() -> None:
    text = REPORT.read_text(encoding="utf-8")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## Summary", "## Rules (fixed in the grid config before the runs)"]
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "Final average accuracy" in summary and "The paper's claims: C1 " in summary
    assert "inconclusive" not in text  # one wording: "no evidence of a difference"


def test_table_one_has_the_final_average_accuracy_and_geometric_perplexities(pair) -> None:
    table = table_one(pair, RULES, [0, 1, 2])
    # ACC = mean of the last row, per seed, then mean over seeds:
    # CURLoRA (0.795 + 0.85 + 0.8) / 3, (0.79 + …) / 3, (0.80 + …) / 3.
    acc = statistics.mean((a + 0.85 + 0.8) / 3 for a in (0.795, 0.79, 0.80))
    row = _row(table, "final average accuracy (all tasks, after c)")
    assert row[1].startswith(f"{acc:.3f} ± ")
    assert row[-1] == "0.500"  # the majority rates' mean
    # Perplexity after c: 11.0, 11.2, 10.8 → geometric mean exp(mean(log)), not 11.0.
    geometric = math.exp(statistics.mean(math.log(10 * r) for r in (1.10, 1.12, 1.08)))
    assert _row(table, "perplexity after c")[1].startswith(f"{geometric:.3f} [")
    assert "geometric mean" in TABLE_ONE_CAPTION and "Mean ± std over seeds." not in (
        TABLE_ONE_CAPTION
    )
    # The learned-task BWT names what it covers: a and b (c is last).
    assert "| BWT, learned tasks (a, b) |" in table


def test_the_readme_block_has_the_final_average_accuracy(pair) -> None:
    rows, learned, _ = headline(RULES, pair, None)
    block = summary_block("g", [], None, rows, pair, RULES, learned)
    header = _row(block, "setting")
    assert "final average accuracy" in header
    assert f"BWT (learned tasks: {', '.join(TASKS[:2])})" in header
    assert "perplexity ratio (geometric mean, 95 % CI)" in header


def test_the_summary_paragraph_carries_every_verdict(pair) -> None:
    rows, learned, notes = headline(RULES, pair, None)
    claim_rows = claims(RULES, pair, None, learned, notes)
    text = summary_paragraph(rows, claim_rows, pair, TASKS, learned, 6, 8)
    assert "\n" not in text and text.startswith("From 6 of 8 planned runs")
    assert "not finished: provisional" in text
    for _, answer, _ in rows:
        assert answer in text  # the question's answers in full
    assert "CURLoRA against lora (r16), forgetting of a, b: " in text
    for claim, _, _ in claim_rows:
        assert claim.split(" ", 1)[0] in text
