"""The continual task loop: build objects, train task after task, evaluate, report.

    python train.py [-m] key=value ...        (root script; Hydra composes configs/train.yaml)

Recipe (design §1): validate the whole config before anything loads → load the backbone
→ apply the method → prepare the task sequence → initial evaluation (untrained heads: the
FWT baseline; perplexity before training) → for each task: one ``Trainer.fit`` (fresh
optimizer and schedule), evaluate every task's head, measure perplexity, checkpoint →
``results.json`` and plots. Results are written even when the run stops early; a run
directory passed as ``resume=`` continues from its last checkpoint.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from curlora.adapters import (
    adapter_diagnostics,
    apply_adapter,
    load_adapter_state_dict,
    save_adapter,
)
from curlora.callbacks.forgetting import ForgettingMatrixCallback
from curlora.callbacks.perplexity import PerplexityCallback
from curlora.data.datamodule import TaskSequenceDataModule
from curlora.data.tasks import TaskSpec
from curlora.loggers import GuardedLogger, build_loggers
from curlora.models.backbone import load_backbone
from curlora.models.module import ContinualLitModule, NonFiniteLossError
from curlora.run_report import write_run_report
from curlora.run_state import (
    atomic_write_json,
    read_progress,
    step_checkpoint_dir,
    task_checkpoint,
)
from curlora.strategies import build_strategy

log = logging.getLogger(__name__)

# Two Lightning warnings that are wrong for this loop, silenced by exact message:
# - fit gets no val loader on purpose: every head is evaluated after the task, by the loop;
# - mid-epoch resume *is* exact here: the module's checkpoint carries the data position and
#   ResumableShuffleSampler replays the epoch from it (tests/pipeline/test_reliability.py).
warnings.filterwarnings(
    "ignore", message="You defined a `validation_step` but have no `val_dataloader`"
)
warnings.filterwarnings(
    "ignore", message="You're resuming from a checkpoint that ended before the epoch"
)


class TaskLoop:
    """Holds the objects of one run and walks the task sequence; see the module docstring."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.paths.output_dir)
        self.cache_dir = Path(cfg.paths.cache_dir)
        self.tasks: list[str] = list(cfg.tasks)
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        torch.use_deterministic_algorithms(bool(cfg.get("deterministic", True)), warn_only=True)

        self.backbone, self.tokenizer = load_backbone(cfg.model, self.cache_dir)
        self.trainable_params = apply_adapter(self.backbone, cfg.method)
        specs = {t: TaskSpec.from_config(t, cfg.data.task_specs[t]) for t in self.tasks}
        self.data = TaskSequenceDataModule(
            task_specs=specs,
            tasks=self.tasks,
            tokenizer=self.tokenizer,
            cache_dir=self.cache_dir,
            seed=int(cfg.seed),
            max_length=int(cfg.data.max_length),
            batch_size=int(cfg.data.batch_size),
            eval_batch_size=int(cfg.data.eval_batch_size),
            num_workers=int(cfg.data.get("num_workers", 0)),
            append_eos=bool(cfg.data.get("append_eos", False)),
            corpus=OmegaConf.to_container(cfg.data.corpus, resolve=True),
        )
        self.data.setup()
        self.module = ContinualLitModule(
            self.backbone,
            {t: specs[t].num_classes for t in self.tasks},
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            strategy=build_strategy(cfg.get("strategy")),
            head_lr=cfg.get("head_lr"),
        )
        self.module.task_data = self.data
        self.trainable_params += sum(p.numel() for p in self.module.heads.parameters())
        self.callbacks: list[Callback] = [
            instantiate(c) for c in (cfg.callbacks or {}).values() if c
        ]
        self.forgetting = self._one(ForgettingMatrixCallback)
        self.perplexity = self._one(PerplexityCallback)
        self.forgetting.reset(self.tasks)
        self.perplexity.reset(len(self.tasks))
        self.loggers: list[GuardedLogger] = build_loggers(cfg.get("logger"))
        for logger in self.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        self.initial_done = False
        self.completed = 0

    def _one(self, kind: type) -> Any:
        found = [c for c in self.callbacks if isinstance(c, kind)]
        if len(found) != 1:
            raise ValueError(
                f"callbacks must contain exactly one {kind.__name__}; found {len(found)}"
            )
        return found[0]

    # ------------------------------------------------------------------ trainers
    def _trainer(self, task_index: int | None) -> L.Trainer:
        callbacks = list(self.callbacks)
        every = int(self.cfg.checkpoint.every_n_train_steps or 0)
        if task_index is not None and every > 0:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=step_checkpoint_dir(self.run_dir, task_index),
                    every_n_train_steps=every,
                    save_top_k=0,
                    save_last=True,
                    enable_version_counter=False,
                )
            )
        return instantiate(
            self.cfg.trainer,
            callbacks=callbacks,
            logger=self.loggers or False,
            default_root_dir=str(self.run_dir),
            enable_checkpointing=task_index is not None and every > 0,
        )

    def _evaluate(self, point: int, trainer: L.Trainer | None = None) -> None:
        """Every task's head on its eval split + perplexity, filed under ``point``."""
        self.module.eval_point = point
        (trainer or self._trainer(None)).validate(
            self.module, dataloaders=self.data.val_dataloader(), verbose=False
        )

    # ------------------------------------------------------------------ state
    def _save_progress(self, status: str) -> None:
        atomic_write_json(
            self.run_dir / "progress.json",
            {
                "status": status,
                "initial_done": self.initial_done,
                "completed_tasks": self.completed,
                "tasks": self.tasks,
                "forgetting": self.forgetting.state_dict(),
                "perplexity": self.perplexity.state_dict(),
            },
        )

    def restore(self) -> None:
        """Continue from the run directory's progress file and last task checkpoint."""
        progress = read_progress(self.run_dir)
        if progress is None:
            return
        if progress["tasks"] != self.tasks:
            raise ValueError(
                f"resume: the run trained tasks {progress['tasks']}, config has {self.tasks}"
            )
        self.initial_done = bool(progress["initial_done"])
        self.completed = int(progress["completed_tasks"])
        self.forgetting.load_state_dict(progress["forgetting"])
        self.perplexity.load_state_dict(progress["perplexity"])
        if self.completed > 0:
            checkpoint = torch.load(
                task_checkpoint(self.run_dir, self.completed - 1),
                weights_only=True,
                map_location="cpu",
            )
            self.module.load_state_dict(checkpoint["state_dict"], strict=False)
            load_adapter_state_dict(self.backbone, checkpoint["adapter_state"])
            self.module.strategy.load_state_dict(checkpoint.get("strategy_state", {}))
        log.info(
            "resuming %s: initial evaluation %s, %d task(s) done",
            self.run_dir,
            self.initial_done,
            self.completed,
        )

    # ------------------------------------------------------------------ the loop
    def run(self) -> str:
        if not self.initial_done:
            self._evaluate(-1)
            self.initial_done = True
            self._save_progress("running")
        for index in range(self.completed, len(self.tasks)):
            task = self.tasks[index]
            start = time.perf_counter()
            self.data.set_task(task)
            self.module.set_task(task)
            trainer = self._trainer(index)
            self.module.train()  # Lightning keeps the mode it finds; loaders return eval mode
            last = step_checkpoint_dir(self.run_dir, index) / "last.ckpt"
            trainer.fit(
                self.module,
                train_dataloaders=self.data.train_dataloader(),
                ckpt_path=str(last) if last.exists() else None,
            )
            self._evaluate(index, trainer)
            self._log_adapter_diagnostics(index)
            trainer.save_checkpoint(task_checkpoint(self.run_dir, index), weights_only=True)
            self.completed = index + 1
            self._save_progress("running")
            row = ", ".join(
                f"{t}={a:.3f}"
                for t, a in zip(self.tasks, self.forgetting.matrix[index], strict=True)
                if a is not None
            )
            log.info(
                "task %d/%d %s | acc: %s | ppl %.3f | %.0fs",
                index + 1,
                len(self.tasks),
                task,
                row,
                self.perplexity.after_task[index],
                time.perf_counter() - start,
            )
        self._save_final_weights()
        return "completed"

    def _log_adapter_diagnostics(self, index: int) -> None:
        """‖ΔW‖_F/‖W‖_F (and ‖U‖_F, ‖A‖_F, ...) per adapted layer, after each task."""
        diagnostics = adapter_diagnostics(self.backbone)
        if diagnostics:
            for logger in self.loggers:
                logger.log_metrics({**diagnostics, "tasks_trained": index + 1}, step=index + 1)

    def _save_final_weights(self) -> None:
        """The trained adapter (safetensors + JSON config, ``load_adapter`` reads it) and heads."""
        if self.cfg.method.name == "full":
            log.info(
                "method=full: the whole backbone is in the last task checkpoint; no adapter file"
            )
        else:
            save_adapter(self.backbone, self.run_dir / "adapter")
        heads = {n: p.detach().contiguous() for n, p in self.module.heads.state_dict().items()}
        save_file(heads, str(self.run_dir / "heads.safetensors"))

    def report(self, status: str) -> dict[str, Any]:
        self._save_progress(status)
        results = write_run_report(self, status)
        for logger in self.loggers:
            logger.close()
        return results


