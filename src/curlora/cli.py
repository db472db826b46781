"""Hydra entry point shared by ``python train.py`` and the ``curlora-train`` script."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from curlora.config_checks import ConfigError
from curlora.data.assets import AssetError
from curlora.data.sources.hub import HubUnreachableError
from curlora.data.validation import DataError

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
log = logging.getLogger("curlora")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from curlora.train import run

    _group_sweep_runs(cfg)
    try:
        results = run(cfg)
    except (ConfigError, DataError) as error:
        # A misconfiguration or unusable data is the user's to fix: one clear message,
        # no traceback, non-zero exit (also for each job of a multirun).
        kind = "configuration" if isinstance(error, ConfigError) else "data"
        log.error("invalid %s: %s", kind, error)
        print(f"error: invalid {kind}: {error}", file=sys.stderr)
        sys.exit(2)
    except (HubUnreachableError, AssetError) as error:
        # A model or data set that cannot be fetched here: the message says what to use
        # instead; a traceback would only bury it.
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
    # The sweep objective (Optuna and friends minimise/maximise what main returns).
    value = results.get("metrics", {}).get("avg_accuracy")
    return float(value) if value is not None else None


def _group_sweep_runs(cfg: DictConfig) -> None:
    """In a multirun, put every job's W&B run in one group named after the sweep directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if hydra_cfg.mode == RunMode.MULTIRUN and wandb_cfg is not None and not wandb_cfg.get("group"):
        with open_dict(cfg):
            cfg.logger.wandb.group = Path(hydra_cfg.sweep.dir).name


def main() -> None:
    _hydra_main()
