"""The table a run ends with, and ``curlora-report`` for finished runs and sweeps.

    curlora-report <run dir>      the run's table (what ``python train.py`` prints at the end)
    curlora-report <sweep dir>    the sweep's table (one row per run; mean ± std over seeds)

A run's table: the accuracy matrix with each task's majority-class rate beside its name,
one row before training and one after each task (``*`` marks an accuracy at or below the
majority rate: a head that does no better than predicting one class), then BWT,
forgetting, average accuracy, the perplexity before and after, the status, the wall time,
the warnings and the paths of the files to open next. Under ``head=words`` the matrix is
``acc`` (rank classification over each task's words), its first row is the zero-shot model,
and the ``em`` matrix (whole-vocabulary exact match) and its BWT follow.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from curlora.reporting.regular_file import NotRegularFile, read_text
from curlora.reporting.results import ResultsError, decode_results, load_results
from curlora.reporting.untrusted import shown
from curlora.retention.table import retention_lines

log = logging.getLogger("curlora")


def _acc(value: float | None, majority: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    star = "*" if majority is not None and value <= majority + 1e-9 else " "
    return f"{value:.3f}{star}"


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def run_table(
    results: Mapping[str, Any], run_dir: Path | None = None, wall_time_s: float | None = None
) -> str:
    """The run's summary as plain text (see the module docstring)."""
    results = decode_results(dict(results))  # "inf"/"nan" markers back to floats
    # Every string below may come from a file someone else made: printed through shown().
    tasks: Sequence[str] = [shown(t) for t in results["tasks"]]
    majority = results["majority_baseline"]
    headers = [f"{t} ({_num(m)})" for t, m in zip(tasks, majority, strict=True)]
    label_width = max(len("before training"), *(len(f"after {t}") for t in tasks))
    widths = [max(len(h), 7) for h in headers]
    words = results.get("head")
    first = "zero-shot" if words else "before training"

    def matrix(initial: Sequence[Any], after: Sequence[Sequence[Any]]) -> list[str]:
        rows = [(first, initial), *zip((f"after {t}" for t in tasks), after, strict=True)]
        return [
            line(label, [_acc(v, m) for v, m in zip(row, majority, strict=True)])
            for label, row in rows
        ]

    def line(label: str, cells: Sequence[str]) -> str:
        body = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        return f"  {label.ljust(label_width)}  {body}"

    metrics, ppl = results["metrics"], results["perplexity"]
    final_ppl = next((v for v in reversed(ppl["after_task"]) if v is not None), None)
    kind = "acc: rank classification over each task's words" if words else "accuracy per task"
    out = [
        f"{kind} (column: task (majority-class rate); * = at or below it), "
        f"{shown(results['method'])}"
        + (f" r{results['rank']}" if results.get("rank") is not None else "")
        + f", seed {results['seed']}",
        line("", headers),
        *matrix(results["initial_accuracy"], results["accuracy_matrix"]),
        *retention_lines(results.get("retention"), [first, *(f"after {t}" for t in tasks)]),
        (
            f"  BWT {_num(metrics['bwt'], signed=True)}   forgetting "
            f"{_num(metrics['forgetting_max'])}   average accuracy {_num(metrics['avg_accuracy'])}"
            f"   perplexity {_num(ppl['initial'])} -> {_num(final_ppl)} "
            f"(x{_num(metrics['ppl_ratio_final'])}, {ppl['tokens']} tokens)"
        ),
        *(
            [
                "em: exact match, the whole vocabulary's argmax at the answer position",
                *matrix(words["initial_exact_match"], words["exact_match_matrix"]),
                f"  em BWT {_num(words['exact_match_bwt'], signed=True)}",
            ]
            if words
            else []
        ),
        f"  status {shown(results['status'])}   wall time {_duration(wall_time_s)}"
        f"   warnings {len(results['warnings'])}",
    ]
    for warning in results["warnings"][:5]:
        out.append(f"    - {shown(warning.get('detail') or warning['reason'])}")
    if len(results["warnings"]) > 5:
        out.append(f"    ... and {len(results['warnings']) - 5} more in results.json")
    if run_dir is not None:
        files = [run_dir / name for name in ("results.json", "forgetting.png", "curves.png")]
        # a received directory's name is data too
        out.append("  files: " + "  ".join(shown(p) for p in files if p.exists()))
        wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
        if len(wandb_runs) == 1:
            out.append(f"  W&B (offline): wandb sync {shown(wandb_runs[0])}")
        elif wandb_runs:  # a resumed run: one directory per session, uploaded as one run
            out.append(f"  W&B (offline): wandb sync {shown(run_dir / 'wandb')}/offline-run-*")
    return "\n".join(out)