RUN_CONFIG_FILE = "run_config.yaml"


def _config_for(cfg: DictConfig) -> DictConfig:
    """The config to run: the given one, or for ``resume=<dir>`` the one that run saved.

    A resumed run must be the same experiment, so its saved (resolved) config wins; only
    the output directory is pinned to the run directory being resumed.
    """
    if not cfg.get("resume"):
        return cfg
    run_dir = Path(str(cfg.resume))
    saved = OmegaConf.load(run_dir / RUN_CONFIG_FILE)
    saved.paths.output_dir = str(run_dir)
    saved.resume = str(run_dir)
    return saved


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment from a composed config; returns the results dict."""
    from curlora.config_checks import validate_config

    validate_config(cfg)
    cfg = _config_for(cfg)
    run_dir = Path(cfg.paths.output_dir)
    if not cfg.get("resume"):
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        OmegaConf.save(resolved, run_dir / RUN_CONFIG_FILE)
    loop = TaskLoop(cfg)
    if cfg.get("resume"):
        loop.restore()
    status = "failed"
    try:
        status = loop.run()
    except NonFiniteLossError as error:
        status = f"stopped: {error}"
        log.error("%s; the last good checkpoint is kept, results hold what is known", error)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as error:
        status = f"failed: {type(error).__name__}: {error}"
        raise
    finally:
        results = loop.report(status)
    return results
