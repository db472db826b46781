"""The rank sweep's and the sampling ablation's comparisons: each setting is paired with the
right reference (CURLoRA at the same rank; the paper's sampling), numbers worked out by
hand below."""

from __future__ import annotations

from pathlib import Path

from curlora.reporting.claims import learned_tasks, question_rows
from curlora.reporting.grid import GridRun
from curlora.reporting.tables import comparison_table, sampling_settings
from tests.reporting.grid_runs import RULES, grid_run, setting

# Two ways of forgetting task a (b is kept), per seed 1-3, with perplexity ratios:
#   "keeps": a goes 0.80 → 0.795 / 0.79 / 0.80, b 0.85; BWT over a, b: −0.0025, −0.005, 0
#   "loses": a goes 0.80 → 0.70 / 0.72 / 0.712, b 0.86; BWT −0.050, −0.040, −0.044
# Paired "keeps" − "loses": 0.0475, 0.035, 0.044 → 0.042 ± 0.006 (test_claims works out
# the interval); log ratios ln(1.10/1.30), ln(1.12/1.35), ln(1.08/1.25) → −0.167 ± 0.020,
# CI [−0.217, −0.116].
# (seed, a after the last task, b, perplexity ratio)
KEEPS = ((1, 0.795, 0.85, 1.10), (2, 0.79, 0.85, 1.12), (3, 0.80, 0.85, 1.08))
LOSES = ((1, 0.70, 0.86, 1.30), (2, 0.72, 0.86, 1.35), (3, 0.712, 0.86, 1.25))


def runs(
    tmp: Path, method: str, rank: int, how: tuple, sampling: str | None = None
) -> list[GridRun]:
    return [
        grid_run(tmp, method, s, [[0.8, 0.5, 0.5], [a, b, 0.5], [a, b, 0.8]], r, rank, sampling)
        for s, a, b, r in how
    ]


def test_the_question_pairs_curlora_with_lora_at_the_same_rank(tmp_path: Path) -> None:
    # At rank 16 CURLoRA keeps and LoRA loses; at rank 8 the other way round. Pairing
    # across ranks would compare two settings that forget alike (a difference of 0).
    cur16 = setting("curlora", runs(tmp_path, "curlora", 16, KEEPS))
    lora16 = setting("lora", runs(tmp_path, "lora", 16, LOSES))
    cur8 = setting("curlora", runs(tmp_path, "curlora", 8, LOSES))
    lora8 = setting("lora", runs(tmp_path, "lora", 8, KEEPS))
    rows = question_rows(RULES, [cur8, cur16, lora8, lora16], [0, 1, 2])
    assert [row[0].split("(")[1].split(",")[0] for row in rows] == ["r8", "r8", "r16", "r16"]
    (forget8, words8, numbers8), (_, drift8, _), (_, words16, numbers16), _ = rows
    # The wording says whether the difference also clears the margin (0.02; log 1.05).
    assert "lora" in forget8 and words8.startswith("CURLoRA forgets more, but not beyond the ")
    assert numbers8.startswith("learned tasks (a, b): -0.042 ± 0.006")  # c is the last task
    assert drift8 == "CURLoRA's perplexity grows more, beyond the 5 % (log 1.05) margin"
    assert words16.startswith("CURLoRA forgets less")
    assert numbers16.startswith("learned tasks (a, b): 0.042 ± 0.006")


def test_learned_task_notes_name_the_rank_when_a_method_appears_twice(tmp_path: Path) -> None:
    cur16 = setting("curlora", runs(tmp_path, "curlora", 16, KEEPS))
    cur8 = setting("curlora", runs(tmp_path, "curlora", 8, LOSES))
    # Bars: majority 0.5 + 0.02; task b: 0.85 and 0.86 clear it; raise b's bar to 0.855.
    head = setting("head_only", runs(tmp_path, "head_only", 16, KEEPS))
    for run in head.runs.values():
        run.results["accuracy_matrix"] = [[0.5, 0.5, 0.5], [0.5, 0.835, 0.5], [0.5, 0.835, 0.5]]
    learned, notes = learned_tasks([cur8, cur16], head, 0.02)
    assert learned == [0, 2]
    assert notes == ["b (bar 0.855: curlora r16 0.850)"]


def test_comparison_columns_are_paired_with_the_reference(tmp_path: Path) -> None:
    cur = setting("curlora", runs(tmp_path, "curlora", 16, KEEPS))
    lora = setting("lora", runs(tmp_path, "lora", 16, LOSES))
    table = comparison_table([cur, lora], lambda _: cur, RULES, [0, 1, 2])
    header, _, cur_row, lora_row = table.splitlines()
    assert header.endswith(
        "| paired on seeds | BWT (learned) − CURLoRA's (paired) | log ratio − CURLoRA's (paired) |"
    )
    assert cur_row.endswith("|  |  |  |")  # the reference is not paired with itself
    seeds_cell, bwt_cell, log_cell = lora_row.split("|")[-4:-1]
    assert seeds_cell.strip() == "1,2,3"
    # LoRA − CURLoRA: the negatives of the numbers above.
    assert bwt_cell.strip().startswith("-0.042 ± 0.006 [")
    assert log_cell.strip() == "0.167 ± 0.020 [+0.116, +0.217]"


def test_sampling_settings_put_the_papers_sampling_first(tmp_path: Path) -> None:
    inverted = runs(tmp_path, "curlora", 16, KEEPS)
    assert sampling_settings(inverted, {"curlora": 1e-3}, 16) == []  # nothing to compare
    uniform = runs(tmp_path, "curlora", 16, LOSES, "uniform")
    leverage = runs(tmp_path, "curlora", 16, LOSES, "leverage")
    other_rank = runs(tmp_path, "curlora", 8, LOSES, "leverage")
    found = sampling_settings([*uniform, *other_rank, *leverage, *inverted], {"curlora": 1e-3}, 16)
    assert [s.label for s in found] == ["inverted", "leverage", "uniform"]
    assert all(s.rank == 16 and sorted(s.runs) == [1, 2, 3] for s in found)
    assert found[1].runs[1] is leverage[0]
    # At another rate than the chosen one, no setting is built.
    assert sampling_settings([*inverted, *uniform], {"curlora": 3e-3}, 16) == []
