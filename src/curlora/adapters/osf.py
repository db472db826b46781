"""Orthogonal Subspace Fine-tuning (Nayak et al. 2025, "Sculpting Subspaces: Constrained
Full Fine-Tuning in LLMs for Continual Learning", https://arxiv.org/abs/2504.07097), as PEFT
ships it (``peft.OSFConfig``); compared against CURLoRA (https://arxiv.org/abs/2408.14572).

Each adapted W = U Σ Vᵀ is split by SVD: the top ``effective_rank`` singular directions are
frozen ("high" subspace), the rest (U_low, S_low, V_low) train, with gradient hooks
projecting their updates orthogonal to the frozen subspace. PEFT's OSF layer adds
ΔW = U_low S_low V_low − U_low⁰ S_low⁰ V_low⁰ (⁰: the values at creation) to the frozen
base layer, so the model is unchanged at creation up to rounding: ΔW is evaluated as one
2r-wide product whose two halves cancel only to within float rounding (~1e-7 relative).

Injection is in place with ``peft.inject_adapter_in_model`` (the OSF tuner keeps no shared
state, so PEFT allows it). PEFT stores U_low⁰ etc. as *non-persistent* buffers and
recomputes them by SVD when it loads an adapter; ``adapter_state_dict`` saves them instead,
because an SVD recomputed elsewhere may flip singular-vector signs, which would corrupt ΔW.
"""

from __future__ import annotations

import dataclasses

import torch
from peft import OSFConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import cast_adapter_dtype
from torch import nn

from curlora import checks
from curlora.adapters.base import (
    PAPER_TARGETS,
    AdapterMethod,
    Shapes,
    check_targets,
    module_shapes,
)

ADAPTER_NAME = "default"


def resolve_effective_rank(value: int | float | None, min_dim: int) -> int:
    """PEFT's rule (``OSFModel._create_and_replace``): None -> min_dim // 2; a float in
    (0, 1] -> int(min_dim · value); an int -> itself clamped to [0, min_dim]."""
    if value is None:
        return min_dim // 2
    if isinstance(value, float) and 0 < value <= 1:
        return int(min_dim * value)
    return max(min(min_dim, int(value)), 0)


@dataclasses.dataclass
class OSFMethod(AdapterMethod):
    """PEFT's OSF on ``target_modules``: constrained full-rank fine-tuning.

    Fields (``configs/method/osf.yaml``):
        name: ``osf``.
        lr: the method's default learning rate (``AdapterMethod``).
        effective_rank: the preserved (frozen) rank per matrix: an int, a fraction in
            (0, 1) of min(out, in), or None for PEFT's default of half. Trainable rank
            t = min(out, in) − effective_rank must be ≥ 1; trainable parameters are
            t · (out + in + 1) per matrix (U_low, V_low and the t singular values). Not
            the top-level ``rank``: OSF's rank counts what is frozen, not what trains.
        target_modules: module-name suffixes to adapt (PEFT's rule; each entry must match
            an nn.Linear). Default q/k/v, the set CURLoRA adapts, for a like-for-like
            comparison (PEFT's own default for Llama is every projection).
    """

    name: str = "osf"
    effective_rank: int | float | None = None
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_TARGETS))

    def _ranks(self, shapes: Shapes) -> dict[str, tuple[int, int]]:
        """(effective, trainable) rank per matched module, after validation."""
        ranks = {}
        for n in check_targets(self.name, self.target_modules, shapes):
            eff = resolve_effective_rank(self.effective_rank, min(shapes[n]))
            ranks[n] = (eff, min(shapes[n]) - eff)
        return ranks

    def validate(self, shapes: Shapes) -> None:
        er = self.effective_rank
        kind_ok = er is None or (checks.is_real(er) and er > 0)
        if not kind_ok or (isinstance(er, float) and er > 1):
            raise ValueError(
                f"method '{self.name}': effective_rank={er!r} is not valid; valid: null "
                "(half of min(out, in)), a fraction in (0, 1), or an integer ≥ 1"
            )
        for n, (eff, trainable) in self._ranks(shapes).items():
            m = min(shapes[n])
            if eff < 1 or trainable < 1:
                raise ValueError(
                    f"method '{self.name}': effective_rank={er!r} resolves to {eff} for {n} "
                    f"with min(out, in)={m}; valid: 1..{m - 1} (so that at least one "
                    "direction is frozen and one trains)"
                )

    def num_trainable(self, shapes: Shapes) -> int:
        return sum(
            t * (shapes[n][0] + shapes[n][1] + 1) for n, (_, t) in self._ranks(shapes).items()
        )

    def inject(self, model: nn.Module) -> None:
        names = check_targets(self.name, self.target_modules, module_shapes(model))
        # Full module names, so PEFT adapts exactly the Linear layers validate() matched.
        config = OSFConfig(effective_rank=self.effective_rank, target_modules=names)
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
        upcast = any(
            p.dtype in (torch.float16, torch.bfloat16)
            for layer in self.adapter_layers(model).values()
            for p in layer.osf_svd_params[ADAPTER_NAME].values()
        )
        if upcast:
            # float32 factors under a 16-bit backbone (see LoRAMethod.inject). The cast
            # replaces the Parameter objects, so OSF's gradient-projection hooks, which
            # hang on the old ones, are attached again.
            cast_adapter_dtype(model, ADAPTER_NAME, autocast_adapter_dtype=True)
            for layer in self.adapter_layers(model).values():
                for handle in layer.hook_handles:
                    handle.remove()
                layer.hook_handles = []
                layer._attach_hooks(ADAPTER_NAME)

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        p = layer.osf_svd_params[ADAPTER_NAME]
        u0 = layer._osf_U_low_init[ADAPTER_NAME]
        s0 = layer._osf_S_low_init[ADAPTER_NAME]
        v0 = layer._osf_V_low_init[ADAPTER_NAME]
        # ΔW = [U S, −U⁰ S⁰] · [V; V⁰]: (out × 2t) · (2t × in), as PEFT's forward has it.
        left = torch.cat([p["U_low"] * p["S_low"], -(u0 * s0)], dim=1)
        return left, torch.cat([p["V_low"], v0], dim=0)
