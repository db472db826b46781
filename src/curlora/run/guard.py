"""One run directory, one experiment, one process.

Before anything loads, :func:`claim_run_directory` decides what a command may do with its
run directory:

- **new**: the directory holds no run. The config is saved (``run_config.yaml``) and the
  run starts from scratch.
- **continue**: the directory holds a run of *the same experiment* (the saved config
  equals this one, paths and loggers aside): it is continued from its checkpoints, or, if
  it completed, reported and left as it is. Re-running a command, or a sweep with a fixed
  ``hydra.sweep.dir``, therefore resumes what was interrupted and skips what finished,
  and can never mix two experiments.
- **resume** (``resume=<dir>``): the saved config is the experiment. Command-line
  overrides that would change it are refused (exit 2) and name what they would change.
  The directory may come from someone else, so it is data: a symbolic link in it, or a
  saved ``model.trust_remote_code: true`` (unless ``CURLORA_TRUST_REMOTE_CODE=1`` is set
  by whoever runs the command) is refused before anything reads it, and so is a data or
  model source naming a file or folder of this machine (unless
  ``CURLORA_TRUST_RECEIVED_PATHS=1``: :mod:`curlora.run.received`); the keys of
  :data:`NOT_EXPERIMENT` (where files go, how the run is logged, what is cached) come from
  this command, never from the saved file, and so do :data:`COMMAND_LEAVES`
  (``model.hf_cache_dir``).
- Anything else is refused with one line: a directory that holds a *different* run, or
  run files without a saved config.

:class:`RunLock` holds an exclusive ``fcntl`` lock on ``<run dir>/.lock`` for the whole
run, so two processes never write one directory; the operating system releases it when
the process dies, whatever killed it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from curlora.checks.config import ConfigError
from curlora.checks.targets import UntrustedTarget, check_targets
from curlora.run.received import MAX_CONFIG_BYTES, refuse_local_paths, screen_saved_yaml

RUN_CONFIG_FILE = "run_config.yaml"
LOCK_FILE = ".lock"
# Config keys that do not change what a run computes: where files go, how it is logged,
# whether a bit-identical cached evaluation is reused. They are settings of the machine and
# the person running the command, so a resume takes them from its command, never the file.
NOT_EXPERIMENT = ("paths", "resume", "logger", "reuse_initial_evaluation")
# The opt-in to a resumed config's model.trust_remote_code: true (it runs the model
# repository's code); set by whoever runs the command, never by a file.
REMOTE_CODE_VARIABLE = "CURLORA_TRUST_REMOTE_CODE"
# Single settings that change memory, speed or display, not the experiment: where a job
# runs (a CPU or a GPU gives the same numbers up to float rounding, like the thread count,
# which is not part of a config either) and whether a progress bar is drawn. So a grid, or
# a resumed run, can continue on another kind of machine (results.json keeps the setting).
NOT_EXPERIMENT_LEAVES = (
    "model.gradient_checkpointing",
    "trainer.accelerator",
    "trainer.enable_progress_bar",
)
# Single settings that say where files go, not what a run computes: like NOT_EXPERIMENT, a
# resume takes them from its command, never from the file (a received run must not choose
# where the receiver's Hugging Face downloads go). The experiment view holds them as null
# rather than leaving them out, so the view of a run saved with the default (null) keeps
# the fingerprint it was saved with.
COMMAND_LEAVES = ("model.hf_cache_dir",)
# Settings that are only defaults of another key, which stays in the view: method.lr feeds
# optimizer.lr, the rate a run trains with. A run that set optimizer.lr (a grid job) is the
# same experiment after its method's default rate is re-tuned. (A resume that overrides
# method.lr still changes optimizer.lr, and is refused for that.)
DEFAULTS_ONLY = ("method.lr",)
# Files a run leaves; any of them without run_config.yaml means "something is here".
RUN_FILES = ("progress.json", "results.json", "checkpoints")
# Sections every saved config has; one that lacks any is damaged (truncated, hand-edited).
SAVED_SECTIONS = ("method", "model", "data", "trainer", "optimizer", "paths", "callbacks")
# Files Hydra itself writes into a run directory before the run starts.
HYDRA_FILES = (".hydra", ".lock")


@dataclass(frozen=True)
class RunPlan:
    """What the command will do: ``mode`` is new | continue | resume."""

    mode: str
    cfg: DictConfig
    run_dir: Path


def experiment_view(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The resolved config without the keys that do not change the numbers."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    view = {k: v for k, v in plain.items() if k not in NOT_EXPERIMENT}  # type: ignore[union-attr]
    for leaf in (*NOT_EXPERIMENT_LEAVES, *DEFAULTS_ONLY):
        group, key = leaf.split(".")
        if isinstance(view.get(group), Mapping) and key in view[group]:
            view[group] = {k: v for k, v in view[group].items() if k != key}
    for leaf in COMMAND_LEAVES:
        group, key = leaf.split(".")
        if isinstance(view.get(group), Mapping) and key in view[group]:
            view[group] = {**view[group], key: None}
    return view


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


# Settings added after runs were saved, as (section, the current value that computes what
# a run saved without them computed): a saved run lacking the section is the same
# experiment when the current config holds exactly that value (the per-task classifier
# heads; no retention suite).
ADDED_SECTIONS = {
    "head": {"_target_": "curlora.models.heads.linear.LinearHeads", "name": "linear"},
    "retention": {"suite": "none", "offline": [], "standard": [], "limit": 0, "batch_size": 32},
}
# Per-task keys added with the words protocol: descriptions of a task (its class names,
# its prompt and answer words) that a run with the classifier heads never reads.
ADDED_TASK_KEYS = ("class_names", "template", "label_words")
# Single keys added to a shipped config after runs were saved, with the value that computes
# what those runs computed: the default trainer names Lightning's own defaults (one process
# on one machine) so that a change of them is checked by name.
ADDED_LEAVES: dict[str, Any] = {"trainer.strategy": "auto", "trainer.num_nodes": 1}


def _added_since(saved: Mapping[str, Any], current: Mapping[str, Any], key: str) -> bool:
    """Whether dotted ``key``, absent from ``saved``, is a setting added since that run was
    saved and its current value computes what the saved run computed."""
    section = key.split(".")[0]
    if key in ADDED_LEAVES:
        return _flatten(current).get(key) == ADDED_LEAVES[key]
    if section in ADDED_SECTIONS and section not in saved:
        return current.get(section) == ADDED_SECTIONS[section]
    parts = key.split(".")
    if parts[:2] != ["data", "task_specs"] or len(parts) < 4:
        return False
    if parts[2] not in ((current.get("data") or {}).get("tasks") or []):
        return True  # a task added to the shipped data config that this run does not train
    head = current.get("head") or {}
    return parts[3] in ADDED_TASK_KEYS and head.get("name", "linear") == "linear"


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved → current`` for every leaf that differs (dotted keys, sorted); a key
    added since the run was saved, at the value that computes the same thing, is not a
    difference (``ADDED_SECTIONS``, ``ADDED_TASK_KEYS``, ``ADDED_LEAVES``)."""
    a, b = _flatten(saved), _flatten(current)
    missing = object()
    return [
        f"{key}: {a.get(key, '(absent)')!r} → {b.get(key, '(absent)')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
        and not (key not in a and _added_since(saved, current, key))
    ]


