"""Save an adapter to a directory and load it onto a fresh base model.

Layout: ``adapter.safetensors`` (``adapter_state_dict``) and ``adapter_config.json`` (the
resolved method config with ``_target_``, so ``hydra.utils.instantiate`` rebuilds it).
A CURLoRA adapter is U plus integer indices: for Mistral-7B q/k/v at k = 16 about 100 KB.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from curlora.adapters.base import require_method
from curlora.adapters.build import build_method
from curlora.adapters.inject import apply_adapter
from curlora.adapters.state import adapter_state_dict, load_adapter_state_dict

WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT = "curlora-adapter"


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same directory, then rename: a crash never
    leaves a half-written file under the final name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    meta = {"format": FORMAT, "method": method.name, "aliases": json.dumps(aliases)}
    _atomic_write(out / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata=meta))
    text = json.dumps(method.to_config(), indent=2) + "\n"
    _atomic_write(out / CONFIG_NAME, lambda p: Path(p).write_text(text))
    return out


def load_adapter(model: nn.Module, directory: str | os.PathLike[str]) -> int:
    """Apply the saved method to the fresh base ``model`` and load the saved adapter state.

    Returns the trainable-parameter count, as ``apply_adapter`` does. On CPU the outputs
    then equal those of the saved model bit for bit (same base weights).
    """
    src = Path(directory)
    config = json.loads((src / CONFIG_NAME).read_text())
    with safe_open(src / WEIGHTS_NAME, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{src / WEIGHTS_NAME} is not a curlora adapter (metadata {meta})")
    n_trainable = apply_adapter(model, config)
    state = load_file(src / WEIGHTS_NAME)
    for dropped, kept in json.loads(meta.get("aliases", "{}")).items():
        state[dropped] = state[kept]
    load_adapter_state_dict(model, state)
    return n_trainable
