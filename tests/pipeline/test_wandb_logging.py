"""What W&B receives, read from the offline run files (``tests/pipeline/wandb_records``).

One ``python train.py debug=fast`` run is shared by the checks of a single run: axes per
key, the charts and tables, the adapter statistics, the number of history keys, the
artifacts and the console. It has the default run's shape (CURLoRA, sequential, three
tasks, validation carves scored after the last task), one epoch per task and
``log_model=true``. A 2-job sweep and a SIGTERM + ``resume=`` are one short tiny run each.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from curlora.run.interrupts import RunInterrupted
from curlora.train import run
from tests.conftest import TINY, run_cli
from tests.pipeline.wandb_records import OfflineRun, offline_runs

TASKS = ["pairs", "reviews", "moods"]
POINTS = [0, 1, 2, 3]  # tasks trained at each evaluation point (0 = before training)


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OfflineRun, str]:
    """``python train.py debug=fast`` (one epoch per task, step checkpoints uploaded as
    model artifacts): its run directory, its parsed offline W&B run, its console."""
    cwd = tmp_path_factory.mktemp("fast")
    carves = [f"data.task_specs.{task}.validation_limit=64" for task in TASKS]
    done = run_cli(
        ["debug=fast", "trainer.max_epochs=1", "logger.wandb.log_model=true", *carves], cwd
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (cwd / "logs" / "runs").iterdir()
    (offline,) = offline_runs(run_dir)
    return run_dir, offline, done.stdout + done.stderr


def _media(offline: OfflineRun, key: str) -> dict[str, Any]:
    """The table a history key last pointed to, as wandb wrote it ({columns, data})."""
    _, value = offline.column(key)[-1]
    return json.loads((offline.directory / "files" / value["path"]).read_text())


def test_every_eval_and_lm_key_is_drawn_against_tasks_trained(fast_run) -> None:
    _, offline, _ = fast_run
    per_point = {k for k in offline.keys if k.startswith(("eval/", "lm/", "adapter/"))}
    assert {"eval/pairs/acc", "eval/avg_acc", "eval/bwt", "lm/ppl"} <= per_point
    for key in per_point:
        # One exact definition per key: no glob decides the axis.
        assert offline.metrics[key].step_metric == "tasks_trained", key
        assert not offline.metrics[key].glob_name, key
        # Every row holding it says at which point it was measured.
        assert all("tasks_trained" in r for r in offline.history if key in r), key
    assert [v for _, v in offline.column("tasks_trained")] == POINTS
    # The only glob is Lightning's own "*", which no key falls back to.
    assert {m.glob_name for m in offline.metrics.values() if m.glob_name} == {"*"}
    assert offline.keys - {"tasks_trained", "trainer/global_step"} <= set(offline.metrics)
    # Training curves: one step count over all tasks (each task's Trainer restarts at 0).
    train = {k for k in offline.keys if k.startswith("train/")}
    assert {f"train/{t}/loss" for t in TASKS} <= train
    assert {offline.metrics[k].step_metric for k in train} == {"trainer/global_step"}
    steps = [row["_step"] for row in offline.history]
    assert steps == sorted(set(steps))  # never repeats, never goes back
    assert all(row["trainer/global_step"] == row["_step"] for row in offline.history)
    # (400 synthetic examples - 64 carved) / batch 16 = 21 steps per task, evaluated after each.
    assert offline.column("tasks_trained") == [(0, 0), (21, 1), (42, 2), (63, 3)]


def test_forgetting_curve_chart_and_confusion_matrices(fast_run) -> None:
    run_dir, offline, _ = fast_run
    results = json.loads((run_dir / "results.json").read_text())
    charts = {k: v["panel_config"] for k, v in offline.charts.items()}
    assert charts["eval/forgetting_curve"]["panelDefId"] == "wandb/lineseries/v0"
    assert charts["eval/forgetting_curve"]["stringSettings"]["xname"] == "tasks_trained"
    assert charts["lm/perplexity_curve"]["panelDefId"] == "wandb/lineseries/v0"
    for task in TASKS:
        assert charts[f"eval/{task}/confusion"]["panelDefId"] == "wandb/confusion_matrix/v1"
    # The chart's data: one line per task over tasks trained 0..3, and the majority rate.
    curve = _media(offline, "eval/forgetting_curve_table")
    lines: dict[str, list[tuple[int, float]]] = {}
    for x, line, value in curve["data"]:
        lines.setdefault(line, []).append((x, value))
    columns = [results["initial_accuracy"], *results["accuracy_matrix"]]
    for j, task in enumerate(TASKS):
        assert lines[task] == [(k, columns[k][j]) for k in POINTS]
    assert lines["majority-class rate"] == [(0, 0.5), (3, 0.5)]  # balanced synthetic tasks
    # Confusion counts of the last point add up to the eval split, its classes named by the
    # task's class_names (configs/data/synthetic.yaml), not "0"/"1".
    confusion = _media(offline, "eval/moods/confusion_table")
    assert confusion["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert sum(row[2] for row in confusion["data"]) > 0
    assert {row[0] for row in confusion["data"]} == {"negative", "positive"}
    pairs = _media(offline, "eval/pairs/confusion_table")
    assert {row[1] for row in pairs["data"]} == {"disagrees", "agrees"}


def test_forgetting_of_each_task_at_each_point(fast_run) -> None:
    # eval/<task>/forgetting = R[j][j] - R[k][j] from the point task j trained (Avalanche's
    # per-experience forgetting), on the tasks_trained axis like every eval key.
    run_dir, offline, _ = fast_run
    R = json.loads((run_dir / "results.json").read_text())["accuracy_matrix"]
    for j, task in enumerate(TASKS):
        key = f"eval/{task}/forgetting"
        assert offline.metrics[key].step_metric == "tasks_trained"
        values = [v for _, v in offline.column(key)]
        assert values == pytest.approx([R[j][j] - R[k][j] for k in range(j, len(TASKS))]), key


def test_the_logged_config_holds_the_learning_rate_that_trained_once(fast_run) -> None:
    # debug=fast trains at optimizer.lr = 0.01 while curlora.yaml's method.lr (only the
    # default of optimizer.lr) says otherwise: the logged config keeps the one used.
    _, offline, _ = fast_run
    optimizer, method = offline.config["optimizer"], offline.config["method"]
    assert optimizer["lr"] == 0.01 and "lr" not in method


def test_matrix_table_and_running_metrics(fast_run) -> None:
    run_dir, offline, _ = fast_run
    results = json.loads((run_dir / "results.json").read_text())
    table = _media(offline, "eval/accuracy_matrix")
    assert table["columns"] == ["tasks_trained", "after_task", "task", "accuracy", "majority"]
    assert len(table["data"]) == 4 * 3  # before training + 3 tasks, 3 heads each
    assert table["data"][0][:3] == [0, "before training", "pairs"]
    assert table["data"][-1][:4] == [3, "moods", "moods", results["accuracy_matrix"][2][2]]
    last = offline.history[-1]
    assert last["eval/avg_acc"] == pytest.approx(results["metrics"]["avg_accuracy"])
    assert last["eval/bwt"] == pytest.approx(results["metrics"]["bwt"])
    assert [k for k, _ in offline.column("eval/bwt")] == [42, 63]  # from the second task on


def test_adapter_statistics_are_aggregates_and_a_table(fast_run) -> None:
    _, offline, _ = fast_run
    adapter = {k for k in offline.keys if k.startswith("adapter/")}
    assert adapter == {
        "adapter/delta_rel_mean",
        "adapter/delta_rel_max",
        "adapter/u_norm_mean",
        "adapter/layers",
    }
    layers = _media(offline, "adapter/layers")
    assert layers["columns"] == ["tasks_trained", "layer", "delta_rel", "u_norm"]
    assert len(layers["data"]) == 2 * 3  # tiny_llama: 2 layers × q/k/v


def test_history_keys_do_not_grow_with_layers(fast_run) -> None:
    """Per task: train loss and lr, eval acc, forgetting, top-class share, validation acc
    and confusion (7); per run: tasks_trained, trainer/global_step, eval/avg_acc, eval/bwt, the
    forgetting chart, the matrix table, lm/ppl, the perplexity chart, 3 adapter aggregates
    and their table, 2 plots (14). Nothing per layer: SmolLM2's 30 layers log the same 35."""
    _, offline, _ = fast_run
    assert len(offline.keys) == 7 * len(TASKS) + 14 == 35
    assert not [k for k in offline.keys if "layers." in k]