def holds_a_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (RUN_CONFIG_FILE, *RUN_FILES))


def load_saved_config(run_dir: Path) -> DictConfig:
    """The saved config of the run in ``run_dir``; ConfigError naming the file when it cannot
    be read, is not UTF-8 or YAML, is larger than 1 MiB or holds a YAML anchor or alias
    (``curlora.run.received.screen_saved_yaml``: checked before YAML builds anything), or
    lacks a section (a truncated write of an old version, a file edited by hand), or names a
    ``_target_`` outside the allowlist (``curlora.checks.targets``), before anything in it
    is resolved or built."""
    path = run_dir / RUN_CONFIG_FILE
    try:
        with path.open("rb") as handle:  # one byte past the cap is enough to refuse it
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        saved = OmegaConf.create(screen_saved_yaml(raw, path))
    except ConfigError:
        raise
    except Exception as error:  # OSError, UnicodeDecodeError, YAML's and OmegaConf's errors
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        raise ConfigError(f"{path} cannot be read ({detail})") from None
    if not isinstance(saved, DictConfig) or "method" not in saved:
        raise ConfigError(f"{path} is not a run config of this project")
    # Data, not code: its _target_s are checked before anything resolves or builds it.
    try:
        check_targets(OmegaConf.to_container(saved, resolve=False), str(path))
    except UntrustedTarget as error:
        raise ConfigError(str(error)) from None
    missing = [key for key in SAVED_SECTIONS if not isinstance(saved.get(key), DictConfig)]
    if missing or OmegaConf.select(saved, "tasks") is None:
        raise ConfigError(
            f"{path} is damaged: it has no {', '.join(missing) or 'tasks'} (truncated?); "
            "the run cannot be continued from it: start a new run in a new directory"
        )
    return saved


