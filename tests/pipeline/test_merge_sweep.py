"""The README's merge sweep, as written: three jobs, one per combination type, each saving
the merged adapter of its own rule (so the three adapters differ)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from tests.conftest import TINY, run_cli

# The README's command with the README-command tests' debug=tiny (they do not run it
# again: tests/pipeline/test_readme_commands.py, RUN_ELSEWHERE).
MERGE_SWEEP = ["-m", "strategy=merge", "strategy.combination=linear,ties,dare_ties", *TINY]


def test_the_merge_sweep_runs_one_job_per_combination(tmp_path: Path) -> None:
    done = run_cli(MERGE_SWEEP, cwd=tmp_path, OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    names = [f"{i}_strategy.combination={c}" for i, c in enumerate(("linear", "ties", "dare_ties"))]
    assert sorted(runs) == names
    assert all(r["status"] == "completed" for r in runs.values())
    adapters = [load_file(sweep / name / "adapter" / "adapter.safetensors") for name in names]
    # The first task trains the same adapter in all three (same seed); from the second task
    # on the merge rules differ, and so do the saved adapters.
    for other in adapters[1:]:
        assert any(not (adapters[0][k] == other[k]).all() for k in adapters[0])
