"""Adapters: what in the backbone trains, and how it is parameterised.

Methods are built from ``configs/method/<name>.yaml`` through ``_target_``; see
``curlora.adapters.base.AdapterMethod`` for the extension point.
"""

from curlora.adapters.base import AdapterMethod, applied_method, module_shapes
from curlora.adapters.build import build_method
from curlora.adapters.curlora import CURLoRALinear
from curlora.adapters.diagnostics import adapter_diagnostics
from curlora.adapters.inject import apply_adapter, count_trainable
from curlora.adapters.lora_paper import LoRAPaperLinear
from curlora.adapters.sampling import SAMPLING_MODES
from curlora.adapters.saving import load_adapter, save_adapter
from curlora.adapters.state import adapter_state_dict, load_adapter_state_dict
from curlora.adapters.validation import linear_shapes, validate_method

__all__ = [
    "SAMPLING_MODES",
    "AdapterMethod",
    "CURLoRALinear",
    "LoRAPaperLinear",
    "adapter_diagnostics",
    "adapter_state_dict",
    "applied_method",
    "apply_adapter",
    "build_method",
    "count_trainable",
    "linear_shapes",
    "load_adapter",
    "load_adapter_state_dict",
    "module_shapes",
    "save_adapter",
    "validate_method",
]
