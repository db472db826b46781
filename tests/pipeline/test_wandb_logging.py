"""W&B (offline) receives namespaced metrics, the matrix table, the plots and a summary.

wandb ≥ 0.2x keeps an offline run's history and summary in a binary ``.wandb`` file that
only its Go core reads, so the test records what reaches ``Run.log`` and the run summary
(spies that call through to wandb) and checks the media files wandb wrote to disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import wandb
from wandb.sdk import wandb_run, wandb_summary

from curlora.train import run


def test_offline_wandb_run_gets_metrics_table_images_and_summary(run_config, monkeypatch) -> None:
    logged: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    groups: list[str | None] = []
    original_log, original_update = wandb_run.Run.log, wandb_summary.Summary.update
    original_init, original_define = wandb.init, wandb_run.Run.define_metric
    axes: dict[str, str | None] = {}

    def spy_define(self, name, *args, **kwargs):
        axes[name] = kwargs.get("step_metric")
        return original_define(self, name, *args, **kwargs)

    def spy_log(self, data, *args, **kwargs):
        logged.update(data)
        return original_log(self, data, *args, **kwargs)

    def spy_update(self, data=None, **kwargs):
        summary.update(data or {})
        return original_update(self, data, **kwargs)

    def spy_init(*args, **kwargs):
        groups.append(kwargs.get("group"))
        return original_init(*args, **kwargs)

    monkeypatch.setattr(wandb_run.Run, "log", spy_log)
    monkeypatch.setattr(wandb_summary.Summary, "update", spy_update)
    monkeypatch.setattr(wandb, "init", spy_init)
    monkeypatch.setattr(wandb_run.Run, "define_metric", spy_define)
    cfg = run_config("logger=wandb", "trainer.max_epochs=1", "logger.wandb.group=sweep-x")
    results = run(cfg)
    assert results["status"] == "completed"
    assert groups == ["sweep-x"]
    # Step loss and learning rate, per-task eval metrics, perplexity: namespaced names.
    for key in (
        "train/moods/loss",
        "train/moods/lr",
        "eval/pairs/acc",
        "eval/moods/top_class_share",
        "lm/ppl",
    ):
        assert key in logged, key
    assert any(k.startswith("adapter/") and k.endswith("/delta_rel") for k in logged)
    # Forgetting curves without setup: per-task metrics are drawn against tasks trained
    # (trainer/global_step restarts with every task's Trainer).
    assert {axes[f"{p}/*"] for p in ("eval", "lm", "adapter")} == {"tasks_trained"}
    assert logged["tasks_trained"] == 3
    # The accuracy matrix as a wandb.Table, the plots as images.
    assert isinstance(logged["eval/accuracy_matrix"], wandb.Table)
    assert isinstance(logged["plots/forgetting"], wandb.Image)
    # Final metrics in the run summary.
    assert summary["final/avg_accuracy"] == results["metrics"]["avg_accuracy"]
    # And wandb wrote the offline files: the table's rows are the matrix entries.
    run_dirs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    table_file = next((run_dirs[0] / "files" / "media" / "table").rglob("*.table.json"))
    rows = json.loads(table_file.read_text())["data"]
    assert len(rows) == 9
    assert len(list((run_dirs[0] / "files" / "media" / "images").rglob("*.png"))) == 2
