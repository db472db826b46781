"""Verdicts from fabricated grid runs whose numbers are worked out by hand below."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from curlora.reporting.claims import (
    claims,
    difference_words,
    headline,
    learned_tasks,
    paired_log_ratio,
    verdict,
)
from curlora.reporting.grid import Setting
from curlora.reporting.stats import Summary, interval_text, summarize
from tests.reporting.grid_runs import RULES, grid_run, setting


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Setting]:
    # CURLoRA: task a goes 0.80 → 0.795 / 0.79 / 0.80 (seeds 1-3), task b keeps 0.85.
    #   BWT over a, b per seed: (−0.005 + 0)/2 = −0.0025, −0.005, 0.
    # LoRA: task a goes 0.80 → 0.70 / 0.72 / 0.712 / 0.71, task b keeps 0.86: BWT −0.050,
    #   −0.040, −0.044, −0.045; seed 4 CURLoRA did not run: paired numbers use seeds 1-3.
    # head_only: 0.60 / 0.70 / 0.70 right after each task.
    cur = [
        grid_run(tmp_path, "curlora", s, [[0.8, 0.5, 0.5], [a, 0.85, 0.5], [a, 0.85, 0.8]], r)
        for s, a, r in ((1, 0.795, 1.10), (2, 0.79, 1.12), (3, 0.80, 1.08))
    ]
    lora = [
        grid_run(tmp_path, "lora", s, [[0.8, 0.5, 0.5], [a, 0.86, 0.5], [a, 0.86, 0.8]], r)
        for s, a, r in ((1, 0.70, 1.30), (2, 0.72, 1.35), (3, 0.712, 1.25), (4, 0.71, 1.4))
    ]
    head = [
        grid_run(tmp_path, "head_only", s, [[0.6, 0.5, 0.5], [0.6, 0.7, 0.5], [0.6, 0.7, 0.7]], 1.0)
        for s in (1, 2, 3)
    ]
    return {"curlora": setting("curlora", cur), "lora": setting("lora", lora),
            "head_only": setting("head_only", head)}  # fmt: skip


def test_verdict_branches() -> None:
    assert verdict(True, False) == "holds"
    assert verdict(False, True) == "does not hold"
    # Undecided: one wording with the headline's, and what the interval still allows.
    assert verdict(False, False) == "no evidence of a difference"
    words = verdict(False, False, "x may be 1 to 2")
    assert words == "no evidence of a difference: x may be 1 to 2"


@pytest.mark.parametrize(
    ("low", "high", "words"),
    [
        # beyond zero, not beyond the margin: said so, with the interval's nearer end
        (0.01, 0.05, "above, but not beyond the 0.02 margin (the interval's nearer end, "
         "+0.010, lies within ±0.020)"),
        (0.03, 0.05, "above, beyond the 0.02 margin"),
        (-0.05, -0.01, "below, but not beyond the 0.02 margin (the interval's nearer end, "
         "-0.010, lies within ±0.020)"),
        (-0.05, -0.03, "below, beyond the 0.02 margin"),
        (-0.015, 0.015, "equivalent within ±0.02"),
        (-0.07, 0.048, "no evidence of a difference: may be from -0.070 to +0.048"),
        (None, None, "no evidence of a difference (no interval)"),
    ],
)  # fmt: skip
def test_difference_wording(low: float | None, high: float | None, words: str) -> None:
    d = Summary(3, 0.0, 0.01, low, high)
    allows = lambda lo, hi: f"may be from {lo:+.3f} to {hi:+.3f}"  # noqa: E731
    assert difference_words(d, 0.02, "above", "below", "0.02", allows) == words


def test_two_seeds_carry_no_verdict_however_close_they_are() -> None:
    # Two seeds that agree to 0.001 give a narrow t(1) interval entirely past the margin;
    # below MIN_SEEDS (3) seeds no verdict rests on it, and the report shows no interval.
    two = summarize([-0.076, -0.074])
    assert two.low is not None and two.high is not None and two.high < -0.02
    allows = lambda lo, hi: f"may be from {lo:+.3f} to {hi:+.3f}"  # noqa: E731
    words = difference_words(two, 0.02, "above", "below", "0.02", allows)
    assert words == "no evidence of a difference (no interval)"
    assert interval_text(two) == "n/a (2 seeds)"
    three = summarize([-0.076, -0.074, -0.075])
    assert difference_words(three, 0.02, "above", "below", "0.02", allows) == (
        "below, beyond the 0.02 margin"
    )


def test_one_learned_task_set_against_both_controls(settings: dict[str, Setting]) -> None:
    # Bars (majority 0.5, head_only 0.6 / 0.7 / 0.7, + margin 0.02): 0.62, 0.72, 0.72.
    # CURLoRA 0.80 / 0.85 / 0.80 and LoRA 0.80 / 0.86 / 0.80 clear every bar.
    pair = [settings["curlora"], settings["lora"]]
    assert learned_tasks(pair, settings["head_only"], 0.02) == ([0, 1, 2], [])
    # With head_only at 0.84 on task b, CURLoRA's 0.85 is not 0.02 above it: b is dropped
    # for *both* methods, though LoRA's 0.86 clears it.
    for run in settings["head_only"].runs.values():
        run.results["accuracy_matrix"][1][1] = 0.84
    learned, notes = learned_tasks(pair, settings["head_only"], 0.02)
    assert learned == [0, 2]
    assert notes == ["b (bar 0.860: curlora 0.850, lora 0.860)"]


def test_headline_pairs_by_seed_and_words_the_answer(settings: dict[str, Setting]) -> None:
    rows, learned, notes = headline(
        RULES, [settings["curlora"], settings["lora"]], settings["head_only"]
    )
    assert learned == [0, 1, 2] and notes == []
    forgetting, drift = rows
    # BWT difference CURLoRA − LoRA per seed: 0.0475, 0.035, 0.044 → mean 0.042, std
    # 0.0065; seed variance 0.0065²/3 = 1.4e-5, test variance ≈ 2e-5 (100 of 1000 rows
    # differ between LoRA's two points: ≈ 0.1 · 0.9 / 1000 / 4 per seed): half width
    # ≈ 4.303 · √3.4e-5 = 0.025 → about [+0.017, +0.067]: above zero.
    # [+0.017, +0.067] is above zero but reaches inside the 0.02 margin.
    assert forgetting[1].startswith("CURLoRA forgets less, but not beyond the 0.02 margin")
    # BWT covers a and b, not c: the last task has no BWT.
    assert "learned tasks (a, b): 0.042 ± 0.006" in forgetting[2]
    assert "seeds 1,2,3 (n = 3)" in forgetting[2]
    # 3 seeds (t with 2 df): each seed's own difference beside the verdict, from the
    # stored matrices: (−0.0025 + 0.05), (−0.005 + 0.04), (0 + 0.044).
    per_seed = forgetting[2].split("; per seed: ")[1].split(", ")
    assert [float(v) for v in per_seed] == pytest.approx([0.0475, 0.035, 0.044], abs=6e-4)
    # log ratios CURLoRA − LoRA: ln(1.10/1.30), ln(1.12/1.35), ln(1.08/1.25) = −0.1671,
    # −0.1868, −0.1462 → mean −0.167, std 0.020, 95 % CI [−0.217, −0.116]: below zero.
    assert drift[1] == "CURLoRA's perplexity grows less, beyond the 5 % (log 1.05) margin"
    assert "-0.167 ± 0.020 CI [-0.217, -0.116]" in drift[2]
    # per seed, ratio of ratios: 1.10/1.30, 1.12/1.35, 1.08/1.25
    assert drift[2].endswith("; per seed: ×0.85, ×0.83, ×0.86")


def test_claims_c1_to_c5(settings: dict[str, Setting]) -> None:
    rows = claims(
        RULES, [settings["curlora"], settings["lora"]], settings["head_only"], [0, 1, 2], []
    )
    by_claim = {claim.split(" ")[0]: (v, numbers) for claim, v, numbers in rows}
    # C1: CURLoRA's BWT −0.0025 ± 0.0025: seed variance 2.1e-6, test variance 6.9e-7
    # (5 and 10 differing rows of 1000, nested) → half 4.303 · √2.8e-6 = 0.0072 → about
    # [−0.010, +0.005]: above −0.02 → holds. (On 100 test rows the same accuracies would
    # carry 10× the test variance and the verdict would be inconclusive.)
    assert by_claim["C1"][0] == "holds"
    # C2: LoRA's BWT over its 4 seeds −0.045 ± 0.004 → about [−0.055, −0.035] with test
    # noise: below −0.02 → holds.
    assert by_claim["C2"][0] == "holds"
    # C3a: logs of 1.10, 1.12, 1.08 → mean 0.0952, std 0.0182, CI exp([0.0500, 0.1404])
    # = [×1.051, ×1.151]: entirely above 1.05 → does not hold (a margin of 0.001).
    assert by_claim["C3a"] == (
        "does not hold",
        "ratio ×1.100 CI [×1.051, ×1.151] (geometric mean over seeds)",  # one convention
    )
    assert by_claim["C3b"][0] == "holds"
    # C4: on task b CURLoRA is 0.01 below LoRA on every seed (std 0), and the two differ
    # on 10 test rows of 1000: test noise alone gives SE ≈ √(0.01/1000) = 0.0032, half
    # width ≈ 4.303 · 0.0032 = 0.014, reaching −0.024 < −0.02 → inconclusive.
    assert by_claim["C4"][0].startswith(
        "no evidence of a difference: CURLoRA − lora may be b from -2."
    )  # what the interval of task b, the undecided one, still allows
    assert "b: -0.010 ± 0.000" in by_claim["C4"][1]
    # C5: gains over head_only 0.20 / 0.15 / 0.10 right after each task.
    assert by_claim["C5"][1].startswith("gain over head_only right after each task: a: 0.200")


def test_a_blown_up_perplexity_is_shown_not_dropped(settings: dict[str, Setting]) -> None:
    settings["lora"].runs[2].results["metrics"]["ppl_ratio_final"] = math.inf
    d = paired_log_ratio(settings["curlora"], settings["lora"])
    assert d.mean == -math.inf and str(d) == "-inf" and d.low is None
    rows, _, _ = headline(RULES, [settings["curlora"], settings["lora"]], settings["head_only"])
    assert rows[1][1] == "no evidence of a difference (no interval)"
    assert "-inf" in rows[1][2]


def test_c5_needs_the_margin_on_every_task(settings: dict[str, Setting], tmp_path: Path) -> None:
    # A head_only that reaches CURLoRA's 0.85 on task b (same rows right): CURLoRA's gain
    # there is 0 on every seed and every bootstrap draw, its interval [0, 0] lies below the
    # 0.02 margin, so C5 does not hold although tasks a and c gain 0.20 and 0.10.
    (tmp_path / "flat").mkdir()
    matrix = [[0.6, 0.5, 0.5], [0.6, 0.85, 0.5], [0.6, 0.85, 0.7]]
    head = setting(
        "head_only", [grid_run(tmp_path / "flat", "head_only", s, matrix, 1.0) for s in (1, 2, 3)]
    )
    rows = claims(RULES, [settings["curlora"], settings["lora"]], head, [0, 2], [])
    (c5,) = [row for row in rows if row[0].startswith("C5")]
    assert c5[1] == "does not hold"
    assert "b: 0.000 ± 0.000" in c5[2]
    assert c5[0].startswith("C5 CURLoRA's accuracy comes from the adapter, not the head: above")
