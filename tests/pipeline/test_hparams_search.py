"""hparams_search=optuna_lr: Optuna's TPE through hydra-optuna-sweeper maximises the
validation objective (curlora.objective), never a test-split number."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from curlora.objective import objective_value
from tests.conftest import TINY, run_cli

# The synthetic tasks have no validation carve by default; the offline suite has one.
CARVES = [f"data.task_specs.{t}.validation_limit=50" for t in ("pairs", "reviews", "moods")]


@pytest.mark.slow  # about 15 s: an Optuna search of tiny runs
def test_optuna_search_maximises_the_validation_objective(tmp_path: Path) -> None:
    done = run_cli(
        ["hparams_search=optuna_lr", *TINY, "hydra.sweeper.n_trials=3", *CARVES],
        cwd=tmp_path,
        OMP_NUM_THREADS="1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    runs = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert len(runs) == 3
    values = [objective_value(r, {"max_perplexity_ratio": 1.2}) for r in runs]
    assert best["best_value"] == max(values)  # the sweeper saw what the objective computes
    winner = runs[values.index(max(values))]["config"]
    assert best["best_params"]["optimizer.lr"] == winner["optimizer"]["lr"]


def test_a_search_without_validation_carves_is_refused(tmp_path: Path) -> None:
    done = run_cli(["hparams_search=optuna_lr", *TINY, "hydra.sweeper.n_trials=1"], tmp_path)
    assert done.returncode == 1
    assert "needs validation carves" in done.stderr and "validation_limit" in done.stderr


def test_the_objective_is_validation_accuracy_less_the_perplexity_excess() -> None:
    results = {
        "validation": {"accuracy_matrix": [[0.6, None], [0.5, 0.9]]},
        "metrics": {"ppl_ratio_final": 1.25, "avg_accuracy": 0.99},  # test split: unused
    }
    # mean(0.5, 0.9) = 0.7, minus (1.25 - 1.2) = 0.65
    assert math.isclose(objective_value(results, {"max_perplexity_ratio": 1.2}), 0.65)
    assert math.isclose(objective_value(results, {"max_perplexity_ratio": None}), 0.7)
    exploded = {**results, "metrics": {"ppl_ratio_final": "inf"}}
    assert objective_value(exploded, {"max_perplexity_ratio": 1.2}) == -math.inf
    assert objective_value({"validation": None}, {"max_perplexity_ratio": 1.2}) is None
