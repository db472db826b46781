"""The README's "Adding a baseline" example works as printed: one file, one YAML, a run."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf, open_dict

from curlora.train import run

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_strategy_example_runs(run_config, tmp_path: Path, monkeypatch) -> None:
    code = next(b for b in _blocks("python") if "class L2Anchor" in b)
    config = yaml.safe_load(next(b for b in _blocks("yaml") if "L2Anchor" in b))
    # Install the example as a module of its own (the README puts it in the package).
    (tmp_path / "readme_l2_anchor.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    config["_target_"] = "readme_l2_anchor.L2Anchor"
    cfg = run_config("trainer.max_epochs=1")
    with open_dict(cfg):
        cfg.strategy = OmegaConf.create(config)
    results = run(cfg)
    assert results["status"] == "completed"
    sys.modules.pop("readme_l2_anchor", None)
