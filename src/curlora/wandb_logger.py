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
  run, and ``wandb sync`` uploads its sessions as one. The id is saved when the run starts
  logging (the first use of :attr:`experiment`), never when the logger is built, together
  with the run directory's inode number (``wandb_run_home``). A saved id is reused only
  when it has W&B's form (8 lowercase letters and digits) and was saved for this very
  directory: a directory that was copied or received from someone else (another inode)
  logs to a new W&B run, so its file cannot choose a run of the receiver's to append to.
  Anything else (an id saved by an older version, without its directory, included) gets a
  new id and a warning naming the file; a new W&B run has logged nothing, so the file's
  counts (next point) are not used with it.
- **Adapter statistics** per evaluation point: a few aggregates over layers
  (``adapter/delta_rel_mean`` ...) and one table ``adapter/layers``; the per-layer keys
  (one panel each: ~180 for CURLoRA on SmolLM2) only with ``per_layer_adapter_keys``.
- **No step twice.** A run killed between two checkpoints and resumed repeats the steps
  after the last checkpoint; what earlier sessions logged (the highest training step and
  evaluation point) is kept in the run's state, and a resumed session does not log those
  again (W&B would show each twice, or drop them as "older than the current step").
  Rows wandb was handed but had not written when the process was killed are lost with
  it; they are not sent again. The saved step and point are a claim of the file, checked
  against what this session reaches itself (:class:`SavedProgress`): a session repeats
  at most the task it resumes, so rows at or below them are held back, dropped once the
  session's own training passes the saved step or its first task ends at or beyond both,
  and logged after a warning naming the file when that task ends short of them.
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
import os
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from curlora.reporting.adapter_stats import aggregate_diagnostics, layer_rows
from curlora.run.state import LOGGER_STATE_FILE, read_logger_state, update_logger_state

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


RUN_ID = re.compile(r"[a-z0-9]{8}")
"""The form of the run ids W&B generates, and of those this logger generates."""
HOME_KEY = "wandb_run_home"
"""The key of ``logger_state.json`` that ties the saved run id to its run directory."""


