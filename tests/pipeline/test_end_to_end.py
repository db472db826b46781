"""A whole continual run on the tiny model and synthetic tasks, end to end."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from curlora.train import run

RESULT_KEYS = {
    "method",
    "rank",
    "seed",
    "tasks",
    "accuracy_matrix",
    "initial_accuracy",
    "perplexity",
    "metrics",
    "majority_baseline",
    "trainable_params",
    "status",
    "config",
}
METRIC_KEYS = {
    "avg_accuracy",
    "bwt",
    "forgetting_max",
    "forgetting_first",
    "fwt",
    "avg_incremental_accuracy",
    "ppl_ratio_final",
}


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_three_task_run_writes_results_and_plots(run_config, tmp_path: Path) -> None:
    cfg = run_config()
    results = run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == results
    assert set(on_disk) >= RESULT_KEYS
    assert set(on_disk["metrics"]) == METRIC_KEYS
    assert on_disk["status"] == "completed"
    tasks = on_disk["tasks"]
    assert tasks == ["pairs", "reviews", "moods"]
    matrix = on_disk["accuracy_matrix"]
    # Row i = after training task i, one entry per task; every task is evaluated each time.
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert all(value is not None for row in matrix for value in row)
    assert len(on_disk["initial_accuracy"]) == 3
    ppl = on_disk["perplexity"]
    assert ppl["initial"] > 1 and len(ppl["after_task"]) == 3 and ppl["tokens"] > 0
    # Learning happened: right after its own training some task beats its majority baseline
    # (0.5 on the balanced synthetic splits) by a clear margin.
    diagonal = [matrix[i][i] for i in range(3)]
    baselines = on_disk["majority_baseline"]
    assert max(d - b for d, b in zip(diagonal, baselines, strict=True)) > 0.15, diagonal
    # rank 16 CURLoRA on q/k/v of 2 layers: 6 · 16² adapter weights, plus 3 heads 64·2+2.
    assert on_disk["trainable_params"] == 6 * 16**2 + 3 * (64 * 2 + 2)
    for name in ("forgetting.png", "curves.png"):
        width, height = _png_size(run_dir / name)
        assert width > 100 and height > 100


def test_earlier_heads_unchanged_by_later_tasks(run_config) -> None:
    """Sequential training: task 0's head after task 0 equals it after the last task."""
    import torch

    cfg = run_config()
    run(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    state = {
        i: torch.load(checkpoints / f"task_{i}.ckpt", weights_only=True)["training_state"]
        for i in range(3)
    }
    first, last = state[0], state[2]
    for name in ("pairs.weight", "pairs.bias"):
        assert torch.equal(first["heads"][name], last["heads"][name]), name
    assert torch.equal(state[1]["heads"]["reviews.weight"], last["heads"]["reviews.weight"])
    # ... while the shared adapter did keep training.
    adapter_first, adapter_last = first["adapter_state"], last["adapter_state"]
    u_names = [n for n in adapter_first if n.endswith(".U")]
    assert len(u_names) == 6  # q/k/v of 2 layers
    assert all(not torch.equal(adapter_first[n], adapter_last[n]) for n in u_names)


def test_validation_carves_are_scored_beside_the_eval_splits(run_config) -> None:
    limits = [f"data.task_specs.{t}.validation_limit=40" for t in ("pairs", "reviews", "moods")]
    results = run(run_config("trainer.max_epochs=1", *limits))
    validation = results["validation"]
    assert len(validation["accuracy_matrix"]) == 3
    assert all(v is not None for v in validation["accuracy_matrix"][-1])
    # Scored after the last task only: the point that choosing settings reads.
    assert all(v is None for row in validation["accuracy_matrix"][:-1] for v in row)
    assert validation["majority_baseline"] == [
        results["label_balance"][t]["validation"]["majority_baseline"] for t in results["tasks"]
    ]
    # The eval split's numbers are not the validation ones (another sample of examples).
    assert validation["accuracy_matrix"] != results["accuracy_matrix"]
