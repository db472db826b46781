"""InfLoRA (Liang & Li, CVPR 2024, "InfLoRA: Interference-Free Low-Rank Adaptation for
Continual Learning", https://arxiv.org/abs/2404.00228): a new LoRA branch per task whose
input-side factor is fixed before the task from the task's inputs, away from the subspace
earlier tasks' inputs span, so that training it cannot change the layer's output on them.

Notation of the paper, for a layer y = W x (x: in): branch t adds A_t B_t x with
B_t (r × in) fixed and A_t (out × r) trained from zero. Here the branches are PEFT LoRA
adapters, one per task (as O-LoRA), so B_t is PEFT's ``lora_A[t]`` and A_t PEFT's
``lora_B[t]``, with PEFT's scale s. Before task t trains, for every adapted layer:

1. H_t: the layer's inputs on task t's first ``samples`` training examples (every
   non-padding token), as the covariance C_t = H_t H_tᵀ (in × in).
2. M: an orthonormal basis (in × k) of the earlier tasks' inputs, kept as GPM/DualGPM keep
   it (Saha et al. 2021): after task t − 1 (computed when task t starts, with the model as
   task t − 1 left it), its inputs' residual Ĉ = (I − MMᵀ) C (I − MMᵀ) is
   eigendecomposed (λ₁ ≥ λ₂ ≥ …, vectors u_i) and the fewest leading u_i are added to M
   such that tr(MᵀCM) + Σ_{i≤k} λ_i ≥ ε · tr(C)  (ε = ``threshold``, the share of the
   task's input energy the memory must hold). DualGPM stores M's complement instead when
   that is smaller: a memory saving with the same projection, not done here.
3. B_t = the top-r eigenvectors of (I − MMᵀ) C_t (I − MMᵀ), as rows (the paper's design:
   B_t spans the part of the new task's input/gradient subspace orthogonal to the old one).
   Hence B_t M = 0 and for an input x in span(M) the branch adds s A_t B_t x = 0 whatever A_t
   learns: no interference with what earlier tasks' inputs span (up to the ε left out).

Only A_t (``lora_B[t]``) trains; earlier branches are frozen and active; later branches add
exact zeros until their task (B_t is 0 until it is set). M lives in each adapted layer as
the buffers ``inflora_memory`` (in × in, the first ``inflora_rank`` columns used) and
``inflora_folded`` (how many tasks it holds), so checkpoints, resume and ``adapter/`` carry
it; that is in² floats per adapted layer (SmolLM2's q/v: 60 × 576² · 4 B ≈ 80 MB).

The data arrive through :meth:`AdapterMethod.prepare_task` (called at the start of each
task's training, again when a run resumes inside it: a B_t already set is kept). A
strategy that resets the adapter at each task start (``separate``, ``merge``) resets the
memory with it; it is then rebuilt from the earlier tasks' inputs through the reset model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from curlora import checks
from curlora.adapters.base import Shapes, check_targets
from curlora.adapters.o_lora import OLoRAMethod

MEMORY, RANK, FOLDED = "inflora_memory", "inflora_rank", "inflora_folded"


def complement(basis: torch.Tensor) -> torch.Tensor:
    """I − MMᵀ (in × in): the projection onto the complement of span(M), M (in × k)."""
    return torch.eye(basis.shape[0], dtype=basis.dtype, device=basis.device) - basis @ basis.T


def projected(cov: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(I − MMᵀ) C (I − MMᵀ) for C (in × in) and an orthonormal basis M (in × k)."""
    residual = complement(basis)
    return residual @ cov @ residual


