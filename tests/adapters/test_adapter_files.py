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


def _rewrite_metadata(saved: Path, change) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(saved / WEIGHTS_NAME, framework="pt") as f:
        meta = dict(f.metadata() or {})
    change(meta)
    save_file(load_file(saved / WEIGHTS_NAME), str(saved / WEIGHTS_NAME), metadata=meta)


def test_an_adapter_without_a_checksum_loads_only_with_the_opt_in(saved, make_model) -> None:
    """Files written before the checksum existed carry none: an edit would load silently,
    so they load only when the caller says it trusts their source."""
    _rewrite_metadata(saved, lambda meta: (meta.pop("checksum"), meta.pop("sha256")))
    with pytest.raises(AdapterFileError, match=r"no checksum.*allow_unchecked=True"):
        load_adapter(make_model(), saved)
    load_adapter(make_model(), saved, allow_unchecked=True)


def test_stripped_tensor_checksum_with_a_recomputed_checksum_is_refused(saved, make_model) -> None:
    """Changed tensors, their ``sha256`` deleted and ``checksum`` recomputed over what is
    left: a file this project checksummed always has the tensors' digest, so its absence
    is refused instead of loading the changed numbers."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from curlora.adapters.saving import metadata_checksum

    path = saved / WEIGHTS_NAME
    with safe_open(path, framework="pt") as f:
        meta = dict(f.metadata() or {})
    tensors = {
        name: tensor + 1.0 if tensor.is_floating_point() else tensor
        for name, tensor in load_file(path).items()
    }
    del meta["sha256"]
    meta["checksum"] = metadata_checksum(meta)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(AdapterFileError, match=r"adapter.safetensors is damaged.*no sha256"):
        load_adapter(make_model(), saved)
    with pytest.raises(AdapterFileError, match=r"no sha256"):
        load_adapter(make_model(), saved, allow_unchecked=True)


def test_an_edited_adapter_config_is_refused(saved, make_model) -> None:
    """alpha 1.0 -> 9.0 changes every output of the adapted model; adapter_config.json was
    outside the tensors' checksum."""
    path = saved / CONFIG_NAME
    config = json.loads(path.read_text())
    config["alpha"] = 9.0
    path.write_text(json.dumps(config, indent=2) + "\n")
    with pytest.raises(AdapterFileError, match=r"adapter_config.json does not match the checksum"):
        load_adapter(make_model(), saved)


def test_edited_metadata_is_refused(saved, make_model) -> None:
    _rewrite_metadata(saved, lambda meta: meta.__setitem__("aliases", '{"x": "y"}'))
    with pytest.raises(AdapterFileError, match=r"adapter.safetensors is damaged.*metadata"):
        load_adapter(make_model(), saved)


@pytest.mark.parametrize("key", ["fingerprint", "aliases"])
def test_a_damaged_metadata_entry_is_one_line_naming_the_file(saved, make_model, key) -> None:
    """Even with the opt-in, a cut JSON entry is named, never a bare JSONDecodeError."""

    def cut(meta: dict[str, str]) -> None:
        meta.pop("checksum")  # an older file: only the opt-in loads it
        meta[key] = meta[key][:-1]  # cut: "{}" -> "{"

    _rewrite_metadata(saved, cut)
    with pytest.raises(AdapterFileError) as error:
        load_adapter(make_model(), saved, allow_unchecked=True)
    message = str(error.value)
    assert WEIGHTS_NAME in message and repr(key) in message and "\n" not in message


def test_an_adapter_config_naming_foreign_code_is_refused(saved, make_model, tmp_path) -> None:
    """Reading an adapter imports nothing outside the allowlist (its _target_ is data)."""
    path = saved / CONFIG_NAME
    config = json.loads(path.read_text())
    config["_target_"] = "builtins.open"
    path.write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match=r"_target_='builtins.open'.*refused"):
        load_adapter(make_model(), saved, allow_unchecked=True)


def test_a_base_whose_config_computes_something_else_is_refused(
    saved, make_model, tiny_config
) -> None:
    """The same weights under another ``rms_norm_eps`` (a number in no tensor) compute other
    outputs: the adapter's per-layer fingerprint cannot see it, the config's sha256 does.
    Where the model came from (``_name_or_path``) is not part of it."""
    other = tiny_config.to_dict()
    other["rms_norm_eps"] = 0.5
    renamed = make_model()
    renamed.config._name_or_path = "/elsewhere/the-same-model"
    load_adapter(renamed, saved)  # same weights and numbers, another origin: loads
    with pytest.raises(ValueError, match=r"its config .* differs"):
        load_adapter(make_model(config=type(tiny_config)(**other)), saved)
    with pytest.warns(UserWarning, match="its config"):
        load_adapter(make_model(config=type(tiny_config)(**other)), saved, strict=False)


def test_an_adapter_saved_before_the_config_sha256_still_loads(saved, make_model) -> None:
    """Adapters saved before the config's sha256 was kept carry none: nothing to check."""
    from curlora.adapters.saving import metadata_checksum

    def drop(meta: dict[str, str]) -> None:
        meta.pop("base_config_sha256")
        meta["checksum"] = metadata_checksum(meta)

    _rewrite_metadata(saved, drop)
    load_adapter(make_model(), saved)