def override_key(override: str) -> str:
    """``rank`` from ``rank=8``, ``+foo.bar=1``, ``~key``; the group name for ``method=lora``."""
    body = override.lstrip("+~")
    return body.split("=", 1)[0].split("@", 1)[0]


def check_resume_overrides(
    saved: DictConfig, given: DictConfig, overrides: Iterable[str]
) -> list[str]:
    """Overrides a resume ignores (returned, to warn about: the ``NOT_EXPERIMENT_LEAVES``,
    which the saved config keeps). Raises ConfigError naming the overrides that would
    change the experiment."""
    changing, ignored = [], []
    for override in overrides:
        key = override_key(override)
        if key in ("resume", "hydra") or key.startswith("hydra."):
            continue
        old = OmegaConf.select(saved, key, default=None)
        new = OmegaConf.select(given, key, default=None)
        as_plain = [
            OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
            for v in (old, new)
        ]
        if key.split(".", 1)[0] in NOT_EXPERIMENT or key in COMMAND_LEAVES:
            continue  # taken from this command (resumed_config), nothing to compare
        if key in NOT_EXPERIMENT_LEAVES:
            ignored.append(override)
        elif as_plain[0] != as_plain[1]:
            changing.append(f"{override} (the run has {key}={_short(as_plain[0])})")
    if changing:
        raise ConfigError(
            f"resume: overrides would change the experiment being resumed: "
            f"{'; '.join(changing)}. A resumed run keeps its saved config; start a new run "
            "for a different experiment"
        )
    return ignored


def _short(value: Any) -> str:
    text = repr(value.get("name", value)) if isinstance(value, Mapping) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plan_run(cfg: DictConfig, overrides: Sequence[str] | None = None) -> tuple[RunPlan, list[str]]:
    """Decide new / continue / resume for ``cfg`` (see the module docstring).

    Returns the plan and warnings (overrides a resume ignores). Raises ConfigError for a
    directory that cannot be used. Reads only small files; nothing heavy loads.
    """
    if cfg.get("resume"):
        return plan_resume(cfg, overrides or [])
    run_dir = Path(str(cfg.paths.output_dir)).absolute()
    if (run_dir / RUN_CONFIG_FILE).exists():
        from curlora.run.dirs import resume_link_problem

        # Continued in place, the run is read and written as on resume=: no links in it.
        linked = resume_link_problem(run_dir, "paths.output_dir")
        if linked is not None:
            raise ConfigError(linked)
        saved = load_saved_config(run_dir)
        differences = config_differences(experiment_view(saved), experiment_view(cfg))
        if differences:
            shown = "; ".join(differences[:4]) + (" ..." if len(differences) > 4 else "")
            raise ConfigError(
                f"paths.output_dir={run_dir} already holds a different run ({shown}); "
                "choose a new directory, or continue that run with "
                f"resume={run_dir}"
            )
        return RunPlan("continue", cfg, run_dir), []
    if holds_a_run(run_dir):
        raise ConfigError(
            f"paths.output_dir={run_dir} holds run files but no {RUN_CONFIG_FILE}; it is not "
            "a run this version can continue: choose a new directory"
        )
    return RunPlan("new", cfg, run_dir), []


