"""A new baseline is one file + one YAML: the contract kit tests it with no other edit.

A throwaway strategy (with a step hook and checkpoint hooks) and a throwaway method (a
PEFT option on LoRA) are written into a temporary package, their YAMLs into a copy of
``configs/``; a fresh pytest then runs the unmodified contract tests
(``tests/contract``) on that copy and must collect and pass the new baselines' tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIG_DIR, REPO_ROOT

STRATEGY = '''
"""Throwaway: an L2 pull towards the parameters at the start of the task, and a count of
the optimizer steps taken (to use the step hook and the checkpoint hooks)."""

from __future__ import annotations

import torch

from curlora.strategies.base import Strategy, check_float


class ThrowawayAnchor(Strategy):
    name = "throwaway_anchor"

    def __init__(self, weight: float = 0.1) -> None:
        self.weight = check_float("weight", weight, 0.0)
        self.anchor: dict[str, torch.Tensor] = {}
        self.steps = 0

    def on_task_start(self, module, task, datamodule) -> None:
        if not self.anchor:
            self.anchor = {n: p.detach().clone() for n, p in module.trainable_named_parameters()}

    def on_optimizer_step(self, module, task, step) -> None:
        self.steps += 1

    def extra_loss(self, module, task, batch, logits):
        params = dict(module.trainable_named_parameters())
        terms = [((params[n] - a) ** 2).sum() for n, a in self.anchor.items() if n in params]
        return self.weight * torch.stack(terms).sum() if terms else None

    def on_save_checkpoint(self, module) -> dict:
        return {"anchor": dict(self.anchor), "steps": self.steps}

    def on_load_checkpoint(self, module, state) -> None:
        self.anchor, self.steps = dict(state["anchor"]), state["steps"]
'''

STRATEGY_YAML = """\
# Throwaway strategy for the contract kit's own test.
_target_: throwaway_baselines.anchor.ThrowawayAnchor
# weight ≥ 0 of the L2 pull
weight: 0.1
"""

METHOD = '''
"""Throwaway: PEFT LoRA with Gaussian-initialised A (a PEFT option, the common pattern)."""

from __future__ import annotations

import dataclasses

from peft import LoraConfig

from curlora.adapters.lora import LoRAMethod


@dataclasses.dataclass
class ThrowawayLoRA(LoRAMethod):
    name: str = "throwaway_lora"

    def peft_config(self, names: list[str]) -> LoraConfig:
        config = super().peft_config(names)
        config.init_lora_weights = "gaussian"
        return config
'''

METHOD_YAML = """\
# Throwaway method for the contract kit's own test.
_target_: throwaway_baselines.gaussian_lora.ThrowawayLoRA
# run/log name
name: throwaway_lora
# learning rate
lr: 1.0e-3
# r
rank: ${rank}
# lora_alpha
alpha: ${curlora.mul:${alpha},${rank}}
# adapted modules
target_modules: [q_proj, v_proj]
# lora_dropout
dropout: 0.0
# init seed
seed: ${seed}
"""


# About 40 s: the fast tier's contract kit already discovers and runs every baseline in
# configs/, a new one included.
@pytest.mark.slow
def test_a_throwaway_method_and_strategy_are_tested_with_no_other_edit(tmp_path: Path) -> None:
    package = tmp_path / "throwaway_baselines"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "anchor.py").write_text(STRATEGY)
    (package / "gaussian_lora.py").write_text(METHOD)
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    (configs / "strategy" / "throwaway_anchor.yaml").write_text(STRATEGY_YAML)
    (configs / "method" / "throwaway_lora.yaml").write_text(METHOD_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_CORE"))}
    env["CURLORA_KIT_CONFIGS"] = str(configs)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO_ROOT)])
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-o", "addopts=", "-m", "not slow", "-q", "-rA",
            f"--basetemp={tmp_path / 'pytest'}", "-k", "throwaway",
            # the kit's test files only: this file's own test would start itself again
            "tests/contract/test_contract.py", "tests/contract/test_contract_words.py",
            "tests/contract/test_conventions.py",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    passed = re.findall(r"^PASSED (\S+)", output, flags=re.M)
    for name in ("throwaway_anchor", "throwaway_lora"):
        ran = [test for test in passed if name in test]
        # conventions (3), the run, the reload, the bad values, and the stop and resume
        # (in the fast tier for every baseline: a newcomer's `make test` runs it)
        assert len(ran) >= 7, f"{name}: only {ran} ran"
        assert any("resume" in test for test in ran), ran
