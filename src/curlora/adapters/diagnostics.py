"""Per-layer adapter scalars for logging."""

from __future__ import annotations

import torch
from torch import nn

from curlora.adapters.base import require_method


@torch.no_grad()
def adapter_diagnostics(model: nn.Module) -> dict[str, float]:
    """Metric-ready scalars per adapted layer, keyed ``adapter/<module name>/<what>``.

    - ``delta_rel``: ‖ΔW‖_F / ‖W‖_F (every method with adapter layers; computed from the
      low-rank factors, never forming ΔW for small ranks);
    - ``u_norm``: ‖U‖_F (CURLoRA); ``a_norm``, ``b_norm``: ‖A‖_F, ‖B‖_F (both LoRAs).
    head_only and full have no adapter layers and return {}.
    """
    return require_method(model).diagnostics(model)
