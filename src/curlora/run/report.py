"""End-of-run reporting from a RunRecord: results.json first, then plots, then loggers.

Order matters: ``results.json`` is written before anything that can fail for reasons
unrelated to the science (matplotlib, W&B), and each later step is guarded, so a plotting
or logging failure costs a warning, never the results. When ``results.json`` itself cannot
be written (read-only or full disk), the results are printed to the log instead and the
caller gets an :class:`~curlora.run.atomic.OutputError` naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from curlora.loggers import GuardedLogger
from curlora.metrics.degenerate import degenerate_warnings, perplexity_warnings
from curlora.reporting.plots import plot_curves, plot_forgetting
from curlora.reporting.results import build_results, write_results
from curlora.run.atomic import OutputError, atomic_write_text
from curlora.run.record import RunRecord

log = logging.getLogger("curlora")
RESULTS_FILE = "results.json"
OUTCOMES_FILE = "outcomes.json"


def outcomes(record: RunRecord) -> dict[str, Any]:
    """Per-example outcomes of every evaluation point (``outcomes.json``).

    ``{"tasks": [...], "points": ["initial", <task 1>, ...], "eval": {task: [s0, s1, ...]},
    "validation": {...}}`` and, under head=words, ``"eval_exact_match"`` (the same strings
    for the whole-vocabulary exact match), and with a retention suite, ``"retention"`` (its
    tasks' strings over the suite's rows, :func:`retention_strings`): ``s_k`` is a string
    of ``"1"``/``"0"``, one character per row of the task's split, at point k (before
    training, then after each task; None where not evaluated or not recorded). Intervals
    over test examples resample these rows.
    """
    points = [record.initial, *record.after_task]

    def strings(role: str, field: str = "correct") -> dict[str, list[str | None]]:
        out: dict[str, list[str | None]] = {}
        for task in record.tasks:
            row = []
            for evaluation in points:
                scores = getattr(evaluation, role) if evaluation is not None else {}
                row.append(getattr(scores[task], field) if task in scores else None)
            out[task] = row
        return out

    written: dict[str, Any] = {
        "tasks": list(record.tasks),
        "points": ["initial", *record.tasks],
        "eval": strings("scores"),
        "validation": strings("validation"),
    }
    exact = strings("scores", "exact_correct")
    if any(s is not None for row in exact.values() for s in row):
        written["eval_exact_match"] = exact
    retention = retention_strings(record)
    if retention:
        written["retention"] = retention
    return written


def retention_strings(record: RunRecord) -> dict[str, list[str | None]]:
    """The retention suite's per-row outcomes: suite task -> one string per evaluation point
    (as ``eval``'s; None where not evaluated or not recorded); empty when no point recorded
    any (the suite was off, or the run predates the record)."""
    points = [record.initial, *record.after_task]
    names = (record.retention() or {}).get("tasks") or []
    out = {
        task: [
            None if e is None or task not in e.retention else e.retention[task].correct
            for e in points
        ]
        for task in names
    }
    return out if any(s is not None for row in out.values() for s in row) else {}


def _evaluations(record: RunRecord, majority: Mapping[str, float]) -> list[dict[str, Any]]:
    """One record per trained-matrix cell for the degenerate-result guard.

    The initial evaluation is left out: untrained heads are expected to be degenerate.
    """
    accuracy, share = record.accuracy_matrix(), record.top_class_share_matrix()
    return [
        {
            "task": task,
            "evaluated_after": record.tasks[i],
            "accuracy": accuracy[i][j],
            "majority_baseline": majority[task],
            "top_class_share": share[i][j],
        }
        for i in range(len(record.tasks))
        for j, task in enumerate(record.tasks)
        if accuracy[i][j] is not None
    ]


def run_warnings(record: RunRecord, majority: Mapping[str, float]) -> list[dict[str, Any]]:
    """Degenerate heads, non-finite perplexities, and the warnings raised during the run."""
    ppl = record.perplexity()
    return [
        *degenerate_warnings(_evaluations(record, majority), tasks=record.tasks),
        *perplexity_warnings(ppl["initial"], ppl["after_task"], record.tasks),
        *record.warnings,
    ]


def build_run_results(
    cfg: DictConfig, record: RunRecord, context: Mapping[str, Any], status: str
) -> dict[str, Any]:
    """The results dict of ``results.json`` (schema: ``curlora.reporting.results``)."""
    majority = dict(context["majority_baseline"])
    return build_results(
        method=str(cfg.method.name),
        # Methods without a rank (head_only, full; OSF counts a frozen rank) record null.
        rank=int(cfg.method.rank) if cfg.method.get("rank") is not None else None,
        seed=int(cfg.seed),
        tasks=record.tasks,
        accuracy_matrix=record.accuracy_matrix(),
        initial_accuracy=record.initial_accuracy(),
        perplexity=record.perplexity(),
        majority_baseline=[majority[t] for t in record.tasks],
        trainable_params=int(context["trainable_params"]),
        status=status,
        config=OmegaConf.to_container(cfg, resolve=True),
        warnings=run_warnings(record, majority),
        label_balance=dict(context["label_balance"]),
        validation={
            "accuracy_matrix": record.accuracy_matrix("validation"),
            "majority_baseline": dict(context.get("validation_majority", {})),
        }
        if record.has_validation()
        else None,
        probe_matrix=record.probe_matrix(),
        head=_words_head(cfg, record),
        retention=record.retention(),
    )


def _words_head(cfg: DictConfig, record: RunRecord) -> dict[str, Any] | None:
    """Under head=words: each task's template and words, and the exact-match matrix."""
    from curlora.models.heads import build_head

    head = cfg.get("head")
    if head is None or not build_head(head).answers_in_words:
        return None
    specs = cfg.data.task_specs
    return {
        "name": str(head.name),
        "prompts": {
            t: {"template": specs[t].template, "label_words": list(specs[t].label_words)}
            for t in record.tasks
        },
        "exact_match_matrix": record.exact_match_matrix(),
        "initial_exact_match": record.initial_exact_match(),
    }


def write_run_report(
    cfg: DictConfig,
    run_dir: Path,
    record: RunRecord,
    context: Mapping[str, Any],
    status: str,
    loggers: Sequence[GuardedLogger] = (),
) -> dict[str, Any]:
    """Write ``results.json``, the plots and the logger summary; return the results."""
    results = build_run_results(cfg, record, context, status)
    for warning in results["warnings"]:
        log.warning("%s", warning["detail"])
    try:
        # Outcomes first: a results.json always has its outcomes beside it.
        atomic_write_text(run_dir / OUTCOMES_FILE, json.dumps(outcomes(record)) + "\n")
        write_results(run_dir / RESULTS_FILE, results)
    except OutputError:
        log.error("results (not saved):\n%s", json.dumps(_numbers(results), indent=1))
        raise
    _plots(results, run_dir)
    _log_results(results, run_dir, loggers)
    return results


def complete_plots(results: Mapping[str, Any], run_dir: Path) -> None:
    """Draw the plots of a completed run that lacks them (a job killed between results.json
    and its figures, then skipped as completed); a no-op when both exist."""
    if not all((Path(run_dir) / f"{name}.png").exists() for name in ("forgetting", "curves")):
        _plots(results, Path(run_dir))


def _numbers(results: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k not in ("config", "label_balance")}


def _plots(results: Mapping[str, Any], run_dir: Path) -> None:
    tasks, majority = results["tasks"], results["majority_baseline"]
    ppl = results["perplexity"]
    try:
        plot_forgetting(
            results["accuracy_matrix"], tasks, run_dir / "forgetting.png", majority=majority
        )
        plot_curves(
            results["accuracy_matrix"],
            results["initial_accuracy"],
            tasks,
            ppl["initial"],
            ppl["after_task"],
            run_dir / "curves.png",
            majority=majority,
        )
    except Exception as error:  # plots are a convenience; results.json is already safe
        log.warning(
            "plotting failed (%s: %s); results.json is unaffected", type(error).__name__, error
        )


def _log_results(
    results: Mapping[str, Any], run_dir: Path, loggers: Sequence[GuardedLogger]
) -> None:
    """The run summary, the plots (images) and, for W&B, the run's files as one artifact.
    The matrix table and the charts were logged at each evaluation point."""
    if not loggers:
        return
    try:
        from curlora.reporting.wandb_report import summary_metrics

        summary = summary_metrics(results)
        objects: dict[str, Any] = {}
        images = [run_dir / f"{name}.png" for name in ("forgetting", "curves")]
        if any(logger.is_wandb for logger in loggers):
            import wandb

            for image in images:
                if image.exists():
                    objects[f"plots/{image.stem}"] = wandb.Image(str(image))
    except Exception as error:
        log.warning("could not prepare logger summary (%s)", error)
        return
    for logger in loggers:
        logger.log_summary(summary)
        logger.log_objects(objects)
        logger.log_run_artifact(run_dir, str(results["status"]), results)
