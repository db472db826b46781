"""The committed results of a reproduction grid: the small files of every finished job.

A grid runs in a working directory (``reproduce.dir``, under ``logs/``, ignored by git:
checkpoints, adapters, plots). What took hours to compute must outlive that machine, so
every *completed* job's small files are copied into the grid's results directory
(``reproduce.results_dir``, under ``docs/``, committed), at the same relative path:

    <results_dir>/runs/<part>/<job>/{run_config.yaml, progress.json, results.json, outcomes.json}

That directory is the grid's source of truth:

- the report (``REPORT.md``, figures) is built from it alone, so a fresh clone rebuilds the
  committed report byte for byte (``curlora-reproduce --report-only``);
- before a grid runs, every stored job missing from the working directory is copied back
  into it (:func:`restore`), where the run guard finds a completed run of the same
  experiment and skips it: a fresh clone continues the grid where it stopped.

A job is stored only when both ``progress.json`` and ``results.json`` say it completed, so
an interrupted or failed run is never committed as a result.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger("curlora")

RUNS = "runs"
# What a finished job needs to be skipped by the run guard and read by the report.
STORED_FILES = ("run_config.yaml", "progress.json", "results.json", "outcomes.json")


def _completed(job_dir: Path) -> bool:
    try:
        progress = json.loads((job_dir / "progress.json").read_text(encoding="utf-8"))
        results = json.loads((job_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(progress, dict)
        and isinstance(results, dict)
        and progress.get("status") == "completed"
        and results.get("status") == "completed"
        and all((job_dir / name).is_file() for name in STORED_FILES)
    )


def finished_jobs(root: Path) -> list[Path]:
    """Directories below ``root`` that hold a completed job (relative to ``root``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.parent.relative_to(root)
        for p in root.rglob("results.json")
        if _completed(p.parent) and "checkpoints" not in p.parts
    )


def publish(work_dir: Path, results_dir: Path) -> list[Path]:
    """Copy every completed job of ``work_dir`` that ``results_dir`` lacks (or holds
    differently) into ``results_dir/runs``; returns the jobs copied."""
    store = Path(results_dir) / RUNS
    copied = []
    for job in finished_jobs(work_dir):
        source, target = Path(work_dir) / job, store / job
        if all(
            (target / name).is_file()
            and (target / name).read_bytes() == (source / name).read_bytes()
            for name in STORED_FILES
        ):
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in STORED_FILES:
            _copy(source / name, target / name)
        copied.append(job)
    if copied:
        log.info("stored %d finished job(s) in %s", len(copied), store)
    return copied


def restore(results_dir: Path, work_dir: Path) -> list[Path]:
    """Copy every stored job that ``work_dir`` does not hold yet back into it, so the run
    guard skips it; returns the jobs restored. A job directory that already holds files
    (a run in progress, or another experiment) is left alone."""
    store = Path(results_dir) / RUNS
    restored = []
    for job in finished_jobs(store):
        target = Path(work_dir) / job
        if target.exists() and any(target.iterdir()):
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in STORED_FILES:
            _copy(store / job / name, target / name)
        restored.append(job)
    if restored:
        log.info("restored %d committed job(s) from %s", len(restored), store)
    return restored


def _copy(source: Path, target: Path) -> None:
    from curlora.atomic import atomic_write

    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
