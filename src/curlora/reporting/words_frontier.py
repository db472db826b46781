"""The words grid's stability–plasticity frontier: every headline method over its
learning-rate grid, plasticity measured against the zero-shot floor.

A method that learns less drifts less: at one chosen rate, a smaller perplexity ratio or
BWT can mean stability or only less learning. The frontier shows each method at every
rate of its grid, so two methods can be read at equal plasticity. It is descriptive: no
verdict of the report rests on it (the verdicts are the rule's, at the rates chosen on
validation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from curlora.reporting.claims import bwt_task_names
from curlora.reporting.frontier import (
    EQUAL_PLASTICITY,
    equal_plasticity,
    frontier_points,
    frontier_table,
    plot_frontier,
    short_of_seeds,
    zero_shot_reference,
)
from curlora.reporting.grid import GridRun
from curlora.reporting.stats import MIN_SEEDS

FRONTIER_FIGURE = "words_frontier.png"
CONTROL = "zero-shot"


def frontier_section(
    runs: Sequence[GridRun], learned: Sequence[int], rank: int, out: Path
) -> tuple[list[str], list[str]]:
    """The report's frontier section and the summary's lines (the comparison at equal
    plasticity), and ``words_frontier.png`` in ``out``, from the rate grid's ``runs`` (the
    grid's seeds only). The comparison takes only methods whose every rate has
    :data:`MIN_SEEDS` seeds, the fewest the report gives an interval on."""
    points = frontier_points(runs, learned, rank, reference=zero_shot_reference)
    if not points:
        return [], []
    plot_frontier(points, out / FRONTIER_FIGURE, control=CONTROL)
    compared = equal_plasticity(points, control=CONTROL, min_seeds=MIN_SEEDS)
    waiting = short_of_seeds(points, MIN_SEEDS)
    lines = [
        "## Stability–plasticity frontier",
        "",
        f"Every headline method over its learning-rate grid (rank {rank}), on the grid's "
        "seeds (the extra headline seeds left out). Plasticity: the mean gain in accuracy "
        "over the zero-shot accuracy (the run's evaluation before training) right after "
        "each task. A method that learns less drifts less, so this is where two methods "
        "can be read at equal plasticity. Descriptive: no verdict above rests on it.",
        "",
        f"![frontier]({FRONTIER_FIGURE})",
        "",
        frontier_table(points, bwt_task_names(runs[0].tasks, learned)),
        "",
    ]
    if compared:
        lines += [
            f"{EQUAL_PLASTICITY}, among the methods with {MIN_SEEDS} seeds at every rate:",
            "",
            *compared,
            "",
        ]
    if waiting:
        lines += [
            f"Not compared at equal plasticity until every rate has {MIN_SEEDS} seeds: "
            f"{', '.join(waiting)}.",
            "",
        ]
    summary = (
        [
            "At equal plasticity (descriptive, from the report's stability–plasticity "
            "frontier over each method's rate grid; no verdict above rests on it):",
            "",
            *compared,
            "",
        ]
        if compared
        else []
    )
    return lines, summary
