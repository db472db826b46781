"""model.quantization: refused before anything loads where it cannot run (this CPU machine),
with the key, the value and what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from curlora.models.quantization import QUANTIZED_METHODS, check_quantization, quantization_config
from tests.conftest import run_cli


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
    check_quantization(None, "curlora", cuda_available=False)  # off: nothing to check
    with pytest.raises(ValueError, match=r"model\.quantization='3bit' is not valid"):
        check_quantization("3bit", "lora", cuda_available=True)
    for method in ("curlora", "lora_paper", "osf", "pissa", "mica", "tinylora", "full"):
        with pytest.raises(ValueError, match=f"method='{method}' cannot adapt a quantised base"):
            check_quantization("4bit", method, cuda_available=False)
    for method in QUANTIZED_METHODS:  # past the method check: the machine is what stops them
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            check_quantization("8bit", method, cuda_available=False)


def test_missing_bitsandbytes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real(name)
    )
    with pytest.raises(ValueError, match=r'pip install -e "\.\[quantization\]"'):
        check_quantization("4bit", "lora", cuda_available=True)


def test_the_4bit_config_is_qlora_nf4() -> None:
    import torch

    config = quantization_config("4bit", torch.bfloat16)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("8bit", torch.bfloat16).load_in_8bit