def plan_resume(cfg: DictConfig, overrides: Sequence[str]) -> tuple[RunPlan, list[str]]:
    """The plan of ``resume=<dir>``: the saved experiment with this command's settings.

    The directory may have come from someone else, so each check comes before what it
    guards: its links before any file in it is read, the saved config's ``_target_``s and
    ``model.trust_remote_code`` before anything is resolved, built or reads the model."""
    run_dir = Path(str(cfg.resume)).absolute()
    if not (run_dir / RUN_CONFIG_FILE).is_file():
        raise ConfigError(
            f"resume={cfg.resume!r} is invalid; expected a run directory of this project "
            f"(one with {RUN_CONFIG_FILE})"
        )
    saved = load_received_config(run_dir)
    ignored = check_resume_overrides(saved, cfg, overrides)
    warnings = []
    if ignored:
        warnings.append(
            f"resume: ignoring {', '.join(ignored)} (the saved config of {run_dir} wins)"
        )
    logged = _logger_names(saved), _logger_names(cfg)
    if logged[0] != logged[1]:  # a run of one's own resumed without its logger=...
        warnings.append(
            f"resume: logging with this command's logger ({logged[1]}), not the saved run's "
            f"({logged[0]}); add logger=... to choose"
        )
    return RunPlan("resume", resumed_config(saved, cfg, run_dir), run_dir), warnings


def load_received_config(run_dir: Path) -> DictConfig:
    """The saved config of a run directory that may have come from someone else, after the
    checks that come before anything in it is read or built: no symbolic link in the
    directory, only allowlisted ``_target_``s and no interpolation (:func:`load_saved_config`),
    no ``model.trust_remote_code`` and no file or folder of this machine in a data or model
    source (:mod:`curlora.run.received`) without the receiver's opt-ins. Each of
    :data:`COMMAND_LEAVES` is null (Hugging Face's own default): where the receiver's
    downloads go is the receiver's to say, so the sender's value is never used (a resume
    sets the command's). What ``resume=`` and the README's recipe for reloading an adapter
    read."""
    from curlora.run.dirs import resume_link_problem

    run_dir = Path(run_dir)
    linked = resume_link_problem(run_dir)
    if linked is not None:
        raise ConfigError(linked)
    saved = load_saved_config(run_dir)
    refuse_remote_code(saved, run_dir / RUN_CONFIG_FILE)
    # NOT_EXPERIMENT (paths, loggers) is replaced by the command's on resume; the reload
    # recipe reads none of it.
    refuse_local_paths(saved, run_dir / RUN_CONFIG_FILE, skip=NOT_EXPERIMENT)
    for leaf in COMMAND_LEAVES:
        group, key = leaf.split(".")
        if isinstance(saved.get(group), DictConfig) and key in saved[group]:
            saved[group][key] = None
    return saved


def refuse_remote_code(saved: DictConfig, path: Path) -> None:
    """ConfigError naming the key and ``path`` when the saved config sets
    ``model.trust_remote_code`` (loading the model, or only its config, would import the
    ``.py`` files its folder or repository names), unless ``CURLORA_TRUST_REMOTE_CODE=1``."""
    value = OmegaConf.select(saved, "model.trust_remote_code", default=None)
    if value is None or value is False or os.environ.get(REMOTE_CODE_VARIABLE) == "1":
        return
    raise ConfigError(
        f"model.trust_remote_code={value!r} in {path} is refused: it would run the model "
        f"repository's code; if you trust that code, resume with {REMOTE_CODE_VARIABLE}=1"
    )


def resumed_config(saved: DictConfig, cfg: DictConfig, run_dir: Path) -> DictConfig:
    """``saved`` with each :data:`NOT_EXPERIMENT` key taken from the command's composed
    ``cfg`` (its defaults and overrides; absent there, absent here), each
    :data:`COMMAND_LEAVES` setting the saved config has taken from it too (null when the
    command has none: Hugging Face's own default), and the run writing into
    ``run_dir``. The keys are copied unresolved, so ``${paths.output_dir}`` in a logger's
    ``save_dir`` and the run-name resolvers resolve against the resumed run: its directory
    and its saved method, seed and tasks."""
    command = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(command, dict)
    for key in NOT_EXPERIMENT:
        if key in command:
            saved[key] = command[key]
        elif key in saved:
            del saved[key]
    for leaf in COMMAND_LEAVES:
        group, key = leaf.split(".")
        if isinstance(saved.get(group), DictConfig) and key in saved[group]:
            saved[group][key] = OmegaConf.select(cfg, leaf, default=None)
    saved.paths.output_dir = str(run_dir)
    saved.resume = str(run_dir)
    return saved


