"""Crash-safe run state on disk: progress, task checkpoints, step checkpoints, RNG state.

Layout inside a run directory::

    run_config.yaml                   the resolved config (the experiment; see run/guard.py)
    progress.json                     the RunRecord so far (what is measured, warnings)
                                      and the sha256 of its fields
    checkpoints/task_<i>.ckpt         after task i trained and was evaluated: the module's
                                      training state, the RunRecord at that point, RNG state
    checkpoints/task_<i>_steps/last.ckpt   every N steps inside task i (Lightning format:
                                      optimizer, scheduler, loop and data position)

Every file goes through ``curlora.run.atomic`` (temp file beside it, fsync, rename), Lightning's
checkpoints included (:class:`AtomicCheckpointIO`). Readers never trust a file blindly: a
damaged one (truncated, empty, wrong shape) is reported by name with :class:`DamagedFile`,
and resume falls back to the previous good state. Every checkpoint has a ``.sha256`` beside
it (``curlora.run.checksum``), checked before it is read: a flipped bit is a damaged file,
never a resumed run with other numbers. Checkpoints are read with ``weights_only=True``
only (tensors and plain values): a pickle placed in a run directory never runs. A record,
in ``progress.json`` or a task checkpoint, whose scores disagree with their own
per-example outcomes, or a ``progress.json`` whose fields no longer match the sha256
stored in it, is damaged too: an edited number costs a fallback (in the end, the
evaluation done again), never a resumed run that reports it.

The record in ``progress.json`` and in every task checkpoint carries the run's fingerprint
(:func:`run_fingerprint`: a sha256 of the saved config's experiment view and one of the
base model the adapter sits on), and so does every step checkpoint (under
:data:`STEP_FINGERPRINT_KEY`, written by :class:`StampStepCheckpoints`). Resume
compares it with the one of the config and base it loads now (:func:`check_fingerprint`):
an edited ``run_config.yaml``, another base model, or a step checkpoint of another run is
refused by file name, never continued as a mix of two experiments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from curlora.run.atomic import atomic_write, atomic_write_text
from curlora.run.checksum import ChecksumMismatch, verify_checksum, write_checksum
from curlora.run.guard import RUN_CONFIG_FILE, experiment_view
from curlora.run.record import RunRecord

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
TASK_CHECKPOINT_FORMAT = "curlora-task-checkpoint/1"


class DamagedFile(ValueError):
    """A run file exists but cannot be used; the message names it and says why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path} is damaged ({reason})")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written atomically in the destination
    directory (Lightning's own writer stages them in ``$TMPDIR`` and then moves them,
    which is a non-atomic copy when that is another filesystem)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        atomic_write(Path(path), lambda tmp: torch.save(checkpoint, tmp))
        write_checksum(Path(path))

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Tensors and plain values only, whatever the caller asks: unpickling a file from
        a run directory could run any code its author put in it."""
        return super().load_checkpoint(path, map_location, weights_only=True)


# ---------------------------------------------------------------------------------- paths
def task_checkpoint(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"task_{index}.ckpt"


def step_checkpoint_dir(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"task_{index}_steps"


def step_checkpoint(run_dir: Path, index: int) -> Path:
    return step_checkpoint_dir(run_dir, index) / "last.ckpt"


# ---------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device when present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------- fingerprint
# What each part of a fingerprint identifies, as a refusal names it.
FINGERPRINT_PARTS = {
    "experiment": f"another experiment than {RUN_CONFIG_FILE} describes now (was it edited?)",
    "base": "another base model than the one loaded now (did the model's files change?)",
}


def json_sha256(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys; anything else as its str)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_fingerprint(cfg: DictConfig, base: Any = None) -> dict[str, str]:
    """``{"experiment": sha256 of the config's experiment view, "base": sha256 of the base
    model's fingerprint}`` (``base`` left out when None or empty: nothing to identify)."""
    fingerprint = {"experiment": json_sha256(experiment_view(cfg))}
    if base:
        fingerprint["base"] = json_sha256(base)
    return fingerprint


def check_fingerprint(
    path: Path, saved: Mapping[str, str] | None, current: Mapping[str, str]
) -> None:
    """Raise DamagedFile naming ``path`` when it was written for another experiment or base
    than ``current``. A file without a fingerprint (written before it was kept) or without
    one part of it passes: it cannot say, and refusing it would strand every older run."""
    for part, what in FINGERPRINT_PARTS.items():
        mine, now = (saved or {}).get(part), current.get(part)
        if mine is not None and now is not None and mine != now:
            raise DamagedFile(
                path,
                f"it belongs to {what}: fingerprint {mine[:12]}, now {now[:12]}; "
                "a different experiment needs a new run directory",
            )


# The keys of a Lightning (step) checkpoint that hold the run's fingerprint and the run's
# wall time up to the moment it was saved.
STEP_FINGERPRINT_KEY = "curlora_fingerprint"
STEP_ELAPSED_KEY = "curlora_elapsed_s"


class StampStepCheckpoints(Callback):
    """Writes the run's fingerprint and its wall time so far (``clock()``, seconds) into
    every Lightning checkpoint of a task's training (the periodic ``last.ckpt`` and the one
    saved on an interrupt), where :func:`check_step_checkpoint` reads them before a resume
    continues from the file.

    The wall time is there because ``progress.json`` is written only at evaluation points:
    a process killed mid-task (SIGKILL, a lost machine) leaves a step checkpoint whose
    training the resumed run keeps, so its time belongs to the run's recorded time too."""

    def __init__(self, fingerprint: Mapping[str, str], clock: Callable[[], float]) -> None:
        self.fingerprint = dict(fingerprint)
        self.clock = clock

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[STEP_FINGERPRINT_KEY] = dict(self.fingerprint)
        checkpoint[STEP_ELAPSED_KEY] = float(self.clock())


# ---------------------------------------------------------------------------------- progress
# The key of progress.json that holds the sha256 of everything else in it.
PROGRESS_SHA256_KEY = "sha256"


def write_progress(run_dir: Path, record: RunRecord) -> None:
    """``progress.json``: the record's fields and, under :data:`PROGRESS_SHA256_KEY`, their
    sha256 (:func:`json_sha256`), which :func:`read_progress` checks."""
    fields = record.to_dict()
    saved = {**fields, PROGRESS_SHA256_KEY: json_sha256(fields)}
    text = json.dumps(saved, indent=2, allow_nan=False) + "\n"
    atomic_write_text(Path(run_dir) / PROGRESS_FILE, text)


def read_progress(run_dir: Path) -> RunRecord | None:
    """The saved RunRecord; None when there is none. Raises DamagedFile.

    Damaged also means edited: fields that no longer match their sha256, or a score that
    disagrees with its confusion matrix or per-example outcomes
    (:meth:`RunRecord.inconsistency`). A file without the sha256 (written before it was
    kept) is read as before, its scores still checked against their outcomes."""
    path = Path(run_dir) / PROGRESS_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        record = RunRecord.from_dict(saved)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as error:
        # ArithmeticError: a number too large for a float (10**400), also damage.
        raise DamagedFile(path, f"{type(error).__name__}: {error}") from None
    except RecursionError:  # nesting too deep to parse: nothing a run writes
        raise DamagedFile(path, "nested too deeply to be a record") from None
    if PROGRESS_SHA256_KEY in saved:
        fields = {k: v for k, v in saved.items() if k != PROGRESS_SHA256_KEY}
        if saved[PROGRESS_SHA256_KEY] != json_sha256(fields):
            raise DamagedFile(path, "its fields do not match their sha256 (edited?)")
    problem = record.inconsistency()
    if problem:
        raise DamagedFile(path, problem)
    return record


# ---------------------------------------------------------------------------------- checkpoints
def save_task_checkpoint(
    run_dir: Path, index: int, training_state: dict[str, Any], record: RunRecord
) -> Path:
    """After task ``index``: what resumes the run from here (see the module docstring)."""
    payload = {
        "format": TASK_CHECKPOINT_FORMAT,
        "task_index": index,
        "training_state": training_state,
        "record": record.to_dict(),
        "rng_state": rng_state(),
    }
    path = atomic_write(task_checkpoint(run_dir, index), lambda tmp: torch.save(payload, tmp))
    write_checksum(path)
    return path


def _load_checked(path: Path) -> Any:
    """``torch.load`` of a checkpoint whose checksum matches; raises DamagedFile."""
    try:
        verify_checksum(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except ChecksumMismatch as error:
        raise DamagedFile(path, str(error)) from None
    except Exception as error:  # truncated, empty, not a torch file, unpickling refused
        raise DamagedFile(path, " ".join(f"{type(error).__name__}: {error}".split())) from None


def load_task_checkpoint(path: Path) -> dict[str, Any]:
    """A task checkpoint's contents; raises DamagedFile."""
    payload = _load_checked(path)
    if not isinstance(payload, dict) or payload.get("format") != TASK_CHECKPOINT_FORMAT:
        raise DamagedFile(path, "not a task checkpoint of this version")
    try:
        payload["record"] = RunRecord.from_dict(payload["record"])
    except (KeyError, TypeError, ValueError) as error:
        raise DamagedFile(path, f"its record is unreadable: {error}") from None
    # The checksum beside the file guards against damage, not against a record rewritten
    # with its checksum: its scores must still agree with their own outcomes.
    problem = payload["record"].inconsistency()
    if problem:
        raise DamagedFile(path, f"its record: {problem}")
    return payload


def latest_task_checkpoint(run_dir: Path, num_tasks: int) -> tuple[int, dict[str, Any]] | None:
    """The last readable task checkpoint as ``(index, contents)``; damaged ones are skipped
    (each named in a warning), so a run falls back to the previous good one."""
    for index in reversed(range(num_tasks)):
        path = task_checkpoint(run_dir, index)
        if not path.exists():
            continue
        try:
            return index, load_task_checkpoint(path)
        except DamagedFile as error:
            log.warning("resume: %s; falling back to the checkpoint before it", error)
    return None


def usable_step_checkpoint(run_dir: Path, index: int) -> Path | None:
    """``task_<index>_steps/last.ckpt`` if it exists and loads, said in the log with the
    step it holds (a resumed run's log then shows how much of the task was kept); a damaged
    one is named in a warning and the task restarts from its beginning instead."""
    path = step_checkpoint(run_dir, index)
    if not path.exists():
        return None
    try:
        payload = _load_checked(path)  # Lightning reads it again, also with weights_only=True
    except DamagedFile as damaged:
        # Tasks count from 1 in the log ("task 2/3"), so they do here too.
        log.warning("resume: %s; restarting task %d from its beginning", damaged, index + 1)
        return None
    step = payload.get("global_step") if isinstance(payload, dict) else None
    log.info(
        "resume: task %d continues from its step checkpoint (optimizer step %s of the task): %s",
        index + 1,
        step if isinstance(step, int) else "unknown",
        path,
    )
    return path


def check_step_checkpoint(run_dir: Path, index: int, current: Mapping[str, str]) -> float:
    """Raise DamagedFile when task ``index``'s step checkpoint was written for another
    experiment or base (its fingerprint, :data:`STEP_FINGERPRINT_KEY`, differs from
    ``current``). A missing or unreadable one passes here: training then starts the task
    from its beginning (:func:`usable_step_checkpoint` names a damaged one); one without a
    fingerprint (written before it was kept) passes too, like the other run files.

    Returns the run's wall time the checkpoint recorded (:data:`STEP_ELAPSED_KEY`,
    seconds); 0.0 when there is no usable checkpoint or it holds no finite, non-negative
    time (one written before the time was kept, or an edited one: the time is then
    counted from the record, as before)."""
    path = step_checkpoint(run_dir, index)
    if not path.exists():
        return 0.0
    try:
        payload = _load_checked(path)
    except DamagedFile:
        return 0.0
    if not isinstance(payload, dict):
        return 0.0
    saved = payload.get(STEP_FINGERPRINT_KEY)
    if saved is not None and not (
        isinstance(saved, dict) and all(isinstance(v, str) for v in saved.values())
    ):
        raise DamagedFile(path, f"its fingerprint is not digests by name: {saved!r:.80}")
    check_fingerprint(path, saved, current)
    elapsed = payload.get(STEP_ELAPSED_KEY)
    if isinstance(elapsed, float) and math.isfinite(elapsed) and elapsed >= 0:
        return elapsed
    return 0.0


# ---------------------------------------------------------------------------------- loggers
LOGGER_STATE_FILE = "logger_state.json"
"""What the experiment loggers need to continue a run as the same run: the W&B run id
(``wandb_run_id``) and the history step reached after each task (``steps_after_task``)."""


def read_logger_state(run_dir: Path) -> dict[str, Any]:
    """The saved logger state; {} when there is none or it cannot be read (named in a
    warning: losing it costs a new W&B run on resume, never the experiment)."""
    path = Path(run_dir) / LOGGER_STATE_FILE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("%s", DamagedFile(path, f"{type(error).__name__}: {error}"))
        return {}
    if not isinstance(state, dict):
        log.warning("%s", DamagedFile(path, f"a JSON {type(state).__name__}, not an object"))
        return {}
    return state


def update_logger_state(run_dir: Path, **changes: Any) -> None:
    """Merge ``changes`` into the saved logger state (atomic write)."""
    state = {**read_logger_state(run_dir), **changes}
    atomic_write_text(Path(run_dir) / LOGGER_STATE_FILE, json.dumps(state, indent=2) + "\n")
