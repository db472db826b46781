"""The analysis notebook runs top to bottom on a sweep (needs the `notebook` extra)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TINY, run_cli


@pytest.mark.slow
def test_notebook_runs_on_a_sweep(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient", reason='pip install -e ".[notebook]"')
    nbformat = pytest.importorskip("nbformat")
    assert run_cli(["-m", "method=curlora,head_only", *TINY], cwd=tmp_path).returncode == 0
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "forgetting_analysis.ipynb", as_version=4)
    os.environ["CURLORA_SWEEP"] = str(sweep)
    try:
        nbclient.NotebookClient(
            notebook, timeout=300, resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}}
        ).execute()
    finally:
        del os.environ["CURLORA_SWEEP"]
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"{sweep}: 2 runs" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # heatmap and curves of each run
