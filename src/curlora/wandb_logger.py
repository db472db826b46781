"""Lightning's ``WandbLogger`` made for a continual run: exact axes, one run per run
directory, a step that never goes back, adapter statistics without a panel per layer, and
the run's files as one artifact.

- **Axes.** Every key gets its own ``define_metric`` before it is first logged: ``eval/*``,
  ``lm/*``, ``adapter/*`` and ``retention/*`` keys against ``tasks_trained`` (0 = before
  training), every other key against ``trainer/global_step``. Exact names, never globs:
  Lightning declares the glob ``*`` itself, and W&B resolves a key matching two globs in no
  fixed order.
- **One history step.** The W&B step (``_step``, also logged as ``trainer/global_step``) is
  the number of optimizer steps over all tasks so far; each task's Trainer restarts its
  own count, so the task loop hands over an offset (:meth:`advance_to`). It never goes
  back, so a row is never dropped as "older than the current step", and a resumed run
  continues where the last session stopped instead of at 0.
- **Resume.** With ``run_dir`` set, the W&B run id is kept in the run's state
  (``logger_state.json``, ``curlora.run.state``) and the run is opened with
  ``resume="allow"``: a run continued after SIGTERM, or with ``resume=``, is the same W&B
  run, and ``wandb sync`` uploads its sessions as one.
- **Adapter statistics** per evaluation point: a few aggregates over layers
  (``adapter/delta_rel_mean`` ...) and one table ``adapter/layers``; the per-layer keys
  (one panel each: ~180 for CURLoRA on SmolLM2) only with ``per_layer_adapter_keys``.
- **No step twice.** A run killed between two checkpoints and resumed repeats the steps
  after the last checkpoint; what earlier sessions logged (the highest training step and
  evaluation point) is kept in the run's state, and a resumed session does not log those
  again (W&B would show each twice, or drop them as "older than the current step").
  Rows wandb was handed but had not written when the process was killed are lost with
  it; they are not sent again.
- **Artifact** (:meth:`log_run_artifact`): ``results.json``, the resolved config, the
  plots, the heads and the adapter as one versioned artifact named after the W&B run id
  (``run-outputs-<id>``: two runs of the same setting never share a collection, so the
  ``completed`` alias cannot move between them), with the method, rank, seed, status and
  final metrics in its metadata.
- ``log_model`` (Lightning's: step checkpoints as ``model`` artifacts) works offline too,
  through :class:`curlora.loggers.GuardedLogger`, which forwards Lightning's
  ``after_save_checkpoint``.
- Lightning always passes ``anonymous`` to ``wandb.init``, on which wandb ≥ 0.20 warns that
  the setting does nothing; it is left out when unset. ``quiet`` (default true) keeps
  wandb's run history and summary off the console: the run ends with its own table.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from curlora.reporting.adapter_stats import aggregate_diagnostics, layer_rows
from curlora.run.state import read_logger_state, update_logger_state

log = logging.getLogger(__name__)

TASK_AXIS = "tasks_trained"
STEP_AXIS = "trainer/global_step"
TASK_PREFIXES = ("eval/", "lm/", "adapter/", "retention/")
"""Keys measured at evaluation points, drawn against ``tasks_trained``."""
ARTIFACT_FILES = (
    "results.json",
    "run_config.yaml",
    "forgetting.png",
    "curves.png",
    "heads.safetensors",
)
ARTIFACT_TYPE = "run-outputs"


def axis_of(key: str) -> str:
    """The x-axis a history key is drawn against (see the module docstring)."""
    return TASK_AXIS if key.startswith(TASK_PREFIXES) else STEP_AXIS


def artifact_name(run_id: str | None) -> str:
    """The run-outputs artifact's name: ``run-outputs-<W&B run id>`` (letters, digits,
    ``-_.``; at most 128). The id, not the display name: runs of one setting share a name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id or "run").strip("-.") or "run"
    return f"{ARTIFACT_TYPE}-{name}"[:128]


