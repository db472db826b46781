"""CURLoRA (Fawi 2024, "CURLoRA: Stable LLM Continual Fine-Tuning and Catastrophic
Forgetting Mitigation", https://arxiv.org/abs/2408.14572).

A frozen Linear y = x Wᵀ + b (W: out × in) gets a CUR-structured update

    y = x Wᵀ + b + α · x (C U R)ᵀ,   C = W[:, cols] (out × k),  R = W[rows, :] (k × in)

where cols/rows are sampled once with inverted norm probabilities (``sampling.py``) and
U (k × k, zeros at creation) is the only trainable tensor, kept across tasks.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from curlora import checks
from curlora.adapters.base import (
    PAPER_TARGETS,
    AdapterMethod,
    Shapes,
    check_float,
    check_rank,
    check_seed,
    check_targets,
    module_shapes,
    replace_module,
)
from curlora.adapters.sampling import SAMPLING_MODES, check_sampling_mode, cur_indices, layer_seed


class CURLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus α · C U R, with U (rank × rank) the only parameter.

    Args:
        base_layer: the Linear to adapt (with or without bias); frozen here.
        rank: k, the number of sampled columns and rows; 1 ≤ k ≤ min(out, in).
        alpha: α, the scale of the update (no division by k: the paper's convention).
        sampling: ``inverted`` (paper eq. 4), ``inverted_smoothed`` (reference code),
            ``leverage`` or ``uniform``; see ``curlora.adapters.sampling.SAMPLING_MODES``.
        replace: draw with replacement (the reference code; C and R may repeat columns and
            become rank-deficient). Default False: distinct columns and rows.
        seed: base seed; the draw uses a local generator seeded from (seed, name), so the
            same weights, seed and layer name give the same indices whatever the global
            RNG, and different layers of one model get different draws. None means 0.
        dropout: dropout on the adapter's input during training (the base path sees the
            undropped input, as in PEFT's LoRA).
        name: the layer's module name, used for the per-layer seed and in error messages.

    State: ``U`` (parameter, k × k, float32 whatever the base weight's dtype: under a bf16
    backbone, updates of a bf16 U would mostly round away) and ``col_idx``/``row_idx``
    (persistent int64 buffers, k each). C and R are gathered from the base weight when
    needed, never stored, so a checkpoint is k² floats + 2k ints per layer.

    Forward (fast path, no out × in matrix): since R = W[rows, :],

        x Rᵀ = (x Wᵀ)[..., rows] = (base_out − b)[..., rows]          (..., k)
        delta = ((x Rᵀ) Uᵀ) Cᵀ · α                                      (..., out)

    costing k² + k·out multiply-adds per token on top of the frozen layer (LoRA at the
    same rank: k·in + k·out). The identity needs the adapter to see the base layer's input;
    with dropout active (training and dropout > 0) the direct path
    ((dropout(x) Rᵀ) Uᵀ) Cᵀ · α is used instead, with R gathered (k × in). So it is for a
    layer with a bias in a 16-bit dtype: there base_out − b cancels catastrophically (the
    bias swamps x Rᵀ in bf16's 8 significant bits; 11 % error on the adapter term at bias
    20), so x Rᵀ is computed directly, in float32.

    Under a 16-bit base the adapter term is computed in U's float32 and added to the base
    output in the base's dtype, as PEFT's LoRA does.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        alpha: float = 1.0,
        sampling: str = "inverted",
        replace: bool = False,
        seed: int | None = None,
        dropout: float = 0.0,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"CURLoRALinear wraps an nn.Linear, got {type(base_layer).__name__}")
        check_sampling_mode(sampling)
        out_f, in_f = base_layer.weight.shape
        label = name or f"Linear(in_features={in_f}, out_features={out_f})"
        limit = min(out_f, in_f)
        if not (checks.is_int(rank) and 1 <= rank <= limit):
            raise ValueError(
                f"CURLoRA rank={rank!r} for layer {label} (out={out_f}, in={in_f}) is outside "
                f"1..{limit}; the limit is min(out, in)={limit}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CURLoRA dropout={dropout} for layer {label}; valid: [0, 1)")
        base_layer.requires_grad_(False)
        self.base_layer = base_layer
        self.in_features, self.out_features = in_f, out_f
        self.rank, self.alpha, self.sampling, self.replace = rank, float(alpha), sampling, replace
        self.seed, self.dropout, self.name = seed, float(dropout), name
        weight = base_layer.weight
        cols, rows = cur_indices(weight, rank, sampling, replace, layer_seed(seed, name or ""))
        self.register_buffer("col_idx", cols.to(weight.device))
        self.register_buffer("row_idx", rows.to(weight.device))
        self.U = nn.Parameter(torch.zeros(rank, rank, dtype=torch.float32, device=weight.device))
        # (C, R, U) as they were when merged: unmerge subtracts exactly what merge added.
        self._merged_factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight (out × in); merged with α C U R while ``merged``."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def merged(self) -> bool:
        return self._merged_factors is not None

    def cur_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C: out × k, R: k × in) gathered from the unmerged base weight."""
        if self._merged_factors is not None:
            return self._merged_factors[0], self._merged_factors[1]
        w = self.base_layer.weight
        return w.index_select(1, self.col_idx), w.index_select(0, self.row_idx)

    def delta_weight(self) -> torch.Tensor:
        """α · C U R (out × in) in U's dtype, explicitly. For merging and checks; forward
        never builds it."""
        c, r = self.cur_factors()
        u = self.U
        return self.alpha * (c.to(u.dtype) @ u @ r.to(u.dtype))

    def _needs_direct_path(self, x: torch.Tensor) -> bool:
        if self.training and self.dropout > 0:
            return True  # the adapter sees dropout(x), the base layer x
        low_precision = x.dtype in (torch.float16, torch.bfloat16)
        return self.base_layer.bias is not None and low_precision

    def adapter_input(self, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        """x Rᵀ, (..., k), in U's dtype: from the base output when exact enough, else
        computed directly (dropout, or a bias in a 16-bit dtype; see the class docstring)."""
        u = self.U
        if self._needs_direct_path(x):
            r = self.base_layer.weight.index_select(0, self.row_idx)  # (k, in)
            x_in = F.dropout(x, self.dropout, training=self.training) if self.dropout else x
            return F.linear(x_in.to(u.dtype), r.to(u.dtype))
        h = base_out.index_select(-1, self.row_idx)  # x Rᵀ + b[rows], (..., k)
        if self.base_layer.bias is not None:
            h = h - self.base_layer.bias.index_select(0, self.row_idx)
        return h.to(u.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out)."""
        base_out = self.base_layer(x)
        if self.merged:
            return base_out
        c = self.base_layer.weight.index_select(1, self.col_idx)  # (out, k)
        hu = F.linear(self.adapter_input(x, base_out), self.U)  # (..., k)
        if hu.dtype != base_out.dtype:  # a 16-bit base: the adapter term in float32
            delta = F.linear(hu, c.to(hu.dtype)) * self.alpha  # (..., out)
            return base_out + delta.to(base_out.dtype)
        # base_out + α · (h Uᵀ) Cᵀ as one fused multiply-add over (tokens, out).
        out = torch.addmm(
            base_out.reshape(-1, self.out_features),
            hu.reshape(-1, self.rank),
            c.T,
            alpha=self.alpha,
        )
        return out.view(base_out.shape)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold α C U R into the base weight: forward then costs nothing extra."""
        if self.merged:
            raise RuntimeError(f"CURLoRA layer {self.name or ''} is already merged")
        c, r = self.cur_factors()
        u = self.U.detach().clone()
        weight = self.base_layer.weight
        weight += (self.alpha * (c.to(u.dtype) @ u @ r.to(u.dtype))).to(weight.dtype)
        self._merged_factors = (c, r, u)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract what ``merge`` added: W is restored within floating-point rounding."""
        if self._merged_factors is None:
            raise RuntimeError(f"CURLoRA layer {self.name or ''} is not merged")
        c, r, u = self._merged_factors
        weight = self.base_layer.weight
        weight -= (self.alpha * (c.to(u.dtype) @ u @ r.to(u.dtype))).to(weight.dtype)
        self._merged_factors = None

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, alpha={self.alpha}, sampling={self.sampling}, "
            f"replace={self.replace}, dropout={self.dropout}"
        )


@dataclasses.dataclass
class CURLoRAMethod(AdapterMethod):
    """CURLoRA on the ``target_modules`` Linear layers (https://arxiv.org/abs/2408.14572).

    Fields (``configs/method/curlora.yaml``):
        name: ``curlora``; used in run names and logs.
        lr: the method's default learning rate (``AdapterMethod``).
        rank: k, columns/rows sampled per matrix; trainable parameters are k² per adapted
            matrix (the paper: Mistral-7B q/k/v at k = 16 -> 3 · 32 · 256 = 24,576).
            1 ≤ k ≤ min(out, in) of every adapted matrix.
        alpha: α, the scale of C U R (not divided by k).
        target_modules: module-name suffixes to adapt, PEFT's rule (name equals or ends with
            ``.<suffix>``); each entry must match at least one nn.Linear. Paper: q/k/v.
        sampling: ``inverted`` (paper eq. 4), ``inverted_smoothed`` (reference code's
            1/(p + 0.001), near-uniform on wide matrices), ``leverage``, ``uniform``.
        replace: sample with replacement as the reference code does (duplicates make C, R
            rank-deficient); False draws distinct columns and rows.
        dropout: dropout on the adapter input during training, in [0, 1).
        seed: base of the per-layer seeds (each layer's draw is seeded by (seed, name)).
    """

    name: str = "curlora"
    rank: int = 16
    alpha: float = 1.0
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_TARGETS))
    sampling: str = "inverted"
    replace: bool = False
    dropout: float = 0.0
    seed: int | None = 0

    def starts_at_base(self) -> bool:
        return True  # U starts at zero: α (h·0) Cᵀ adds exact zeros

    def validate(self, shapes: Shapes) -> None:
        names = check_targets(self.name, self.target_modules, shapes)
        check_rank(self.name, self.rank, names, shapes)
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(
                f"method '{self.name}': sampling='{self.sampling}' is not known; "
                f"valid: {list(SAMPLING_MODES)}"
            )
        check_float(self.name, "alpha", self.alpha, float("-inf"), float("inf"))
        check_float(self.name, "dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_seed(self.name, self.seed)
        checks.check_bool("replace", self.replace, context=f"method '{self.name}': ")

    def num_trainable(self, shapes: Shapes) -> int:
        return self.rank**2 * len(check_targets(self.name, self.target_modules, shapes))

    def inject(self, model: nn.Module) -> None:
        shapes = module_shapes(model)
        for n in check_targets(self.name, self.target_modules, shapes):
            layer = CURLoRALinear(
                model.get_submodule(n),
                self.rank,
                self.alpha,
                self.sampling,
                self.replace,
                self.seed,
                self.dropout,
                name=n,
            )
            replace_module(model, n, layer)

    def layer_fingerprint_tensors(self, layer: nn.Module) -> list[torch.Tensor]:
        """C and R themselves: a saved CURLoRA adapter is only U and the indices, so it
        means what it meant only where the same indices gather the same C and R."""
        return list(layer.cur_factors())

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        c, r = layer.cur_factors()
        u = layer.U
        return layer.alpha * (c.to(u.dtype) @ u), r.to(u.dtype)  # (out × k), (k × in)

    def layer_norms(self, layer: nn.Module) -> dict[str, float]:
        return {"u_norm": float(torch.linalg.matrix_norm(layer.U.detach().double()))}
