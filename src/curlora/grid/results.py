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
    """Whether ``job_dir`` holds a completed job; a damaged ``progress.json`` or
    ``results.json`` (not UTF-8, not JSON, not an object) is named in a warning and the job
    is not taken as finished (a missing one is a job not finished yet)."""
    records = []
    for name in ("progress.json", "results.json"):
        path = job_dir / name
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as error:
            _damaged(path, f"{type(error).__name__}: {error}")
            return False
        if not isinstance(record, dict):
            _damaged(path, f"a JSON {type(record).__name__}, not an object")
            return False
        records.append(record)
    return all(r.get("status") == "completed" for r in records) and all(
        (job_dir / name).is_file() for name in STORED_FILES
    )


def _damaged(path: Path, why: str) -> None:
    log.warning("grid results: %s is damaged (%s); its job is not taken as finished", path, why)


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
        files = _job_files(source)
        if files is None:
            continue
        stored = {name: _stored_bytes(target / name) for name in STORED_FILES}
        if stored == files:
            continue
        for name, data in files.items():
            if stored[name] is not None and stored[name] != data:
                log.warning(
                    "grid results: replacing %s, which differs from the finished job's %s",
                    target / name,
                    source / name,
                )
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            _write(target / name, data)
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


def _job_files(job_dir: Path) -> dict[str, bytes] | None:
    """The bytes of a finished job's stored files, each JSON file checked to be an object,
    so what is stored is what was checked; None (the file named in a warning) when one
    cannot be read or is damaged."""
    files = {}
    for name in STORED_FILES:
        path = job_dir / name
        try:
            data = path.read_bytes()
            if name.endswith(".json") and not isinstance(json.loads(data), dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            log.warning(
                "grid results: not storing %s: %s is damaged (%s: %s)",
                job_dir,
                path,
                type(error).__name__,
                error,
            )
            return None
        files[name] = data
    return files


def _stored_bytes(path: Path) -> bytes | None:
    """What the store holds at ``path`` (None: nothing, or nothing readable)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write(target: Path, data: bytes) -> None:
    from curlora.run.atomic import atomic_write

    atomic_write(target, lambda tmp: tmp.write_bytes(data))


def _copy(source: Path, target: Path) -> None:
    from curlora.run.atomic import atomic_write

    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
