"""Score an in-memory causal LM on a retention suite with lm-evaluation-harness.

lm-eval's ``HFLM`` wraps the model object it is given (no reload, no copy on disk: the
adapter layers inside it are what it scores) and ``simple_evaluate`` runs the tasks. Offline
tasks are the package's YAMLs (``tasks/*.yaml``) with their data file filled in; standard
tasks are lm-eval's own, by name (their data comes from the Hugging Face Hub). lm-eval is an
optional dependency (``pip install -e ".[eval]"``) imported only here, when a suite runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from unittest import mock

import numpy as np
import torch
import yaml
from torch import nn

from curlora.data.sources.hub import missing_from_cache, offline_switch
from curlora.retention.data import BUILDERS, data_file
from curlora.retention.settings import standard_task_index

OFFLINE_PREFIX = "curlora_"  # lm-eval task names of the offline tasks: curlora_<task>
log = logging.getLogger("curlora")


@dataclass(frozen=True)
class TaskScore:
    """lm-eval's accuracy of one task on its first ``n`` rows: ``acc`` compares the choices'
    summed log-likelihoods, ``acc_norm`` the same divided by each choice's length in characters."""

    acc: float
    acc_norm: float
    n: int
    correct: str | None = None
    """Per row, in lm-eval's document order: ``"1"`` where ``acc`` picked the right choice
    (None: not recorded)."""


def offline_task_config(task: str, cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The package's lm-eval YAML of ``task`` with its generated data file filled in."""
    text = resources.files("curlora.retention").joinpath("tasks", f"{task}.yaml").read_text()
    config = yaml.safe_load(text)
    config["dataset_kwargs"]["data_files"]["test"] = str(data_file(task, cache_dir))
    return config


def offline_problem(standard: Sequence[str]) -> str | None:
    """Why lm-eval's ``standard`` tasks cannot load on this machine, known before a model
    loads: offline mode is set and the data of one of them is not cached. None when offline
    mode is not set, when every task's data is cached, or when this cannot tell (a name
    lm-eval does not know, which the settings check names; a group; a task whose data is not
    a Hub dataset): :func:`load_tasks` then decides, as it did without this check."""
    if not standard or importlib.util.find_spec("lm_eval") is None:
        return None
    switch = offline_switch()
    if switch is None:
        return None
    index = standard_task_index()
    uncached = []
    for name in standard:
        entry = index.get(name)
        if entry is None:
            return None
        path = (getattr(entry, "cfg", None) or {}).get("dataset_path")
        if isinstance(path, str) and path and missing_from_cache(path):
            uncached.append(name)
    if not uncached:
        return None
    return (
        f"retention=standard needs the Hugging Face Hub for {uncached} (their data is not "
        f"cached here), and offline mode is set ({switch}); use retention=offline"
    )


def load_tasks(
    offline: Sequence[str], standard: Sequence[str], cache_dir: str | os.PathLike[str] | None
) -> dict[str, Any]:
    """lm-eval ``Task`` objects by the names given: offline ones built from the package's YAMLs
    (their data files generated on first use), standard ones by lm-eval's registry.

    Raises KeyError naming an unknown offline task, and HubUnreachableError when a standard
    task's data cannot be fetched (no Hub access: use the offline suite).
    """
    from lm_eval.tasks import TaskManager

    from curlora.data.sources.hub import HubUnreachableError, is_offline_error

    unknown = [t for t in offline if t not in BUILDERS]
    if unknown:
        raise KeyError(unknown[0])
    # lm-eval's own task folder takes seconds to index; only standard tasks need it.
    manager = TaskManager(include_defaults=bool(standard))
    specs: list[str | dict[str, Any]] = [offline_task_config(t, cache_dir) for t in offline]
    try:
        loaded = manager.load([*specs, *standard])["tasks"]
    except Exception as error:
        if standard and is_offline_error(error):
            raise HubUnreachableError(
                f"retention=standard needs the Hugging Face Hub for {list(standard)}, which "
                f"is unreachable ({type(error).__name__}); use retention=offline"
            ) from error
        raise
    keys = {t: OFFLINE_PREFIX + t for t in offline} | {t: t for t in standard}
    missing = [t for t, key in keys.items() if key not in loaded]
    if missing:  # a group's name loads its member tasks, not one task of that name
        raise KeyError(missing[0])
    return {t: loaded[key] for t, key in keys.items()}


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    tasks: Mapping[str, Any],
    limit: int,
    batch_size: int,
) -> dict[str, TaskScore]:
    """Zero-shot ``acc``/``acc_norm`` of ``model`` on each task's first ``limit`` rows.

    ``model`` is a transformers causal LM (adapter layers injected into it are part of it) in
    evaluation mode; it is scored as it is in memory. ``tasks``: :func:`load_tasks`' output.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    # lm-eval's loggers announce every task and request: keep them to warnings. Its HF model
    # warns at every construction that an in-memory model ignores its loading arguments and
    # runs in one process: both are what is meant here.
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    # simple_evaluate seeds Python's, NumPy's and torch's global generators: a run's training
    # after an evaluation point must draw what it would draw without the suite.
    py_state, np_state = random.getstate(), np.random.get_state()
    # simple_evaluate also runs `git describe` in the working directory to record a commit
    # it never uses here; outside a git checkout git prints "fatal: not a git repository"
    # at every evaluation point. Its result is not read, so it is skipped.
    from lm_eval import evaluator

    skip_git = contextlib.nullcontext()
    if hasattr(evaluator, "get_git_commit_hash"):
        skip_git = mock.patch.object(evaluator, "get_git_commit_hash", lambda: None)
    with torch.random.fork_rng(), skip_git:
        try:
            out = simple_evaluate(
                model=lm,
                tasks=list(tasks.values()),
                limit=limit,
                bootstrap_iters=0,  # no bootstrap stderr: seconds per task at every point
                # per-row scores, for intervals that resample the suite's rows; the logged
                # documents of a few hundred rows are kept in memory for this call only
                log_samples=True,
                cache_requests=False,
            )
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
    if out is None:  # lm-eval returns None on non-zero ranks of its own distributed runs
        return {}
    results, sizes = out["results"], out.get("n-samples", {})
    scores = {}
    for name, task in tasks.items():
        key = task.config.task
        row = results[key]
        n = sizes.get(key, {}).get("effective", limit)
        scores[name] = TaskScore(
            acc=float(row.get("acc,none", math.nan)),
            acc_norm=float(row.get("acc_norm,none", math.nan)),
            n=int(n),
            correct=row_outcomes(out["samples"][key], int(n)),
        )
    return scores


def row_outcomes(samples: Sequence[Mapping[str, Any]], n: int) -> str | None:
    """lm-eval's logged samples of one task as one ``"1"``/``"0"`` per row, by document id:
    each row's ``acc`` (1.0 when its highest-log-likelihood choice is the right one). None
    (not recorded) when they are not one per scored row: the score itself still stands."""
    ordered = sorted(samples, key=lambda sample: int(sample["doc_id"]))
    if len(ordered) != n:
        log.warning(
            "retention: %d logged rows for %d scored; row outcomes not recorded", len(ordered), n
        )
        return None
    return "".join("1" if float(sample["acc"]) else "0" for sample in ordered)