def top_eigenvectors(sym: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` largest eigenvalues of a symmetric matrix, descending, and their
    eigenvectors as columns: ([count], [in, count])."""
    values, vectors = torch.linalg.eigh(sym)  # ascending
    order = torch.argsort(values, descending=True)[:count]
    return values[order], vectors[:, order]


def input_factor(cov: torch.Tensor, basis: torch.Tensor, rank: int) -> torch.Tensor:
    """B_t (rank × in): the top-``rank`` directions of C projected off span(M), as rows.

    Projected once more onto span(M)'s complement: when fewer than ``rank`` directions are
    left outside span(M), eigenvalue-0 eigenvectors may lie anywhere, and B_t M = 0 must
    hold all the same (those rows then shrink or vanish)."""
    _, vectors = top_eigenvectors(projected(cov, basis), rank)
    return vectors.T @ complement(basis)  # (rank, in)


def grow_basis(cov: torch.Tensor, basis: torch.Tensor, threshold: float) -> torch.Tensor:
    """M extended by the fewest leading directions of C's residual that bring the share of
    tr(C) inside span(M) to ``threshold`` (GPM's criterion): (in, k) → (in, k + added)."""
    total = torch.trace(cov)
    if total <= 0:
        return basis
    kept = torch.trace(basis.T @ cov @ basis)
    values, vectors = top_eigenvectors(projected(cov, basis), cov.shape[0] - basis.shape[1])
    needed = threshold * total - kept
    if needed <= 0:
        return basis
    reach = torch.cumsum(values.clamp_min(0), dim=0)
    added = int(torch.searchsorted(reach, needed).item()) + 1  # first index reaching it
    return torch.cat([basis, vectors[:, : min(added, values.shape[0])]], dim=1)


@dataclasses.dataclass
class InfLoRAMethod(OLoRAMethod):
    """InfLoRA: a PEFT LoRA branch per task, its input factor fixed from the task's inputs
    off the earlier tasks' input subspace, only its output factor training.

    Fields (``configs/method/inflora.yaml``): O-LoRA's (``OLoRAMethod``: name:, lr:, rank:,
    alpha:, target_modules:, dropout:, seed:, tasks:, lambda_orth:, lambda_l2:; the two
    penalties 0 by default here), and
        samples: training examples of a task whose layer inputs are read (the first ones,
            in the task's order), ≥ 1.
        threshold: ε ∈ (0, 1], the share of each task's input energy the memory keeps.
    """

    name: str = "inflora"
    lambda_orth: float = 0.0
    samples: int = 64
    threshold: float = 0.95

    def validate(self, shapes: Shapes) -> None:
        super().validate(shapes)
        checks.check_int("samples", self.samples, 1, context=f"method '{self.name}': ")
        checks.check_real(
            "threshold", self.threshold, 0.0, 1.0, low_open=True, context=f"method '{self.name}': "
        )

    def num_trainable(self, shapes: Shapes) -> int:
        names = check_targets(self.name, self.target_modules, shapes)
        return sum(self.rank * shapes[n][0] for n in names)  # A_t: out × r per matrix

    def inject(self, model: nn.Module) -> None:
        super().inject(model)
        with torch.no_grad():
            for layer in self._layers.values():
                for task in self.tasks:  # unset until its task: the branch adds exact zeros
                    layer.lora_A[task].weight.zero_()
                width = layer.in_features  # PEFT's: also right for a packed 4-bit weight
                device = layer.lora_A[self.tasks[0]].weight.device
                layer.register_buffer(MEMORY, torch.zeros(width, width, device=device))
                layer.register_buffer(RANK, torch.zeros((), dtype=torch.long, device=device))
                layer.register_buffer(FOLDED, torch.zeros((), dtype=torch.long, device=device))

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The current task's A_t (PEFT's ``lora_B``) in every adapted layer."""
        task = self._current or self.tasks[0]
        return [
            (f"{name}.lora_B.{task}.weight", layer.lora_B[task].weight)
            for name, layer in self.adapter_layers(model).items()
        ]

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        if self.lambda_orth == 0 and self.lambda_l2 == 0:
            return None  # InfLoRA proper: no penalty
        return super().extra_loss(model)

    # ------------------------------------------------------------------ the data
    def prepare_task(self, model: nn.Module, task: str, data: Any) -> None:
        """Fold the finished tasks' inputs into M, then set B_t (module docstring)."""
        if task not in self.tasks:
            raise ValueError(f"method '{self.name}': unknown task '{task}'; tasks: {self.tasks}")
        index = self.tasks.index(task)
        layers = self._layers
        if all(bool(layer.lora_A[task].weight.any()) for layer in layers.values()):
            return  # resumed inside the task: B_t and M are the checkpoint's
        if data is None or not all(hasattr(data, a) for a in ("train_examples", "collate")):
            raise RuntimeError(
                f"method '{self.name}' needs the task data (train_examples, collate) at the "
                f"start of each task; got {type(data).__name__}"
            )
        folded = int(getattr(next(iter(layers.values())), FOLDED))
        for earlier in self.tasks[folded:index]:
            covs = self.input_covariances(model, data, earlier)
            for name, layer in layers.items():  # buffers: no gradients involved
                rank = int(getattr(layer, RANK))
                memory = getattr(layer, MEMORY)
                basis = memory[:, :rank].double()
                grown = grow_basis(covs[name].to(basis.device), basis, self.threshold)
                memory[:, : grown.shape[1]] = grown.to(memory.dtype)
                getattr(layer, RANK).fill_(grown.shape[1])
                getattr(layer, FOLDED).add_(1)
        covs = self.input_covariances(model, data, task)
        with torch.no_grad():
            for name, layer in layers.items():
                basis = getattr(layer, MEMORY)[:, : int(getattr(layer, RANK))].double()
                factor = input_factor(covs[name].to(basis.device), basis, self.rank)  # (r, in)
                weight = layer.lora_A[task].weight
                weight.copy_(factor.to(weight.dtype))

    @torch.no_grad()
    def input_covariances(self, model: nn.Module, data: Any, task: str) -> dict[str, torch.Tensor]:
        """C = Σ x xᵀ (in × in, float64) of each adapted layer's inputs x over the
        non-padding tokens of ``task``'s first ``samples`` training examples."""
        examples = list(data.train_examples(task))[: self.samples]
        device = next(model.parameters()).device
        covs = {
            name: torch.zeros(
                layer.in_features, layer.in_features, dtype=torch.float64, device=device
            )
            for name, layer in self._layers.items()
        }
        mask: list[torch.Tensor] = []  # the current batch's attention mask, [B, T]

        def recorder(name: str) -> Callable[[nn.Module, tuple], None]:
            def record(layer: nn.Module, args: tuple) -> None:
                x = args[0][mask[0].bool()].double()  # [B, T, in] → [tokens, in]
                covs[name] += x.T @ x

            return record

        handles = [
            layer.register_forward_pre_hook(recorder(name)) for name, layer in self._layers.items()
        ]
        modes = [(m, m.training) for m in model.modules()]
        model.eval()  # no dropout while reading the inputs
        decoder = getattr(model, model.base_model_prefix)
        try:
            for start in range(0, len(examples), 8):
                batch = data.collate(examples[start : start + 8])
                mask[:] = [batch["attention_mask"].to(device)]
                decoder(input_ids=batch["input_ids"].to(device), attention_mask=mask[0])
        finally:
            for handle in handles:
                handle.remove()
            for m, flag in modes:
                m.training = flag
        return covs