def artifact_metadata(status: str, results: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a run-outputs artifact says about its run: method, rank, seed, status and the
    final metrics (``results.json``'s ``metrics``; ``final/<metric>`` like the summary)."""
    meta: dict[str, Any] = {"status": status}
    if results:
        meta.update({k: results.get(k) for k in ("method", "strategy", "rank", "seed")})
        metrics = results.get("metrics") or {}
        meta.update({f"final/{k}": v for k, v in metrics.items() if v is not None})
    return {k: v for k, v in meta.items() if v is not None}


def persistent_run_id(run_dir: Path) -> str:
    """The W&B run id of the run in ``run_dir``: the saved one, else a new one (saved)."""
    saved = read_logger_state(run_dir).get("wandb_run_id")
    if isinstance(saved, str) and saved:
        return saved
    # W&B's own form of run id: 8 lowercase letters and digits.
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    try:
        update_logger_state(run_dir, wandb_run_id=run_id)
    except Exception as error:  # unwritable run dir: log anyway; a resume starts a new run
        log.warning("could not save the W&B run id in %s (%s)", run_dir, error)
    return run_id


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class WandbLogger(LightningWandbLogger):
    """See the module docstring. ``run_dir``: the run directory whose state keeps the run
    id (null: a new W&B run each time); ``per_layer_adapter_keys``: also log
    ``adapter/<layer>/<stat>`` keys; ``artifact_max_mb``: the adapter and heads go into the
    run's artifact only below this size (full fine-tuning saves the whole model)."""

    def __init__(
        self,
        *args: Any,
        quiet: bool = True,
        run_dir: str | None = None,
        per_layer_adapter_keys: bool = False,
        artifact_max_mb: float = 200.0,
        **kwargs: Any,
    ) -> None:
        if quiet and "settings" not in kwargs:
            import wandb

            kwargs["settings"] = wandb.Settings(quiet=True)
        if kwargs.pop("offline", False):
            # wandb's own offline mode rather than Lightning's flag, which refuses
            # log_model (wandb keeps offline artifacts and `wandb sync` uploads them) and
            # sets WANDB_MODE for the whole process.
            kwargs.setdefault("mode", "offline")
        if run_dir is not None and not (kwargs.get("id") or kwargs.get("version")):
            kwargs["id"] = persistent_run_id(Path(run_dir))
            kwargs.setdefault("resume", "allow")
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self.per_layer_adapter_keys = per_layer_adapter_keys
        self.artifact_max_mb = artifact_max_mb
        self._axes: dict[str, str] = {}
        self._step = 0
        self._run_dir = Path(run_dir) if run_dir is not None else None
        # What earlier sessions of this run logged: not logged again (module docstring).
        saved = read_logger_state(self._run_dir) if self._run_dir is not None else {}
        self._done_step = _int_or(saved.get("wandb_logged_step"), -1)
        self._done_point = _int_or(saved.get("wandb_logged_point"), -1)
        self._logged = {
            "wandb_logged_step": self._done_step,
            "wandb_logged_point": self._done_point,
        }

    # ------------------------------------------------------------------ axes and steps
    def _define(self, keys: Mapping[str, Any]) -> None:
        """``define_metric`` for each key not yet defined (exact names; see the docstring)."""
        experiment = self.experiment
        if TASK_AXIS not in self._axes:
            experiment.define_metric(TASK_AXIS)
            experiment.define_metric(STEP_AXIS)
            self._axes[TASK_AXIS] = self._axes[STEP_AXIS] = ""
        for key in keys:
            # A custom chart (wandb.plot.*: a table and a Vega spec) lands in the history as
            # its table, "<key>_table".
            chart = hasattr(keys[key], "spec") and hasattr(keys[key], "table")
            names = [key, f"{key}_table"] if chart else [key]
            for name in names:
                if name not in self._axes:
                    self._axes[name] = axis_of(name)
                    experiment.define_metric(name, step_metric=self._axes[name])

    @rank_zero_only
    def advance_to(self, step: int) -> None:
        """Move the history step forward to ``step`` (never back)."""
        self._step = max(self._step, int(step))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Training metrics from Lightning, at ``step`` (already offset by the task loop)."""
        if step is not None:
            self.advance_to(step)
        if self._step <= self._done_step:
            return  # an earlier session logged this step (resumed after a kill)
        # Lightning adds "epoch", which restarts with every task's Trainer: the global step
        # already says where training is, and one panel fewer.
        self.log_row({k: v for k, v in metrics.items() if k != "epoch"})
        self._remember("wandb_logged_step", self._step)

    @rank_zero_only
    def log_at_point(self, metrics: Mapping[str, Any], tasks_trained: int) -> None:
        """Metrics, tables and charts of one evaluation point (``tasks_trained`` tasks done),
        in the current history row."""
        if tasks_trained <= self._done_point:
            return  # an earlier session logged this point (resumed after a kill)
        self.log_row({**metrics, TASK_AXIS: tasks_trained})
        self._remember("wandb_logged_point", tasks_trained)

    def _remember(self, key: str, value: int) -> None:
        """Save the highest step/point logged so far (one small atomic write when it grows)."""
        if self._run_dir is None or value <= self._logged[key]:
            return
        self._logged[key] = value
        try:
            update_logger_state(self._run_dir, **{key: value})
        except Exception as error:  # unwritable run dir: a resume may repeat a few steps
            log.warning("could not save the W&B progress in %s (%s)", self._run_dir, error)

    @rank_zero_only
    def log_row(self, row: Mapping[str, Any]) -> None:
        """Anything (numbers, tables, images, charts) into the current history row, with
        the row's ``trainer/global_step``."""
        row = {**row, STEP_AXIS: self._step}
        self._define(row)
        self.experiment.log(row, step=self._step)

    # ------------------------------------------------------------------ adapter statistics
    @rank_zero_only
    def log_adapter_stats(self, diagnostics: Mapping[str, float], tasks_trained: int) -> None:
        """Aggregates over layers and the per-layer table (see the module docstring)."""
        import wandb

        columns, rows = layer_rows(diagnostics)
        row: dict[str, Any] = dict(aggregate_diagnostics(diagnostics))
        row["adapter/layers"] = wandb.Table(
            columns=[TASK_AXIS, *columns], data=[[tasks_trained, *r] for r in rows]
        )
        if self.per_layer_adapter_keys:
            row.update(diagnostics)
        self.log_at_point(row, tasks_trained)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        # log_model: the checkpoint callbacks belong to one task's Trainer (weak proxies
        # that die with it); the next task's Trainer brings its own. (Lightning 2.6 keeps
        # a dict of them, 2.5 one.)
        getattr(self, "_checkpoint_callbacks", {}).clear()
        if hasattr(self, "_checkpoint_callback"):
            self._checkpoint_callback = None

    # ------------------------------------------------------------------ artifact
    @rank_zero_only
    def log_run_artifact(
        self, run_dir: Path, status: str, results: Mapping[str, Any] | None = None
    ) -> None:
        """The run's outputs as one versioned artifact of this run (aliases: ``latest``,
        and ``completed`` when it completed); ``results`` fills its metadata."""
        import wandb

        run_dir = Path(run_dir)
        experiment = self.experiment
        artifact = wandb.Artifact(
            artifact_name(experiment.id),
            type=ARTIFACT_TYPE,
            description=f"{experiment.name}: results.json, the resolved config, plots, heads "
            "and adapter",
            metadata=artifact_metadata(status, results),
        )
        for name in ARTIFACT_FILES:
            if (run_dir / name).is_file() and self._fits(run_dir / name):
                artifact.add_file(str(run_dir / name), name=name)
        adapter = run_dir / "adapter"
        if adapter.is_dir() and self._fits(adapter):
            artifact.add_dir(str(adapter), name="adapter")
        aliases = ["latest", "completed"] if status == "completed" else ["latest"]
        experiment.log_artifact(artifact, aliases=aliases)

    def _fits(self, path: Path) -> bool:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        size_mb = sum(p.stat().st_size for p in files) / 2**20
        if size_mb > self.artifact_max_mb:
            log.info(
                "%s (%.0f MB) left out of the W&B artifact (artifact_max_mb=%s)",
                path,
                size_mb,
                self.artifact_max_mb,
            )
            return False
        return True