def new_run_id() -> str:
    """A fresh run id of W&B's own form: 8 lowercase letters and digits."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def directory_home(run_dir: Path) -> int | None:
    """The run directory's inode number (None when it cannot be read): what a copy of the
    directory, or one extracted from someone else's archive, does not share with it. Kept
    across a rename and a SLURM requeue, and the same on every node of a shared filesystem
    (unlike the device number, which a network mount gets per machine)."""
    try:
        return os.stat(run_dir).st_ino
    except OSError:
        return None


def persistent_run_id(run_dir: Path, state: Mapping[str, Any] | None = None) -> str | None:
    """The W&B run id saved for the run in ``run_dir`` (``state``: its logger state, read
    when not given), or None (with a warning naming the file when one was saved) when it
    does not have W&B's form or was saved for another directory: see the module docstring.
    Reads only; :meth:`WandbLogger.experiment` saves a new one."""
    state = read_logger_state(run_dir) if state is None else state
    saved = state.get("wandb_run_id")
    if saved is None:
        return None
    path = Path(run_dir) / LOGGER_STATE_FILE
    if not (isinstance(saved, str) and RUN_ID.fullmatch(saved)):
        log.warning(
            "%s: wandb_run_id=%.40r is not a W&B run id (8 lowercase letters and digits): "
            "logging to a new W&B run",
            path,
            saved,
        )
        return None
    home = state.get(HOME_KEY)
    if home is None or home != directory_home(run_dir):
        log.warning(
            "%s: W&B run %s was saved for %s, not for this directory (a copy, or a run "
            "directory received from someone else): logging to a new W&B run",
            path,
            saved,
            "a directory it did not record" if home is None else "another directory",
        )
        return None
    return saved


def saved_count(state: Mapping[str, Any], key: str, run_dir: Path) -> int:
    """``state[key]`` (the highest step or point logged), -1 when absent; one that is not
    an integer ≥ -1 is ignored with a warning naming the file."""
    value = state.get(key, -1)
    if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
        return value
    log.warning(
        "%s: %s=%.40r is not a step count: ignored", Path(run_dir) / LOGGER_STATE_FILE, key, value
    )
    return -1


class SavedProgress:
    """What earlier sessions of one W&B run logged (``wandb_logged_step``, the highest
    training step, and ``wandb_logged_point``, the highest evaluation point, from
    ``logger_state.json``), checked against what this session reaches itself before a row
    is dropped because of it.

    A session repeats at most the task it resumes: the steps after its last checkpoint
    and the evaluation point at its end. So a row at or below a saved count is held while
    the count is unconfirmed; the step is confirmed by a training row of this session
    above it, both by the first evaluation point after a task this session trained (point
    ≥ 1) when its step and point reach them. Confirmed, the held rows were logged before
    and are dropped; a count beyond that point is more than the run has done (an edited
    or received file): ignored with a warning naming ``source``, and the held rows are
    logged. Each method returns the rows to log now as ``(kind, step, row, value)``, in
    order; ``counts`` keeps the claims not ignored (-1: none)."""

    def __init__(self, step: int, point: int, source: Path | None) -> None:
        self.counts = {"step": step, "point": point}
        self.pending = {kind for kind, count in self.counts.items() if count >= 0}
        self.source = source
        self.held: list[tuple[str, int, dict[str, Any], int]] = []

    def training_row(self, step: int, row: dict[str, Any]) -> list[Any]:
        """The rows to log for a training row at ``step`` (see the class docstring)."""
        if step <= self.counts["step"]:
            if "step" in self.pending:
                self.held.append(("step", step, row, step))
            return []
        if "step" in self.pending:  # this session trained past it: the claim holds
            self.pending.discard("step")
            self.held = [entry for entry in self.held if entry[0] != "step"]
        return [("step", step, row, step)]

    def point_row(self, point: int, step: int, row: dict[str, Any]) -> list[Any]:
        """The rows to log for evaluation point ``point`` at ``step``."""
        rows = self._settle(point, step) if point >= 1 else []
        if point > self.counts["point"]:
            return [*rows, ("point", step, row, point)]
        if "point" in self.pending:
            self.held.append(("point", step, row, point))
        return rows

    def _settle(self, point: int, step: int) -> list[Any]:
        """At the end of the first task this session trained: the claims it does not reach
        are ignored (warned), and the rows held for them are returned to be logged."""
        reached = {"step": step, "point": point}
        wrong = {kind for kind in self.pending if self.counts[kind] > reached[kind]}
        for kind in sorted(wrong):
            log.warning(
                "%s: wandb_logged_%s=%d is beyond what this run has done (its first task "
                "here ended at step %d, evaluation point %d): ignored, every row is logged",
                self.source,
                kind,
                self.counts[kind],
                step,
                point,
            )
            self.counts[kind] = -1
        rows = [entry for entry in self.held if entry[0] in wrong]
        self.pending.clear()
        self.held = []
        return rows


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
        self._run_dir = Path(run_dir) if run_dir is not None else None
        # Read only: nothing is written until the run starts logging (the `experiment`).
        state = read_logger_state(self._run_dir) if self._run_dir is not None else {}
        continued = False
        self._unsaved_id: str | None = None
        if self._run_dir is not None and not (kwargs.get("id") or kwargs.get("version")):
            saved_id = persistent_run_id(self._run_dir, state)
            continued = saved_id is not None
            kwargs["id"] = saved_id or new_run_id()
            self._unsaved_id = None if continued else kwargs["id"]
            kwargs.setdefault("resume", "allow")
            if continued:
                log.info(
                    "W&B: continuing run %s (its id is kept in %s)", saved_id, LOGGER_STATE_FILE
                )
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self.per_layer_adapter_keys = per_layer_adapter_keys
        self.artifact_max_mb = artifact_max_mb
        self._axes: dict[str, str] = {}
        self._step = 0
        # What earlier sessions of this W&B run logged: not logged again (module
        # docstring). A new W&B run has logged nothing, whatever the file says.
        source = self._run_dir / LOGGER_STATE_FILE if self._run_dir is not None else None
        counts = {
            key: saved_count(state, key, self._run_dir) if continued else -1
            for key in ("wandb_logged_step", "wandb_logged_point")
        }
        self._saved = SavedProgress(
            counts["wandb_logged_step"], counts["wandb_logged_point"], source
        )
        self._sent = {"step": -1, "point": -1}
        """The highest step and point this session logged."""

    @property
    def experiment(self) -> Any:
        """Lightning's W&B run (started on first use); its id is saved in the run's state
        then, when it is a new one: the run has started logging in its directory."""
        run = super().experiment
        self._save_run_id(getattr(run, "id", None))
        return run

    @rank_zero_only
    def _save_run_id(self, started: Any) -> None:
        """Save the new run's id (``started``: the id W&B reports, which differs from the
        one asked for when a W&B run was already active in this process)."""
        if self._unsaved_id is None or self._run_dir is None:
            return
        run_id, self._unsaved_id = self._unsaved_id, None
        if isinstance(started, str) and RUN_ID.fullmatch(started):
            run_id = started
        home = directory_home(self._run_dir)
        try:
            if home is None:
                raise FileNotFoundError(f"{self._run_dir} does not exist")
            # A new W&B run has logged nothing: an older run's counts go with its id.
            update_logger_state(
                self._run_dir,
                wandb_run_id=run_id,
                **{HOME_KEY: home, "wandb_logged_step": -1, "wandb_logged_point": -1},
            )
        except Exception as error:  # unwritable run dir: log anyway; a resume starts a new run
            log.warning("could not save the W&B run id in %s (%s)", self._run_dir, error)

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
        """Training metrics from Lightning, at ``step`` (already offset by the task loop);
        a step an earlier session logged is not logged again (:class:`SavedProgress`)."""
        if step is not None:
            self.advance_to(step)
        # Lightning adds "epoch", which restarts with every task's Trainer: the global step
        # already says where training is, and one panel fewer.
        row = {k: v for k, v in metrics.items() if k != "epoch"}
        self._send(self._saved.training_row(self._step, row))

    @rank_zero_only
    def log_at_point(self, metrics: Mapping[str, Any], tasks_trained: int) -> None:
        """Metrics, tables and charts of one evaluation point (``tasks_trained`` tasks done),
        in the current history row; a point an earlier session logged is not logged again."""
        row = {**metrics, TASK_AXIS: tasks_trained}
        self._send(self._saved.point_row(tasks_trained, self._step, row))

    def _send(self, rows: list[Any]) -> None:
        """Log ``(kind, step, row, value)`` rows in order and remember the highest of each."""
        for kind, step, row, value in rows:
            self._log_at(row, step)
            self._remember(kind, value)

    def _remember(self, kind: str, value: int) -> None:
        """Save the highest step/point logged so far (one small atomic write when it grows
        past this session's and the saved claim still held)."""
        if value <= max(self._sent[kind], self._saved.counts[kind]):
            return
        self._sent[kind] = value
        if self._run_dir is None:
            return
        try:
            update_logger_state(self._run_dir, **{f"wandb_logged_{kind}": value})
        except Exception as error:  # unwritable run dir: a resume may repeat a few steps
            log.warning("could not save the W&B progress in %s (%s)", self._run_dir, error)

    @rank_zero_only
    def log_row(self, row: Mapping[str, Any]) -> None:
        """Anything (numbers, tables, images, charts) into the current history row, with
        the row's ``trainer/global_step``."""
        self._log_at(row, self._step)

    def _log_at(self, row: Mapping[str, Any], step: int) -> None:
        row = {**row, STEP_AXIS: step}
        self._define(row)
        self.experiment.log(row, step=step)

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