def wall_time(run_dir: Path) -> float | None:
    """The run's wall time as recorded in progress.json (all sessions of it together); None
    when the file is missing or damaged (a wall time is a convenience, never worth a crash).
    A link or a FIFO in its place is damaged: never followed, never waited on."""
    path = Path(run_dir) / "progress.json"
    try:
        seconds = float(json.loads(read_text(path))["elapsed_s"])
    except FileNotFoundError:
        return None
    # ValueError: UnicodeDecodeError, bad JSON, an int past the digit limit; OverflowError:
    # an int past float's range (10**400); RecursionError: nesting too deep to parse
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError) as error:
        why = type(error).__name__
        if isinstance(error, NotRegularFile):  # the kind of entry, not just "an OSError"
            why = f"{why}: {error}"
        log.warning("%s is damaged (%s); its wall time is unknown", shown(path), why)
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def report(path: Path) -> str:
    """The table for a run directory or for every run below a sweep directory."""
    # lexists: a results.json that is a link, even a dangling one, makes this a run
    # directory, so load_results names it (exists() would follow the link).
    if os.path.lexists(path / "results.json"):
        return run_table(load_results(path / "results.json"), path, wall_time(path))
    from curlora.reporting.sweep import summarize_sweep

    summary = summarize_sweep(path, write=False)
    if not summary.rows:
        raise ResultsError(f"no results.json in or below {path}{_jobs_note(path)}")
    return summary.markdown


def _jobs_note(sweep_dir: Path) -> str:
    """``: 0 of 3 jobs completed (...)`` when ``sweep_dir`` holds jobs that ran and left no
    results.json (a sweep whose every job failed): Hydra gives each job a directory with its
    ``.hydra/overrides.yaml`` and the run its log (train.log). Empty when that is not what
    the directory shows: no job directory, or a job with a results.json (a damaged one)."""
    try:
        jobs = sorted(entry for entry in sweep_dir.iterdir() if _is_job_dir(entry))
        if not jobs or any(os.path.lexists(job / "results.json") for job in jobs):
            return ""
        log_file = next((p for p in sorted(jobs[0].glob("*.log")) if p.is_file()), None)
    except OSError:  # an unreadable entry: the message stays what it was
        return ""
    where = f"; each job's log says why, e.g. {log_file}" if log_file else ""
    return f": 0 of {len(jobs)} jobs completed{where}"


def _is_job_dir(entry: Path) -> bool:
    """A job directory of a Hydra sweep (never through a link: the files are received)."""
    try:
        return not entry.is_symlink() and (entry / ".hydra" / "overrides.yaml").is_file()
    except OSError:
        return False


def one_line(error: ResultsError) -> str:
    """The error's first line, with its first listed problem and how many more there are:
    a schema error lists one problem a line (``does not follow the results.json schema:``,
    then ``- ...``), and the terminal gets one line."""
    head, *rest = str(error).splitlines() or [""]
    problems = [line.removeprefix("- ") for line in rest if line.strip()]
    if not problems:
        return head
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{head} {problems[0]}{more}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="curlora-report", description="Print the table of a finished run or sweep."
    )
    parser.add_argument("path", type=Path, help="a run directory or a sweep directory")
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        print(f"error: {shown(args.path)} is not a directory", file=sys.stderr)
        return 2
    try:
        print(report(args.path))
    except ResultsError as error:
        print(f"error: {shown(one_line(error))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
