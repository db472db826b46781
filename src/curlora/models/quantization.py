"""A quantised frozen base (QLoRA style) through transformers' bitsandbytes integration.

``model.quantization=4bit`` loads the Hub model's Linear weights as NF4 (double-quantised,
computing in ``model.dtype``), ``8bit`` as LLM.int8(): a 7B base then needs ~5 GB or
~8 GB instead of ~14.5 GB. The adapter trains in float32 on top (PEFT's quantised LoRA
layers). bitsandbytes quantises on CUDA GPUs, so a machine without one is refused before
anything loads, as is a method whose adapter needs W itself: CURLoRA's C and R are columns
and rows of W, the paper's LoRA, OSF, PiSSA, OLoRA, MiCA, CorDA and TinyLoRA build their
factors from W (bitsandbytes stores it packed), and full fine-tuning would train the packed
weights.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curlora.adapters.base import AdapterMethod

QUANTIZATIONS = ("4bit", "8bit")
INSTALL = 'pip install -e ".[quantization]"'


def check_quantization(
    quantization: Any, method: AdapterMethod | None, cuda_available: bool
) -> None:
    """Raise ValueError when ``model.quantization`` cannot run here with ``method``: the
    value, then the method (a config error anywhere), then CUDA and bitsandbytes.

    Whether a method can adapt a quantised base is its class's ``supports_quantization``
    (``AdapterMethod``): PEFT wraps bitsandbytes layers for LoRA and its options that read
    only outputs (DoRA dequantises W once for its norms; O-LoRA is LoRA per task; rsLoRA
    changes only the scale) and VeRA; head_only adapts nothing. ``method`` None checks the
    value and the machine only (the method was checked with the config).
    """
    if quantization is None:
        return
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"model.quantization={quantization!r} is not valid; valid: null, "
            + ", ".join(QUANTIZATIONS)
        )
    if method is not None and not method.supports_quantization:
        raise ValueError(
            f"method={method.name!r} cannot adapt a quantised base (model.quantization="
            f"{quantization!r}): its adapter is built from W, which bitsandbytes stores "
            f"packed ({type(method).__name__}.supports_quantization is False); use a method "
            "whose class supports it (e.g. lora), or model.quantization=null"
        )
    if not cuda_available:
        raise ValueError(
            f"model.quantization={quantization!r} needs a CUDA GPU (bitsandbytes quantises on "
            "the GPU) and this machine has none; use model.quantization=null"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            f"model.quantization={quantization!r} needs bitsandbytes, which is not installed: "
            f"{INSTALL}"
        )


def quantization_config(quantization: str, compute_dtype: Any) -> Any:
    """transformers' ``BitsAndBytesConfig`` for ``4bit`` (NF4, double quantisation, compute
    in ``compute_dtype``) or ``8bit`` (LLM.int8())."""
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)
