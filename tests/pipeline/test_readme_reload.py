"""The README's recipe for reloading a trained adapter and its heads works as printed, and
refuses a received run directory whose saved config would run the model's own code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from curlora.adapters import adapter_state_dict
from curlora.checks.config import ConfigError
from curlora.train import run
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"


def _recipe() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if "load_adapter(model" in b and "load_heads" in b)


def test_the_reload_recipe_runs_as_printed(
    run_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = run_config()
    assert run(cfg)["status"] == "completed"
    run_dir = Path(cfg.paths.output_dir)
    monkeypatch.setenv("CURLORA_CACHE", str(cfg.paths.cache_dir))
    code = _recipe().replace('Path("logs/runs/<run dir>")', f"Path({str(run_dir)!r})")
    scope: dict = {}
    exec(compile(code, "README recipe", "exec"), scope)
    # The heads it returns are the saved ones, and the adapter sits on the model.
    assert set(scope["heads"]) == set(load_file(run_dir / "heads.safetensors"))
    for name, tensor in scope["heads"].items():
        assert torch.equal(tensor, load_file(run_dir / "heads.safetensors")[name])
    # The adapter on the model is the trained one: its state equals the saved file's
    # tensors (CURLoRA's U starts at zero, so an adapter not loaded would not match).
    state = adapter_state_dict(scope["model"])
    saved_adapter = load_file(next((run_dir / "adapter").glob("*.safetensors")))
    assert saved_adapter and all(torch.equal(state[k], v) for k, v in saved_adapter.items())
    assert any(v.abs().sum() > 0 for v in saved_adapter.values() if v.is_floating_point())

    # The same directory with a saved trust_remote_code (as a sender could write it):
    # refused before the model's config is read.
    saved = run_dir / "run_config.yaml"
    text = saved.read_text()
    saved.write_text(text.replace("model:\n", "model:\n  trust_remote_code: true\n", 1))
    with pytest.raises(ConfigError, match="trust_remote_code"):
        exec(compile(code, "README recipe", "exec"), {})
