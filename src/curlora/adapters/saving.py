"""Save an adapter to a directory and load it onto a fresh base model.

Layout: ``adapter.safetensors`` (``adapter_state_dict``) and ``adapter_config.json`` (the
resolved method config with ``_target_``, so ``hydra.utils.instantiate`` rebuilds it).
A CURLoRA adapter is U plus integer indices: for Mistral-7B q/k/v at k = 16 about 100 KB.

The metadata also holds a sha256 of the tensors (names, dtypes, shapes and bytes, ``sha256``),
one of ``adapter_config.json``'s bytes (``config_sha256``) and one over both and the rest of
the metadata (``checksum``), all checked on load: flipped bytes, an edited ``alpha`` in the
config or an edited fingerprint are refused by name (:class:`AdapterFileError`) instead of
loading other numbers silently. An adapter without ``checksum`` (saved by an older version,
or stripped) loads only with ``load_adapter(..., allow_unchecked=True)``. The config's
``_target_`` must be one the project builds (``curlora.checks.targets``): reading an adapter
imports nothing else.

An adapter only means something on the base it was trained on (a CURLoRA adapter most of
all: its C and R are gathered again from the base). The safetensors metadata therefore
holds the base's fingerprint (``AdapterMethod.fingerprint``: per layer the weight's shape,
dtype and a sha256 of what the adapter depends on) and a sha256 of the base's config less
its origin fields (``base_config_sha256``: ``rms_norm_eps`` is in no tensor), and
:func:`load_adapter` refuses a base that does not match, naming the first layer that
differs, or saying its config does.

A run's task heads (``heads.safetensors``, :func:`save_heads`) carry the same sha256 of
their tensors; :func:`load_heads` refuses a file whose tensors do not match it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from curlora.adapters.base import require_method
from curlora.adapters.base_config import base_config_sha256
from curlora.adapters.build import build_method
from curlora.adapters.inject import apply_adapter
from curlora.adapters.state import adapter_state_dict, load_adapter_state_dict
from curlora.checks.targets import UntrustedTarget, check_targets
from curlora.run.atomic import atomic_write, atomic_write_text

WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT = "curlora-adapter"
HEADS_NAME = "heads.safetensors"
HEADS_FORMAT = "curlora-heads"


class AdapterFileError(ValueError):
    """An adapter file that cannot be used (missing, damaged, not an adapter); names it."""


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop repeated views of one tensor (tied embeddings under ``full``), which
    safetensors refuses; returns (unique tensors, {dropped key: kept key})."""
    kept: dict[tuple[Any, ...], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for k, t in state.items():
        ident = (
            t.device,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        if ident in kept:
            aliases[k] = kept[ident]
        else:
            kept[ident] = k
            unique[k] = t.detach().contiguous().cpu()
    return unique, aliases


def save_adapter(
    model: nn.Module, directory: str | os.PathLike[str], method_cfg: Any = None
) -> Path:
    """Write the adapter of ``model`` to ``directory`` (created if needed); returns it.

    ``method_cfg`` (optional) must describe the method applied to ``model``; the JSON holds
    the applied method's resolved config either way.
    """
    method = require_method(model)
    if method_cfg is not None and build_method(method_cfg).to_config() != method.to_config():
        raise ValueError(
            f"method_cfg {build_method(method_cfg).to_config()} is not the method applied to "
            f"the model {method.to_config()}"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors, aliases = _dedupe(adapter_state_dict(model))
    config_text = json.dumps(method.to_config(), indent=2) + "\n"
    meta = {
        "format": FORMAT,
        "method": method.name,
        "aliases": json.dumps(aliases),
        "fingerprint": json.dumps(method.fingerprint(model)),
        "base_config_sha256": base_config_sha256(model) or "",
        "sha256": tensors_sha256(tensors),
        "config_sha256": hashlib.sha256(config_text.encode("utf-8")).hexdigest(),
    }
    meta["checksum"] = metadata_checksum(meta)
    # The config first: a kill between the two writes leaves a config whose digest the old
    # weights file does not hold, which load refuses by name (never a silent mix).
    atomic_write_text(out / CONFIG_NAME, config_text)
    atomic_write(out / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata=meta))
    return out


def metadata_checksum(meta: dict[str, str]) -> str:
    """sha256 over every metadata entry but itself: the tensors' and the config's digests,
    the fingerprint, the aliases, the method and the format."""
    covered = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode("utf-8")).hexdigest()


def _check_fingerprint(model: nn.Module, saved: dict[str, Any], strict: bool, src: Path) -> None:
    """Raise (or warn, ``strict=False``) when the base differs from the one saved with."""
    method = require_method(model)
    live = method.fingerprint(model)
    for name, expected in saved.items():
        found = live.get(name)
        if found == expected:
            continue
        if found is None:
            what = "the layer does not exist in this model"
        elif found["shape"] != expected["shape"] or found["dtype"] != expected["dtype"]:
            what = (
                f"it was saved on a {expected['dtype']} weight of shape {expected['shape']}, "
                f"this base has {found['dtype']} {found['shape']}"
            )
        else:
            what = "its base weights differ from the ones the adapter was trained on"
        message = (
            f"adapter {src} does not fit this base model at layer {name}: {what}. Load it "
            "onto the model it was trained on (strict=False loads it anyway)"
        )
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
        return


def _check_base_config(model: nn.Module, saved: str, strict: bool, src: Path) -> None:
    """Raise (or warn, ``strict=False``) when the base's config computes something else
    than the one the adapter was saved with (``curlora.adapters.base_config``)."""
    if base_config_sha256(model) == saved:
        return
    message = (
        f"adapter {src} does not fit this base model: its config (rms_norm_eps, rotary "
        "settings, activation, ...) differs from the one the adapter was trained on. Load it "
        "onto the model it was trained on (strict=False loads it anyway)"
    )
    if strict:
        raise ValueError(message)
    warnings.warn(message, stacklevel=3)


def read_adapter_files(
    src: Path, allow_unchecked: bool = False
) -> tuple[dict[str, Any], dict[str, str], dict[str, torch.Tensor]]:
    """The config, the metadata and the tensors of the adapter saved in ``src``, checked
    against the saved checksums (see the module docstring). Raises AdapterFileError naming
    the file that is unusable."""
    config_path, weights_path = src / CONFIG_NAME, src / WEIGHTS_NAME
    try:
        config_bytes = config_path.read_bytes()
        config = json.loads(config_bytes.decode("utf-8"))
    except (OSError, ValueError) as error:  # missing, not UTF-8, not JSON
        raise AdapterFileError(f"{config_path} cannot be read ({_one_line(error)})") from None
    if not isinstance(config, dict) or "_target_" not in config:
        raise AdapterFileError(f"{config_path} is not an adapter config (no _target_)")
    try:
        check_targets(config, str(config_path))
    except UntrustedTarget as error:
        raise AdapterFileError(str(error)) from None
    meta, state = _read_safetensors(weights_path)
    if meta.get("format") != FORMAT:
        raise AdapterFileError(f"{weights_path} is not a curlora adapter (metadata {meta})")
    _check_tensors(weights_path, meta, state)
    if "checksum" not in meta:
        if not allow_unchecked:
            raise AdapterFileError(
                f"{weights_path} has no checksum of its config and metadata (saved by an older "
                "version, or stripped), so an edit would load silently; if you trust where it "
                "came from, load it with load_adapter(..., allow_unchecked=True)"
            )
    elif metadata_checksum(meta) != meta["checksum"]:
        raise AdapterFileError(f"{weights_path} is damaged: its metadata was edited")
    elif hashlib.sha256(config_bytes).hexdigest() != meta.get("config_sha256"):
        raise AdapterFileError(
            f"{config_path} does not match the checksum saved with the adapter (edited?)"
        )
    return config, meta, state


def _read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's metadata and tensors; AdapterFileError naming it when it cannot
    be read."""
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        return meta, load_file(path)
    except Exception as error:  # OSError, or SafetensorError for a truncated/garbled file
        raise AdapterFileError(f"{path} cannot be read ({_one_line(error)})") from None


def _check_tensors(path: Path, meta: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """AdapterFileError unless the tensors match the ``sha256`` saved with them. A file
    this project checksummed (``checksum`` present) always has one: its absence means it
    was stripped, and the checksum recomputed, so that changed tensors would load."""
    if "sha256" not in meta:
        if "checksum" in meta:
            raise AdapterFileError(
                f"{path} is damaged: its metadata has no sha256 of its tensors (stripped?)"
            )
        return  # an older version's file: load_adapter refuses it without allow_unchecked
    if tensors_sha256(state) != meta["sha256"]:
        raise AdapterFileError(
            f"{path} is damaged: its tensors do not match the checksum saved with them"
        )


def _metadata_json(meta: dict[str, str], key: str, default: str, where: Path) -> Any:
    """A JSON entry of the metadata; AdapterFileError naming the file when it is damaged."""
    try:
        value = json.loads(meta.get(key, default))
    except ValueError as error:
        raise AdapterFileError(
            f"{where} is damaged: its metadata entry {key!r} is not JSON ({_one_line(error)})"
        ) from None
    if not isinstance(value, dict):
        raise AdapterFileError(f"{where} is damaged: its metadata entry {key!r} is not a mapping")
    return value


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def load_adapter(
    model: nn.Module,
    directory: str | os.PathLike[str],
    strict: bool = True,
    allow_unchecked: bool = False,
) -> int:
    """Apply the saved method to the fresh base ``model`` and load the saved adapter state.

    Returns the trainable-parameter count, as ``apply_adapter`` does. On CPU the outputs
    then equal those of the saved model bit for bit (same base weights). A base whose
    fingerprint differs from the saved one raises ValueError naming the layer
    (``strict=False``: a warning, and the adapter is loaded anyway); a damaged or unreadable
    file raises AdapterFileError naming it, before the model is touched. An adapter without
    the checksum of its config and metadata is refused unless ``allow_unchecked=True``.
    """
    src = Path(directory)
    config, meta, state = read_adapter_files(src, allow_unchecked)
    weights = src / WEIGHTS_NAME
    fingerprint = _metadata_json(meta, "fingerprint", "{}", weights)
    aliases = _metadata_json(meta, "aliases", "{}", weights)
    n_trainable = apply_adapter(model, config)
    if "fingerprint" in meta:
        _check_fingerprint(model, fingerprint, strict, src)
    if meta.get("base_config_sha256"):  # absent in adapters saved before it was kept
        _check_base_config(model, meta["base_config_sha256"], strict, src)
    for dropped, kept in aliases.items():
        if kept not in state:
            raise AdapterFileError(f"{weights} is damaged: alias {dropped!r} names no tensor")
        state[dropped] = state[kept]
    load_adapter_state_dict(model, state)
    return n_trainable


# ---------------------------------------------------------------------------------- heads
def save_heads(state: dict[str, torch.Tensor], run_dir: str | os.PathLike[str]) -> Path:
    """Write a run's task heads (``<task>.weight``, ``<task>.bias``) to
    ``<run_dir>/heads.safetensors`` with the sha256 of their tensors; returns the path."""
    tensors = {n: t.detach().contiguous().cpu() for n, t in state.items()}
    meta = {"format": HEADS_FORMAT, "sha256": tensors_sha256(tensors)}
    path = Path(run_dir) / HEADS_NAME
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_heads(
    run_dir: str | os.PathLike[str], allow_unchecked: bool = False
) -> dict[str, torch.Tensor]:
    """The task heads a run saved (``{"<task>.weight": [classes, hidden], ...}``), checked
    against the sha256 saved with them. Raises AdapterFileError naming the file when it
    cannot be read, is not a run's heads or its tensors do not match; a file without the
    sha256 (saved by an older version) loads only with ``allow_unchecked=True``."""
    path = Path(run_dir) / HEADS_NAME
    meta, state = _read_safetensors(path)
    if "sha256" not in meta and allow_unchecked:
        return state
    if "sha256" in meta and meta.get("format") != HEADS_FORMAT:
        raise AdapterFileError(f"{path} is not a run's heads file (metadata {meta})")
    if "sha256" not in meta:
        raise AdapterFileError(
            f"{path} has no sha256 of its tensors (saved by an older version, or stripped), so "
            "an edit would load silently; if you trust where it came from, load it with "
            "load_heads(..., allow_unchecked=True)"
        )
    if tensors_sha256(state) != meta["sha256"]:
        raise AdapterFileError(
            f"{path} is damaged: its tensors do not match the checksum saved with them"
        )
    return state