def _logger_names(cfg: DictConfig) -> str:
    logger = cfg.get("logger")
    names = sorted(str(k) for k in logger) if isinstance(logger, DictConfig) else []
    return ", ".join(names) or "none"


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    from curlora.run.atomic import atomic_write_text

    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    atomic_write_text(run_dir / RUN_CONFIG_FILE, OmegaConf.to_yaml(resolved))


def forget_refused_run(run_dir: Path) -> None:
    """Remove the saved config of a new run refused before it trained (bad data, a model
    that cannot be fetched), so the corrected command in the same fixed directory is a new
    run, not "a different run" that directory already holds."""
    with contextlib.suppress(OSError):
        (Path(run_dir) / RUN_CONFIG_FILE).unlink(missing_ok=True)


class RunLock:
    """Exclusive lock on ``<run dir>/.lock`` (context manager); ConfigError if held."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        from curlora.run.file_lock import LockHeld, acquire

        try:
            self._fd = acquire(self.path, str(os.getpid()))
        except LockHeld as held:
            raise ConfigError(
                f"paths.output_dir={self.path.parent} is in use by another running process "
                f"(pid {held.holder or '?'}); two runs never share a directory"
            ) from None
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise ConfigError(
                f"{self.path} is a symbolic link: a run never locks through one (it would "
                "overwrite the file it points to); remove it"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        from curlora.run.file_lock import release

        if self._fd is not None:
            release(self._fd)
            self._fd = None


def remove_if_unused(run_dir: Path, overrides: Sequence[str] | None = None) -> bool:
    """Delete ``run_dir`` after a run was refused before it started, only if it is this
    process's own: created by it (``curlora.run.dirs.CREATED_HERE``), holding nothing but
    Hydra's files, recording this command's ``overrides`` (Hydra's ``overrides.yaml``: a
    second process started in the same new directory rewrites it), used by no other process
    (``curlora.run.dirs.USERS_LOCK``) and not locked by a run. Returns whether it was
    removed; anything in doubt is left where it is."""
    import fcntl
    import shutil

    from curlora.run.dirs import CREATED_HERE, CREATED_PARENTS, USERS_LOCK, USING
    from curlora.run.file_lock import LockHeld, acquire, open_lock_file, release

    run_dir = Path(run_dir)
    if str(run_dir.absolute()) not in CREATED_HERE or not run_dir.is_dir():
        return False
    for entry in run_dir.iterdir():
        if entry.name not in HYDRA_FILES and entry.suffix != ".log":
            return False
    recorded = run_dir / ".hydra" / "overrides.yaml"
    if overrides is not None and recorded.is_file():
        try:
            typed = OmegaConf.to_container(OmegaConf.load(recorded), resolve=False)
            if [str(o) for o in typed] != list(overrides):  # type: ignore[union-attr]
                return False
        except Exception:  # unreadable: another process may be writing it
            return False
    own = USING.pop(str(run_dir.absolute()), None)
    if own is not None:
        os.close(own)  # this process's shared lock: only the others' may remain
    try:
        users = open_lock_file(run_dir / USERS_LOCK)  # never through a symbolic link
    except OSError:
        return False
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fd = acquire(run_dir / LOCK_FILE, f"{os.getpid()} removing a refused run")
    except (LockHeld, OSError):  # another process started in it, or a run holds it
        os.close(users)
        return False
    try:
        shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        release(fd)
        os.close(users)
    CREATED_HERE.discard(str(run_dir.absolute()))
    for parent in CREATED_PARENTS.pop(str(run_dir.absolute()), []):
        try:
            parent.rmdir()  # only an empty one: another run may have started inside it
        except OSError:
            break
    return True
