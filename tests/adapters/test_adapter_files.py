"""Adapter files damaged on disk are refused by name: a checksum of the tensors is saved in
the safetensors metadata and checked on load, so flipped bytes never load silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curlora.adapters import apply_adapter, load_adapter, save_adapter
from curlora.adapters.saving import CONFIG_NAME, WEIGHTS_NAME, AdapterFileError


@pytest.fixture
def saved(make_model, method_cfg, tmp_path: Path) -> Path:
    model = make_model()
    apply_adapter(model, method_cfg("curlora"))
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.25)  # U away from zero, so a flipped byte changes a number
    return save_adapter(model, tmp_path / "adapter")


def _flip_last_tensor_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # the file ends with tensor data: the header stays valid JSON
    path.write_bytes(bytes(data))


def test_flipped_tensor_bytes_are_refused_by_the_checksum(saved, make_model) -> None:
    load_adapter(make_model(), saved)  # intact: loads
    _flip_last_tensor_byte(saved / WEIGHTS_NAME)
    with pytest.raises(AdapterFileError, match=r"adapter.safetensors is damaged.*checksum"):
        load_adapter(make_model(), saved)


@pytest.mark.parametrize(
    ("name", "damage", "words"),
    [
        (WEIGHTS_NAME, lambda b: b[: len(b) // 2], "cannot be read"),
        (WEIGHTS_NAME, lambda b: b"", "cannot be read"),
        (CONFIG_NAME, lambda b: b[: len(b) // 2], "cannot be read"),
        (CONFIG_NAME, lambda b: b"\xff" + b, "cannot be read"),
        (CONFIG_NAME, lambda b: b"[1, 2]", "is not an adapter config"),
    ],
    ids=[
        "weights-truncated",
        "weights-empty",
        "config-truncated",
        "config-non-utf8",
        "config-list",
    ],
)
def test_a_damaged_adapter_file_is_named(saved, make_model, name, damage, words) -> None:
    path = saved / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(AdapterFileError) as error:
        load_adapter(make_model(), saved)
    message = str(error.value)
    assert str(path) in message and words in message and "\n" not in message, message


def test_an_adapter_saved_without_a_checksum_still_loads(saved, make_model) -> None:
    """Files written before the checksum existed carry none; they load as before."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(saved / WEIGHTS_NAME, framework="pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "sha256"}
    save_file(load_file(saved / WEIGHTS_NAME), str(saved / WEIGHTS_NAME), metadata=meta)
    assert json.loads((saved / CONFIG_NAME).read_text())["_target_"]
    load_adapter(make_model(), saved)
