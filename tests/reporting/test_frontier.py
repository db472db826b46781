"""The stability-plasticity frontier: a method is compared at equal plasticity along its
best learning rates, never along a rate that another of its rates beats on both axes."""

from __future__ import annotations

import math

from curlora.reporting.frontier import equal_plasticity, pareto
from curlora.reporting.stats import summarize, summarize_log


def _point(method: str, plasticity: float, ppl: float, bwt: float) -> dict:
    return {
        "method": method,
        "plasticity": summarize([plasticity]),
        "ppl_ratio": summarize_log([ppl]),  # geometric, as the report's other ratios
        "bwt": summarize([bwt]),
    }


def test_a_rate_beaten_on_both_axes_is_off_the_frontier() -> None:
    # (plasticity, perplexity ratio, BWT): the third is less plastic and less stable than
    # the second, so it is dominated.
    curve = [(0.035, 1.012, -0.008), (0.068, 1.118, -0.025), (0.038, 3.561, -0.060)]
    assert pareto(curve) == [(0.035, 1.012, -0.008), (0.068, 1.118, -0.025)]


def test_equal_plasticity_interpolates_along_the_frontier() -> None:
    points = [
        _point("curlora", 0.035, 1.012, -0.008),
        _point("curlora", 0.068, 1.118, -0.025),
        _point("curlora", 0.038, 3.561, -0.060),  # dominated: must not enter
        _point("lora", 0.008, 1.000, 0.018),
        _point("lora", 0.092, 1.040, -0.008),
    ]
    (line,) = equal_plasticity(points)
    # Overlap [0.035, 0.068], middle 0.0515: curlora halfway between its two frontier
    # points, 1.012 + 0.5 · (1.118 − 1.012) = 1.065; lora (0.0515 − 0.008) / 0.084 of the
    # way from 1.000 to 1.040 = 1.0207.
    assert "at plasticity +0.052 (over head_only; the middle of the overlap" in line
    assert "[+0.035, +0.068])" in line
    assert "curlora perplexity ratio 1.065" in line and "lora perplexity ratio 1.021" in line
    assert math.isclose(1.012 + 0.5 * (1.118 - 1.012), 1.065)