def test_names_tags_and_job_type_say_what_the_run_is(fast_run) -> None:
    _, offline, _ = fast_run
    assert offline.run.display_name == "curlora_r16_lr1e-2_s1311"
    assert offline.run.job_type == "curlora_r16_lr1e-2"
    assert list(offline.run.tags) == ["curlora", "r16", "lr1e-2", "s1311"]
    assert offline.run.run_group == ""  # a single run; a sweep sets it


def test_artifacts_and_the_table_before_finish(fast_run) -> None:
    _, offline, console = fast_run
    outputs = [a for a in offline.artifacts if a.type == "run-outputs"]
    (artifact,) = outputs
    # Named by the W&B run id: a rerun of the same setting is another collection.
    assert artifact.name == f"run-outputs-{offline.run.run_id}"
    meta = json.loads(artifact.metadata)
    results = json.loads((fast_run[0] / "results.json").read_text())
    assert {k: meta[k] for k in ("method", "rank", "seed", "status")} == {
        "method": "curlora",
        "rank": 16,
        "seed": 1311,
        "status": "completed",
    }
    assert meta["final/avg_accuracy"] == pytest.approx(results["metrics"]["avg_accuracy"])
    assert meta["final/bwt"] == pytest.approx(results["metrics"]["bwt"])
    files = {entry.path for entry in artifact.manifest.contents}
    assert {"results.json", "run_config.yaml", "forgetting.png", "heads.safetensors"} <= files
    assert "adapter/adapter.safetensors" in files
    # log_model through the logger wrapper: each task's last step checkpoint.
    models = [a for a in offline.artifacts if a.type == "model"]
    assert len(models) == 3 and all(a.name == f"model-{offline.run.run_id}" for a in models)
    # The final table is in W&B's copy of the console (printed before the run finished).
    assert "accuracy per task" in offline.console
    assert "W&B (offline): wandb sync" in offline.console
    assert f"wandb sync {offline.directory}" in console


