"""Choosing each method's learning rate from the grid's validation scores."""

from __future__ import annotations

from pathlib import Path

from curlora.reporting.grid import GridRun, choose_learning_rates


def _run(method: str, lr: float, seed: int, validation: float) -> GridRun:
    results = {
        "method": method,
        "rank": 16,
        "seed": seed,
        "config": {"optimizer": {"lr": lr}, "method": {"name": method}},
        "validation": {"accuracy_matrix": [[validation, validation]]},
    }
    return GridRun(Path(f"{method}/{lr}/{seed}"), results)


def test_rates_are_compared_on_the_seeds_every_rate_ran() -> None:
    # Seed 1 ran both rates: 1e-3 wins there (0.70 vs 0.68). Seeds 2 and 3 ran only 3e-3
    # and scored low; pooling them would compare a 3-seed mean (0.60) with a 1-seed
    # number and pick 1e-3 for the wrong reason, or, with high scores, pick 3e-3.
    runs = [
        _run("lora", 1e-3, 1, 0.70),
        _run("lora", 3e-3, 1, 0.68),
        _run("lora", 3e-3, 2, 0.95),
        _run("lora", 3e-3, 3, 0.95),
    ]
    assert choose_learning_rates(runs) == {"lora": 1e-3}
    # Ties go to the smaller rate; controls take no part.
    tied = [_run("curlora", 1e-2, 1, 0.7), _run("curlora", 1e-3, 1, 0.7)]
    assert choose_learning_rates([*tied, _run("head_only", 0.1, 1, 0.9)]) == {"curlora": 1e-3}


def test_without_a_common_seed_every_run_counts() -> None:
    runs = [_run("lora", 1e-3, 1, 0.70), _run("lora", 3e-3, 2, 0.75)]
    assert choose_learning_rates(runs) == {"lora": 3e-3}
