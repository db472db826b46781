"""The README's snippet that reloads a trained adapter and its heads works as printed."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from curlora.adapters import adapter_state_dict
from curlora.train import run
from tests.conftest import REPO_ROOT


def test_readme_reload_snippet_restores_the_trained_model(run_config, monkeypatch) -> None:
    cfg = run_config("trainer.max_epochs=1")
    run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    snippet = next(
        block
        for block in re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
        if "load_adapter(" in block
    )
    namespace: dict = {}
    exec(snippet.replace('"logs/runs/<run dir>"', repr(str(run_dir))), namespace)
    model, heads = namespace["model"], namespace["heads"]
    saved = torch.load(run_dir / "checkpoints" / "task_2.ckpt", weights_only=True)
    state = saved["training_state"]
    live = adapter_state_dict(model)
    assert set(live) == set(state["adapter_state"])
    for name, tensor in state["adapter_state"].items():
        torch.testing.assert_close(live[name], tensor, rtol=0, atol=0)
    assert set(heads) == {
        f"{t}.{p}" for t in ("pairs", "reviews", "moods") for p in ("weight", "bias")
    }
    torch.testing.assert_close(heads["pairs.weight"], state["heads"]["pairs.weight"])
