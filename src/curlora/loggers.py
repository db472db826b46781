"""Experiment loggers from the ``logger`` config group, guarded so logging never kills a run.

``GuardedLogger`` wraps any Lightning logger: an exception in it (W&B directory not
writable, init failure, a dead sync process) becomes one warning, after which the logger
is switched off and training goes on. ``results.json`` never depends on a logger.

It also turns each task's Trainer steps into one count over the run (``step_offset``, set
by the task loop) and routes what the loop measures at an evaluation point: to the W&B
logger (``curlora.wandb_logger``) as rows against ``tasks_trained`` with tables and charts;
to any other logger as plain metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from curlora.reporting.adapter_stats import aggregate_diagnostics
from curlora.wandb_logger import WandbLogger

log = logging.getLogger(__name__)
# WandbLogger is re-exported: the configs of earlier runs name it here.
__all__ = ["GuardedLogger", "WandbLogger", "build_loggers", "logged_config"]


class GuardedLogger(Logger):
    """Delegates to ``inner``; the first failure disables it with a warning."""

    def __init__(self, inner: Logger, label: str) -> None:
        super().__init__()
        self.inner = inner
        self.label = label
        self.failed: str | None = None
        self.step_offset = 0
        """Optimizer steps of the tasks before the current one (Trainers count from 0)."""

    def _guard(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.failed is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # any logger failure degrades to a warning
            self.failed = f"{type(error).__name__}: {error}"
            log.warning(
                "logger '%s' failed during %s (%s); continuing without it",
                self.label,
                action,
                self.failed,
            )
            return None

    @property
    def name(self) -> str | None:
        return self.inner.name

    @property
    def version(self) -> int | str | None:
        return self._guard("version", lambda: self.inner.version)

    @property
    def save_dir(self) -> str | None:
        return self.inner.save_dir

    @property
    def experiment(self) -> Any:
        return self._guard("init", lambda: self.inner.experiment)

    @property
    def is_wandb(self) -> bool:
        """Whether the wrapped logger takes W&B objects (tables, charts, artifacts)."""
        return isinstance(self.inner, LightningWandbLogger) and self.failed is None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = None if step is None else step + self.step_offset
        self._guard("log_metrics", self.inner.log_metrics, dict(metrics), step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._guard("log_hyperparams", self.inner.log_hyperparams, params, *args, **kwargs)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Lightning's hook after a checkpoint is saved: W&B's ``log_model`` uploads it."""
        self._guard("after_save_checkpoint", self.inner.after_save_checkpoint, checkpoint_callback)

    @rank_zero_only
    def set_step_offset(self, offset: int) -> None:
        """Steps before the next Trainer's first; the W&B history step moves up to it."""
        self.step_offset = int(offset)
        if hasattr(self.inner, "advance_to"):
            self._guard("advance_to", self.inner.advance_to, self.step_offset)

    @rank_zero_only
    def log_evaluation(
        self, metrics: Mapping[str, float], tasks_trained: int, objects: Any = None
    ) -> None:
        """One evaluation point: ``metrics`` (numbers) and, for W&B, ``objects()`` (tables
        and charts, built only when a W&B logger takes them)."""
        if hasattr(self.inner, "log_at_point"):

            def write() -> None:
                row = {**metrics, **(objects() if objects is not None else {})}
                self.inner.log_at_point(row, tasks_trained)

            self._guard("log_evaluation", write)
        else:
            row = {**metrics, "tasks_trained": tasks_trained}
            self._guard("log_evaluation", self.inner.log_metrics, row, tasks_trained)

    @rank_zero_only
    def log_adapter_stats(self, diagnostics: Mapping[str, float], tasks_trained: int) -> None:
        """Adapter statistics after a task: aggregates (and a per-layer table for W&B)."""
        if hasattr(self.inner, "log_adapter_stats"):
            self._guard(
                "log_adapter_stats", self.inner.log_adapter_stats, diagnostics, tasks_trained
            )
        else:
            row = {**aggregate_diagnostics(diagnostics), "tasks_trained": tasks_trained}
            self._guard("log_adapter_stats", self.inner.log_metrics, row, tasks_trained)

    @rank_zero_only
    def log_run_artifact(self, run_dir: Any, status: str, results: Any = None) -> None:
        """The run's files as one W&B artifact (other loggers: nothing)."""
        if hasattr(self.inner, "log_run_artifact"):
            self._guard("log_run_artifact", self.inner.log_run_artifact, run_dir, status, results)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Final metrics into the W&B run summary (other loggers get them as metrics)."""

        def write() -> None:
            experiment = self.inner.experiment
            if hasattr(experiment, "summary"):
                experiment.summary.update(dict(summary))
            else:
                numeric = {k: v for k, v in summary.items() if isinstance(v, int | float)}
                self.inner.log_metrics(numeric)

        self._guard("log_summary", write)

    def log_objects(self, objects: Mapping[str, Any]) -> None:
        """W&B tables and images (ignored by loggers that have no ``log`` for them)."""

        def write() -> None:
            if hasattr(self.inner, "log_row"):
                self.inner.log_row(dict(objects))
            elif isinstance(self.inner, LightningWandbLogger):
                self.inner.experiment.log(dict(objects))

        self._guard("log_objects", write)

    @rank_zero_only
    def save(self) -> None:
        self._guard("save", self.inner.save)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._guard("finalize", self.inner.finalize, status)

    def close(self) -> None:
        """Finish the underlying run (W&B needs ``wandb.finish`` to flush offline files)."""

        def finish() -> None:
            experiment = self.inner.experiment
            if hasattr(experiment, "finish"):
                experiment.finish()

        self._guard("close", finish)


def logged_config(cfg: Any) -> dict[str, Any]:
    """The resolved config as the loggers receive it: each value the run used, once.

    ``method.lr`` is only the default of ``optimizer.lr`` (train.yaml), which holds the
    learning rate that trained (and names the run); with ``optimizer.lr`` overridden the two
    differ, and filtering runs by the unused one would pick the wrong runs. So it is left
    out; ``run_config.yaml`` keeps the config as composed."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    method = config.get("method")
    if isinstance(method, dict) and isinstance(config.get("optimizer"), dict):
        method.pop("lr", None)
    return config


def build_loggers(logger_cfg: Mapping[str, Any] | None) -> list[GuardedLogger]:
    """Instantiate every entry of the ``logger`` group; one that fails to build is skipped."""
    loggers = []
    for label, cfg in (logger_cfg or {}).items():
        if not cfg or "_target_" not in cfg:
            continue
        try:
            loggers.append(GuardedLogger(instantiate(cfg), label))
        except Exception as error:
            log.warning(
                "logger '%s' could not be created (%s); continuing without it", label, error
            )
    return loggers
