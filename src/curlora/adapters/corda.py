"""CorDA (Yang et al. 2024, https://arxiv.org/abs/2406.05223) in knowledge-preserving mode,
through PEFT's ``init_lora_weights="corda"``.

CorDA decomposes W·C, C the covariance of the layer's inputs on calibration text, and
builds the LoRA factors from that decomposition; W keeps the residual. In *knowledge-
preserving* mode (``kpm``) the adapter takes the r components with the **smallest**
singular values, so what the calibration text uses most stays in the frozen part: the
same bet as CURLoRA (https://arxiv.org/abs/2408.14572), which adapts through W's low-norm
columns and rows, but weighted by the activations. ``ipm`` takes the largest instead.

Calibration: token ids of the LM corpus handed over by the task loop
(``AdapterMethod.use_calibration``), taken *after* the prefix the perplexity scores, so the
perplexity is never measured on the text the initialisation was fitted to. They run through
the model one window of ``calibration_length`` tokens at a time (PEFT's hook expects batch
1) under ``torch.no_grad``.

Reload and resume: the adapter's state holds, besides A and B, the cropped decomposition
(``corda_U`` out × r, ``corda_S`` r, ``corda_V`` in × r per layer; PEFT's "SVD cache"). A
model that gets the method without calibration (``load_adapter``) injects plain LoRA
layers and, once the saved state is in (:meth:`after_load`), rebuilds the residual base
weight from it exactly as the calibrated injection did. The fingerprint is that of the
original weights, taken before any residual is formed, so a reload checks the base model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from peft import inject_adapter_in_model
from peft.tuners.lora.config import CordaConfig
from peft.tuners.lora.corda import CordaEigens, preprocess_corda
from peft.tuners.tuners_utils import cast_adapter_dtype
from torch import nn

from curlora.adapters.base import (
    check_int,
    check_targets,
    module_shapes,
    weight_fingerprint,
)
from curlora.adapters.lora import ADAPTER_NAME, LoRAMethod, cuda_devices
from curlora.strategies.base import eval_mode

MODES = ("kpm", "ipm")
EIGENS = ("corda_U", "corda_S", "corda_V")


@dataclasses.dataclass
class CordaMethod(LoRAMethod):
    """PEFT LoRA initialised by CorDA; the LoRA fields as ``LoRAMethod``'s.

    Fields (``configs/method/corda.yaml``), besides ``LoRAMethod``'s name:, lr:, rank:,
    alpha:, target_modules:, dropout: and seed::
        mode: ``kpm`` (knowledge-preserving: the adapter takes the smallest components of
            W·C) or ``ipm`` (instruction-previewed: the largest).
        calibration_tokens: corpus tokens the covariance is collected on.
        calibration_length: tokens per calibration forward pass (one window at a time).
    """

    name: str = "corda"
    mode: str = "kpm"
    calibration_tokens: int = 8192
    calibration_length: int = 512

    needs_calibration: ClassVar[bool] = True
    # The factors come from W times the input covariance: W itself, stored packed by bnb.
    supports_quantization: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._calibration: torch.Tensor | None = None  # token ids [N]
        self._residual_built = False  # W holds the residual (calibrated inject or after_load)
        self._base_fingerprint: dict[str, dict[str, Any]] = {}

    def validate(self, shapes: dict[str, tuple[int, int]]) -> None:
        super().validate(shapes)
        if self.mode not in MODES:
            raise ValueError(
                f"method '{self.name}': mode={self.mode!r} is not valid; valid: {MODES}"
            )
        check_int(self.name, "calibration_tokens", self.calibration_tokens, 1)
        check_int(self.name, "calibration_length", self.calibration_length, 1)

    def starts_at_base(self) -> bool:
        return False  # residual + B·A rebuilds W up to rounding only

    def use_calibration(self, token_ids: torch.Tensor) -> None:
        self._calibration = token_ids.reshape(-1)

    def inject(self, model: nn.Module) -> None:
        names = check_targets(self.name, self.target_modules, module_shapes(model))
        self._base_fingerprint = {
            name: weight_fingerprint(model.get_submodule(name).weight) for name in names
        }
        if self._calibration is None:
            # A reload: plain LoRA layers now; after_load rebuilds the residual from the
            # saved decomposition.
            super().inject(model)
            for name in names:
                layer = model.get_submodule(name)
                out_features, in_features = layer.base_layer.weight.shape
                r = layer.r[ADAPTER_NAME]
                shapes = {
                    "corda_U": (out_features, r),
                    "corda_S": (r,),
                    "corda_V": (in_features, r),
                }
                for key, shape in shapes.items():
                    layer.register_buffer(key, torch.zeros(shape))
            return
        config = self.peft_config(names)
        config.init_lora_weights = "corda"
        config.corda_config = CordaConfig(corda_method=self.mode)
        preprocess_corda(model, config, run_model=lambda: self._run_calibration(model))
        eigens = {name: model.get_submodule(name).eigens for name in names}
        saved = {
            name: {"corda_U": e.U_WC.clone(), "corda_S": e.S_WC.clone(), "corda_V": e.V_WC.clone()}
            for name, e in eigens.items()
        }  # PEFT's init scales S in place and deletes the eigens
        with torch.random.fork_rng(devices=cuda_devices(model)):
            torch.manual_seed(0 if self.seed is None else self.seed)
            inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
        cast_adapter_dtype(model, ADAPTER_NAME, autocast_adapter_dtype=True)
        for name, tensors in saved.items():
            layer = model.get_submodule(name)
            for key, tensor in tensors.items():
                layer.register_buffer(key, tensor.float())
        self._residual_built = True

    @torch.no_grad()
    def _run_calibration(self, model: nn.Module) -> None:
        ids = self._calibration
        assert ids is not None
        device = next(model.parameters()).device
        with eval_mode(model):
            for start in range(0, ids.numel(), self.calibration_length):
                window = ids[start : start + self.calibration_length]
                model(input_ids=window.unsqueeze(0).to(device))  # [1, T]: PEFT's hook squeezes 0

    def after_load(self, model: nn.Module) -> None:
        """Form the residual W − s·B₀A₀ from the loaded decomposition (once), keeping the
        loaded A and B."""
        if self._residual_built:
            return
        for layer in self.adapter_layers(model).values():
            a = layer.lora_A[ADAPTER_NAME].weight.detach().clone()
            b = layer.lora_B[ADAPTER_NAME].weight.detach().clone()
            layer.base_layer.eigens = CordaEigens(
                S_WC=layer.corda_S.clone(), U_WC=layer.corda_U.clone(), V_WC=layer.corda_V.clone()
            )
            layer.corda_init(ADAPTER_NAME, "corda")  # sets B₀, A₀ and the residual base
            with torch.no_grad():
                layer.lora_A[ADAPTER_NAME].weight.copy_(a)
                layer.lora_B[ADAPTER_NAME].weight.copy_(b)
        self._residual_built = True

    def fingerprint(self, model: nn.Module) -> dict[str, dict[str, Any]]:
        return dict(self._base_fingerprint)  # the original weights, before the residual
