"""The ``retention`` config group, checked before anything loads.

``suite``: ``none`` (no suite), ``offline`` (the package's tasks over pinned archive files) or
``standard`` (lm-eval's own tasks by name; their data comes from the Hugging Face Hub).
``offline`` / ``standard``: the task names of each kind; ``limit``: rows scored per task (the
first ones of each task's fixed order); ``batch_size``: lm-eval requests per forward pass.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from curlora.retention.data import BUILDERS

SUITES = ("none", "offline", "standard")
KEYS = {"suite", "offline", "standard", "limit", "batch_size"}
INSTALL = 'pip install -e ".[eval]"'


@dataclass(frozen=True)
class RetentionSettings:
    suite: str
    offline: tuple[str, ...]
    standard: tuple[str, ...]
    limit: int
    batch_size: int

    @property
    def tasks(self) -> tuple[str, ...]:
        return (*self.offline, *self.standard)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"retention.{key}={value!r} is not valid; valid: an int >= 1")
    return value


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"retention.{key}={value!r} is not valid; valid: a list of task names")
    if len(set(value)) != len(value):
        raise ValueError(f"retention.{key}={list(value)!r} is not valid; valid: distinct names")
    return tuple(value)


@functools.cache
def standard_task_index() -> Mapping[str, Any]:
    """lm-eval's index of its own tasks, groups and tags by name (seconds to build: every
    task YAML it ships is read), built once per process: a run checks its config before
    Hydra starts the job and again in it, and the task loop checks its settings once more."""
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


def _check_standard_names(names: tuple[str, ...]) -> None:
    known = standard_task_index()
    for name in names:
        if name not in known:
            raise ValueError(
                f"retention.standard: {name!r} is not a task lm-eval knows; valid: names from "
                "`lm-eval ls tasks`, e.g. hellaswag, arc_easy, arc_challenge, winogrande, piqa"
            )


def check_retention(
    raw: Mapping[str, Any] | None, standard_names: bool = True
) -> RetentionSettings | None:
    """The settings, or None for ``suite: none``; raises ValueError naming key and value.
    ``standard_names=False`` leaves out the check of the standard tasks' names, which
    builds lm-eval's task index (seconds): the plain values are checked first, alone."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != KEYS:
        raise ValueError(
            f"retention={raw!r} is not valid; valid: retention=none|offline|standard "
            f"(keys {sorted(KEYS)})"
        )
    suite = raw["suite"]
    if suite not in SUITES:
        raise ValueError(f"retention.suite={suite!r} is not valid; valid: {list(SUITES)}")
    if suite == "none":
        return None
    offline, standard = _names("offline", raw["offline"]), _names("standard", raw["standard"])
    for name in offline:
        if name not in BUILDERS:
            raise ValueError(
                f"retention.offline: {name!r} is not an offline task; valid: {list(BUILDERS)}"
            )
        task_yaml = resources.files("curlora.retention").joinpath("tasks", f"{name}.yaml")
        if not task_yaml.is_file():
            raise ValueError(f"retention.offline: the task file {task_yaml} is missing")
    if not offline and not standard:
        raise ValueError(f"retention={suite} names no task; valid: retention.offline/standard")
    settings = RetentionSettings(
        suite,
        offline,
        standard,
        _positive_int("limit", raw["limit"]),
        _positive_int("batch_size", raw["batch_size"]),
    )
    if importlib.util.find_spec("lm_eval") is None:
        raise ValueError(f"retention={suite} needs lm-eval, which is not installed: {INSTALL}")
    if standard and standard_names:
        _check_standard_names(standard)
    return settings
