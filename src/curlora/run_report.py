"""End-of-run reporting: results.json first, then plots, then the experiment loggers.

Order matters: ``results.json`` is written before anything that can fail for reasons
unrelated to the science (matplotlib, W&B), and each later step is guarded, so a plotting
or logging failure costs a warning, never the results.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from curlora.metrics.continual import summarize
from curlora.metrics.degenerate import degenerate_warnings
from curlora.reporting.plots import plot_curves, plot_forgetting
from curlora.reporting.results import build_results, write_results

if TYPE_CHECKING:
    from curlora.train import TaskLoop

log = logging.getLogger(__name__)


def _evaluations(loop: TaskLoop) -> list[dict[str, Any]]:
    """One record per trained-matrix cell for the degenerate-result guard.

    The initial evaluation is left out: untrained heads are expected to be degenerate.
    """
    majority = loop.data.majority_baseline()
    forgetting = loop.forgetting
    return [
        {
            "task": task,
            "evaluated_after": loop.tasks[i],
            "accuracy": forgetting.matrix[i][j],
            "majority_baseline": majority[task],
            "top_class_share": forgetting.top_class_share[i][j],
        }
        for i in range(len(loop.tasks))
        for j, task in enumerate(loop.tasks)
        if forgetting.matrix[i][j] is not None
    ]


def write_run_report(loop: TaskLoop, status: str) -> dict[str, Any]:
    cfg, run_dir = loop.cfg, loop.run_dir
    forgetting, perplexity = loop.forgetting, loop.perplexity
    warnings = degenerate_warnings(_evaluations(loop), tasks=loop.tasks)
    for warning in warnings:
        log.warning("degenerate result: %s", warning)
    results = build_results(
        method=str(cfg.method.name),
        # Methods without a rank (head_only, full; OSF counts a frozen rank) record null.
        rank=int(cfg.method.rank) if cfg.method.get("rank") is not None else None,
        seed=int(cfg.seed),
        tasks=loop.tasks,
        accuracy_matrix=forgetting.matrix,
        initial_accuracy=forgetting.initial,
        perplexity={
            "initial": perplexity.initial,
            "after_task": perplexity.after_task,
            "tokens": perplexity.tokens,
        },
        metrics=summarize(
            forgetting.matrix, forgetting.initial, perplexity.initial, perplexity.after_task
        ),
        majority_baseline=[loop.data.majority_baseline()[t] for t in loop.tasks],
        trainable_params=loop.trainable_params,
        status=status,
        config=OmegaConf.to_container(cfg, resolve=True),
        warnings=warnings,
        label_balance=loop.data.label_balance(),
    )
    write_results(run_dir / "results.json", results)
    _plots(loop, run_dir)
    _log_results(loop, results, run_dir)
    log.info("results: %s", run_dir / "results.json")
    return results


def _plots(loop: TaskLoop, run_dir: Path) -> None:
    majority = [loop.data.majority_baseline()[t] for t in loop.tasks]
    try:
        plot_forgetting(
            loop.forgetting.matrix, loop.tasks, run_dir / "forgetting.png", majority=majority
        )
        plot_curves(
            loop.forgetting.matrix,
            loop.forgetting.initial,
            loop.tasks,
            loop.perplexity.initial,
            loop.perplexity.after_task,
            run_dir / "curves.png",
            majority=majority,
        )
    except Exception as error:  # plots are a convenience; results.json is already safe
        log.warning(
            "plotting failed (%s: %s); results.json is unaffected", type(error).__name__, error
        )


def _log_results(loop: TaskLoop, results: dict[str, Any], run_dir: Path) -> None:
    if not loop.loggers:
        return
    try:
        from curlora.reporting.wandb_report import accuracy_table, summary_metrics

        summary = summary_metrics(results)
        objects: dict[str, Any] = {}
        import wandb

        objects["eval/accuracy_matrix"] = accuracy_table(results["accuracy_matrix"], loop.tasks)
        for name in ("forgetting", "curves"):
            image = run_dir / f"{name}.png"
            if image.exists():
                objects[f"plots/{name}"] = wandb.Image(str(image))
    except Exception as error:
        log.warning("could not prepare logger summary (%s)", error)
        return
    for logger in loop.loggers:
        logger.log_summary(summary)
        logger.log_objects(objects)
