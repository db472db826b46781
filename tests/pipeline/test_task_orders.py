"""order=paper|reversed|rotated: the same tasks in another order, swept and pooled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curlora.reporting.sweep import summarize_sweep
from tests.conftest import TINY, compose_run_config, run_cli

SYNTHETIC = ["pairs", "reviews", "moods"]  # data=synthetic's own order
# The README's order sweep as written, with the README-command tests' debug=tiny (they do
# not run it again: tests/pipeline/test_readme_commands.py, RUN_ELSEWHERE).
ORDER_SWEEP = ["-m", "order=paper,reversed,rotated", *TINY]


@pytest.mark.parametrize(
    ("order", "tasks"),
    [
        ("paper", SYNTHETIC),
        ("reversed", ["moods", "reviews", "pairs"]),
        ("rotated", ["reviews", "moods", "pairs"]),
    ],
)
def test_each_order_permutes_the_data_configs_tasks(order, tasks, tmp_path: Path) -> None:
    cfg = compose_run_config(tmp_path, [*TINY, f"order={order}"])
    assert list(cfg.tasks) == tasks


@pytest.mark.slow  # about 12 s: a sweep of task orders
def test_an_order_sweep_runs_and_the_report_pools_orders_when_asked(tmp_path: Path) -> None:
    done = run_cli(ORDER_SWEEP, cwd=tmp_path, OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert {name: r["tasks"] for name, r in runs.items()} == {
        "0_order=paper": SYNTHETIC,
        "1_order=reversed": SYNTHETIC[::-1],
        "2_order=rotated": SYNTHETIC[1:] + SYNTHETIC[:1],
    }
    separate = summarize_sweep(sweep, write=False)
    pooled = summarize_sweep(sweep, write=False, pool=["tasks"])
    assert "pooling tasks" not in separate.markdown  # three orders: three settings
    assert "## Mean ± std over runs of each setting (seeds, pooling tasks)" in pooled.markdown
    # The pooled row averages each task's final accuracy over the three orders.
    expected = sum(r["accuracy_matrix"][-1][r["tasks"].index("pairs")] for r in runs.values()) / 3
    assert f"{expected:.4f} ± " in pooled.markdown
