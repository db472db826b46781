"""Any causal LM from the Hugging Face Hub or a local folder (e.g. Mistral-7B v0.3 on GPUs).

Config keys (``configs/model/hub.yaml``, ``configs/model/mistral_7b.yaml``):
    name_or_path: Hub id (``mistralai/Mistral-7B-v0.3``) or a local folder saved with
        ``save_pretrained`` (a local one in a received run's config is refused:
        ``curlora.run.received``).
    revision: branch, tag or commit on the Hub (None: the default branch).
    dtype: bfloat16 | float32 | float16 | auto (``auto``: the checkpoint's own dtype).
    trust_remote_code: False unless the config says so: it runs code from the repository.
    hf_cache_dir: where Hub downloads go; None keeps Hugging Face's shared cache
        (``HF_HOME``), so multi-GB weights already downloaded by other tools are reused.
    attn_implementation: null (transformers' choice: sdpa where it can) or one of the
        implementations transformers has built in (:data:`ATTENTION_IMPLEMENTATIONS`);
        anything else is refused (:func:`check_attention`): transformers reads any other
        ``<org>/<repo>`` as a Hub kernel, whose compiled and Python code it would download
        and import. A flash implementation needs its own package (flash-attn) on a GPU: without
        it transformers would fetch a replacement kernel from the Hub, so it is refused too.
    quantization: null, ``4bit`` or ``8bit``: a bitsandbytes-quantised frozen base on a CUDA
        GPU (``curlora.models.quantization``; QLoRA style).

The run's ``cache_dir`` is not used for weights, for the reason given for ``hf_cache_dir``.
When the Hub is unreachable and the model is not cached, one :class:`HubUnreachableError`
says so and names ``model=smollm2_135m`` and local paths as alternatives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from curlora.data.sources.hub import HubUnreachableError, is_offline_error
from curlora.models.quantization import check_quantization, quantization_config
from curlora.models.source import ModelSource

DTYPES: dict[str, Any] = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32,
    "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16, "auto": "auto",
}  # fmt: skip
T = TypeVar("T")
# The attention implementations transformers has built in (its AttentionInterface, and
# eager), that read no code from elsewhere. Any other string is a Hub kernel reference.
ATTENTION_IMPLEMENTATIONS = (
    "eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3",
    "flash_attention_4",
)  # fmt: skip
# transformers' own test that a flash implementation's package is usable on this machine;
# where it fails and the `kernels` package is installed, transformers loads a Hub kernel in
# its place (FLASH_ATTN_KERNEL_FALLBACK), which use_kernels=False does not prevent.
_FLASH_AVAILABLE = {
    "flash_attention_2": "is_flash_attn_2_available",
    "flash_attention_3": "is_flash_attn_3_available",
    "flash_attention_4": "is_flash_attn_4_available",
}


def check_attention(value: Any) -> None:
    """Raise ValueError naming ``model.attn_implementation`` unless ``value`` is null or a
    built-in implementation this machine runs without a Hub kernel (module docstring)."""
    if value is None:
        return
    if value not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"model.attn_implementation={value!r} is not valid; valid: null or one of "
            f"{list(ATTENTION_IMPLEMENTATIONS)} (anything else is a Hub kernel: code it would "
            "download and run)"
        )
    import transformers.utils

    available = getattr(transformers.utils, _FLASH_AVAILABLE.get(value, ""), None)
    if value in _FLASH_AVAILABLE and not (available is not None and available()):
        raise ValueError(
            f"model.attn_implementation={value!r} is not valid here: its flash-attn package "
            "is not usable on this machine (it needs that package and a GPU), and transformers "
            "would download and run a Hub kernel instead; valid: null, 'sdpa', 'eager' or "
            "'flex_attention', or install flash-attn"
        )


def _common(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    if not model_cfg.get("name_or_path"):
        raise ValueError("model.name_or_path is required (a Hub id or a local folder)")
    trust = model_cfg.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise ValueError(f"model.trust_remote_code must be true or false, got {trust!r}")
    kwargs: dict[str, Any] = {"revision": model_cfg.get("revision"), "trust_remote_code": trust}
    if model_cfg.get("hf_cache_dir"):
        kwargs["cache_dir"] = str(model_cfg["hf_cache_dir"])
    return kwargs


def _hub_refusal(error: BaseException) -> str | None:
    """``'gated'`` or ``'not found'`` when ``error``'s cause chain holds huggingface_hub's
    answer for a gated repository (no token, or terms not accepted) or for one that does not
    exist or is private (transformers wraps both in an ``OSError``); else None."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, GatedRepoError):  # a subclass of RepositoryNotFoundError
            return "gated"
        if isinstance(seen, RepositoryNotFoundError):
            return "not found"
        seen = seen.__cause__ or seen.__context__
    return None


