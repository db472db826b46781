"""Experiment loggers from the ``logger`` config group, guarded so logging never kills a run.

``GuardedLogger`` wraps any Lightning logger: an exception in it (W&B directory not
writable, init failure, a dead sync process) becomes one warning, after which the logger
is switched off and training goes on. ``results.json`` never depends on a logger.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger``, quiet, and with the x-axis of a continual run.

    - Lightning always passes ``anonymous`` to ``wandb.init``, on which wandb ≥ 0.20 warns
      that the setting does nothing; it is left out when unset.
    - ``quiet`` (default true) keeps wandb's run history and summary off the console: the
      run ends with its own table, which names the offline run directory to sync.
    - :meth:`define_task_axis` makes ``tasks_trained`` the x-axis of ``eval/*``, ``lm/*`` and
      ``adapter/*``, so a run's (and a sweep group's) default workspace draws forgetting
      curves against tasks trained, not against ``trainer/global_step``, which restarts
      with every task's Trainer.
    """

    def __init__(self, *args: Any, quiet: bool = True, **kwargs: Any) -> None:
        if quiet and "settings" not in kwargs:
            import wandb

            kwargs["settings"] = wandb.Settings(quiet=True)
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    @rank_zero_only
    def define_task_axis(self) -> None:
        experiment = self.experiment
        experiment.define_metric("tasks_trained")
        for prefix in ("eval", "lm", "adapter"):
            experiment.define_metric(f"{prefix}/*", step_metric="tasks_trained")


class GuardedLogger(Logger):
    """Delegates to ``inner``; the first failure disables it with a warning."""

    def __init__(self, inner: Logger, label: str) -> None:
        super().__init__()
        self.inner = inner
        self.label = label
        self.failed: str | None = None

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

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._guard("log_metrics", self.inner.log_metrics, dict(metrics), step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._guard("log_hyperparams", self.inner.log_hyperparams, params, *args, **kwargs)

    def define_task_axis(self) -> None:
        """Per-task metrics against ``tasks_trained`` (W&B only; see ``WandbLogger``)."""
        if hasattr(self.inner, "define_task_axis"):
            self._guard("define_task_axis", self.inner.define_task_axis)

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
            experiment = self.inner.experiment
            if isinstance(self.inner, LightningWandbLogger):
                experiment.log(dict(objects))

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
