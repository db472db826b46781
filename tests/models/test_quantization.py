"""model.quantization: refused before anything loads where it cannot run (this CPU machine),
with the key, the value and what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from curlora.adapters import build_method
from curlora.models.quantization import check_quantization, quantization_config
from tests.conftest import CONFIG_DIR, run_cli

METHODS = sorted(p.stem for p in (CONFIG_DIR / "method").glob("*.yaml"))


def method(name: str):
    """The method a config with ``method=<name>`` builds (top-level rank/alpha/seed/tasks)."""
    node = OmegaConf.load(CONFIG_DIR / "method" / f"{name}.yaml")
    root = OmegaConf.create({"rank": 4, "alpha": 1.0, "seed": 0, "tasks": ["a"], "m": node})
    return build_method(root.m)


def test_no_cuda_is_refused_before_loading(tmp_path: Path) -> None:
    # As a user types it: a Hub model that could not even be reached here, so a refusal
    # after loading would be a Hub error instead of this line.
    result = run_cli(
        ["model=hub", "model.name_or_path=org/some-7b", "model.quantization=4bit", "method=lora"],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.quantization='4bit' needs a CUDA GPU" in result.stderr
    assert not (tmp_path / "logs" / "runs").exists() or not any(
        (tmp_path / "logs" / "runs").iterdir()
    )


def test_values_and_methods_are_checked() -> None:
    check_quantization(None, method("curlora"), cuda_available=False)  # off: nothing to check
    with pytest.raises(ValueError, match=r"model\.quantization='3bit' is not valid"):
        check_quantization("3bit", method("lora"), cuda_available=True)
    for name in METHODS:
        built = method(name)
        if built.supports_quantization:  # past the method check: the machine stops them
            with pytest.raises(ValueError, match="needs a CUDA GPU"):
                check_quantization("8bit", built, cuda_available=False)
        else:
            with pytest.raises(ValueError, match=f"method='{name}' cannot adapt a quantised"):
                check_quantization("4bit", built, cuda_available=False)
    # The capability is the class's (or, for LoRA's PEFT options, its fields'), never a list
    # of names; what follows from other capabilities holds for every YAML in configs/:
    # a method initialised from activations on W (needs_calibration) is built from W, which
    # bitsandbytes stores packed.
    for name in METHODS:
        if type(method(name)).needs_calibration:
            assert not method(name).supports_quantization, name
    # Anchors with their reasons: CURLoRA gathers C and R from W (a packed 4-bit W has no
    # columns to gather); PEFT's LoRA reads only the layer's input and output (QLoRA).
    assert not method("curlora").supports_quantization
    assert method("lora").supports_quantization


def test_the_readme_lists_the_methods_a_4bit_base_takes() -> None:
    # The list went stale once (rsLoRA, N-LoRA and InfLoRA inherit LoRA's capability).
    import re

    from tests.conftest import REPO_ROOT

    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    listed = re.search(
        r"Only methods whose adapter reads the layer's output run on it \(([^)]*)\)", readme
    )
    assert listed is not None
    names = re.findall(r"`([a-z_0-9]+)`", listed.group(1))
    assert names == sorted(n for n in METHODS if method(n).supports_quantization)


def test_without_a_method_only_the_value_and_the_machine_are_checked() -> None:
    # How the model loader calls it: the method was checked with the config already.
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        check_quantization("4bit", None, cuda_available=False)


def test_missing_bitsandbytes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real(name)
    )
    with pytest.raises(ValueError, match=r'pip install -e "\.\[quantization\]"'):
        check_quantization("4bit", method("lora"), cuda_available=True)


def test_the_4bit_config_is_qlora_nf4() -> None:
    import torch

    config = quantization_config("4bit", torch.bfloat16)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("8bit", torch.bfloat16).load_in_8bit