def _from_hub(model_cfg: Mapping[str, Any], what: str, load: Callable[[], T]) -> T:
    """Run ``load``; turn "cannot reach the Hub", "gated" and "no such repository" into one
    actionable error each (exit 3 at the command line, no traceback)."""
    try:
        return load()
    except Exception as error:
        name = str(model_cfg["name_or_path"])
        if Path(name).exists():
            raise
        refusal = _hub_refusal(error)
        if refusal == "gated":
            raise HubUnreachableError(
                f"model '{name}': the Hugging Face Hub refused its {what}: the repository is "
                f"gated. Accept its terms at https://huggingface.co/{name} with your account, "
                "then log in on this machine (`hf auth login`) or set HF_TOKEN."
            ) from error
        if refusal == "not found":
            raise HubUnreachableError(
                f"model.name_or_path='{name}': the Hugging Face Hub has no repository of that "
                "name that this machine may read (a typo, or a private repository: log in "
                "with `hf auth login` or set HF_TOKEN), and it is not a local folder."
            ) from error
        if not is_offline_error(error):
            raise
        raise HubUnreachableError(
            f"model '{name}': cannot load its {what}: the Hugging Face Hub is unreachable (or "
            "offline mode is on) and it is not in the local cache. Use the registry-shipped "
            "model instead (model=smollm2_135m), or set model.name_or_path to a local folder "
            "saved with save_pretrained."
        ) from error


@dataclasses.dataclass
class HubModel(ModelSource):
    """Any causal LM by Hub id or local folder (fields: the module docstring)."""

    name_or_path: str = ""
    revision: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    hf_cache_dir: str | None = None
    attn_implementation: str | None = None
    quantization: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype='{self.dtype}' unknown; valid: {sorted(DTYPES)}")
        check_attention(self.attn_implementation)  # before anything reads the model

    def architecture(self, cache_dir: Path) -> PretrainedConfig:
        return load_config(self.as_config(), cache_dir)

    def load(self, cache_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        return load(self.as_config(), cache_dir)


def load_config(model_cfg: Mapping[str, Any], cache_dir: Path) -> PretrainedConfig:
    """The architecture config only (config.json, no weights)."""
    kwargs = _common(model_cfg)
    name = str(model_cfg["name_or_path"])
    return _from_hub(model_cfg, "config", lambda: AutoConfig.from_pretrained(name, **kwargs))


def load(
    model_cfg: Mapping[str, Any], cache_dir: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(causal LM, tokenizer)`` in ``model.dtype`` (default bfloat16, the paper's)."""
    kwargs = _common(model_cfg)
    dtype_name = str(model_cfg.get("dtype", "bfloat16"))
    if dtype_name not in DTYPES:
        raise ValueError(f"model.dtype='{dtype_name}' unknown; valid: {sorted(DTYPES)}")
    name = str(model_cfg["name_or_path"])
    # use_kernels=False: transformers would otherwise swap in Hub kernels on a GPU (a
    # download, and other numbers than the model's own PyTorch code).
    model_kwargs = dict(kwargs, dtype=DTYPES[dtype_name], use_kernels=False)
    if model_cfg.get("attn_implementation"):
        check_attention(model_cfg["attn_implementation"])  # load() is also called directly
        model_kwargs["attn_implementation"] = str(model_cfg["attn_implementation"])
    quantization = model_cfg.get("quantization")
    if quantization:
        # The method was checked with the config (checks/config.py); here what the machine has.
        check_quantization(quantization, None, torch.cuda.is_available())
        compute = model_kwargs["dtype"] if model_kwargs["dtype"] != "auto" else torch.bfloat16
        model_kwargs["quantization_config"] = quantization_config(quantization, compute)
        model_kwargs["device_map"] = {"": torch.cuda.current_device()}  # bitsandbytes: on GPU
    tokenizer = _from_hub(
        model_cfg, "tokenizer", lambda: AutoTokenizer.from_pretrained(name, **kwargs)
    )
    model = _from_hub(
        model_cfg, "weights", lambda: AutoModelForCausalLM.from_pretrained(name, **model_kwargs)
    )
    model.eval()
    return model, tokenizer