def test_a_sweep_has_distinct_names_one_readable_group_and_one_sync_line(tmp_path) -> None:
    done = run_cli(["-m", "strategy=sequential,ewc", *TINY, "logger=wandb"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = offline_runs(tmp_path / "logs" / "multiruns")
    assert sorted(r.run.display_name for r in runs) == [
        "curlora_r16_ewc_lr1e-2_s1311",
        "curlora_r16_lr1e-2_s1311",
    ]
    groups = {r.run.run_group for r in runs}
    (group,) = groups
    assert re.fullmatch(r"multiruns/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d over strategy", group), group
    (sweep_dir,) = (tmp_path / "logs" / "multiruns").iterdir()
    output = (done.stdout + done.stderr).splitlines()
    lines = [line for line in output if "wandb sync" in line]
    assert any(line.endswith(f"wandb sync {sweep_dir}/*/wandb/offline-run-*") for line in lines)


SIGTERM = "+callbacks.fault={_target_: tests.pipeline.faults.SignalAt, task: reviews, step: 1}"


def test_a_run_resumed_after_sigterm_stays_one_wandb_run(run_config, caplog) -> None:
    caplog.set_level(logging.INFO, logger="curlora")
    cfg = run_config("logger=wandb", "debug=tiny", SIGTERM)
    with pytest.raises(RunInterrupted):
        run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert run(run_config("logger=wandb", f"resume={run_dir}"))["status"] == "completed"
    first, second = offline_runs(run_dir)
    assert first.run.run_id == second.run.run_id  # one W&B run, two sessions
    assert first.run.resume and second.run.resume  # opened with resume="allow"
    # Evaluations 0-1 before the signal, 2-3 after; the history step goes on, never back.
    assert [v for _, v in first.column("tasks_trained")] == [0, 1]
    assert [v for _, v in second.column("tasks_trained")] == [2, 3]
    assert min(r["_step"] for r in second.history) > max(r["_step"] for r in first.history)
    assert "logger_state.json" in {p.name for p in run_dir.iterdir()}
    # The run's table offers one sync line for both sessions.
    assert f"wandb sync {run_dir}/wandb/offline-run-*" in caplog.text
