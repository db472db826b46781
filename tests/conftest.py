"""Shared fixtures: compose run configs for the tiny model and synthetic data, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import curlora  # noqa: F401  (registers the curlora.* resolvers the configs use)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"

# Tests never touch the network or a real W&B account.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Tiny models gain nothing from intra-op threads, and when another process shares the two
# cores, spinning OpenMP workers make them 20× slower (measured: a tiny run 107 s with two
# threads next to a busy core, 4.7 s with one). Subprocesses inherit the variable.
os.environ["OMP_NUM_THREADS"] = "1"
# Runs of the suite name test-only classes (fault callbacks, throwaway baselines) and are
# resumed from their saved configs: the opt-in a user gives for code of their own
# (curlora.checks.targets). Tests of the allowlist itself remove it.
os.environ["CURLORA_TRUSTED_TARGETS"] = "tests.,throwaway_baselines.,readme_l2_anchor."
torch.set_num_threads(1)

FAST = ["model=tiny_llama", "data=synthetic", "debug=fast", "logger=none"]


def compose_run_config(
    tmp_path: Path, overrides: list[str], config_dir: Path = CONFIG_DIR
) -> DictConfig:
    """A fully composed run config whose output, logs and cache live under ``tmp_path``
    (``config_dir``: another copy of ``configs/``, e.g. one with a throwaway baseline)."""
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(REPO_ROOT)
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


@pytest.fixture
def run_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """``run_config(*overrides)``: the fast tiny/synthetic config plus ``overrides``."""

    def make(*overrides: str) -> DictConfig:
        return compose_run_config(tmp_path, [*FAST, *overrides])

    return make


TINY = ["debug=tiny"]
"""What the README-command tests append: tiny model, synthetic data, 32 records per task."""


def run_cli(
    args: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python <repo>/train.py *args`` started in ``cwd`` (its logs/ and .cache/ go there)."""
    environment = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def skip_grid_job_prechecks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``curlora-reproduce`` without the grid's job pre-checks (``curlora.grid.prechecks``:
    every job's config composed and checked, seconds a grid). For tests whose point is
    elsewhere (the order of the parts, the grid's own files); ``test_grid_prechecks``
    covers the checks. They read and write no file."""
    from curlora.grid import prechecks

    monkeypatch.setattr(prechecks, "check_jobs", lambda grid, extra, root: None)


@contextmanager
def figures_off() -> Iterator[None]:
    """Runs inside draw no figures (about a fifth of a tiny run's time). For tests that never
    read them: a plotting error is only a warning, and ``test_plots.py`` and
    ``test_end_to_end.py`` check the figures a run writes."""
    from curlora.run import report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "_plots", lambda results, run_dir: None)
        yield
