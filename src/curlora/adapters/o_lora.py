"""O-LoRA (Wang et al. 2023, https://arxiv.org/abs/2310.14152): one LoRA per task, each new
one trained in a subspace orthogonal to the earlier ones.

Every task gets its own PEFT LoRA adapter (a named adapter on each adapted layer). All of
them are active in the forward pass; only the current task's A and B train. Earlier tasks'
adapters are frozen; later tasks' adapters have B = 0 until their task starts, so they add
exact zeros (the same as O-LoRA's "not yet created"). The loss adds

    λ₁ · Σ_layers Σ_{s < t} Σ_ij |(A_s A_tᵀ)_ij|   +   λ₂ · Σ_layers (‖A_t‖_F + ‖B_t‖_F)

for the current task t (A: r × in, so A_s A_tᵀ is r × r): the first term is 0 exactly when
every row of A_t is orthogonal to every row of every earlier A_s. The reference code
(github.com/cmnfriend/O-LoRA) uses the unsquared Frobenius norm (``torch.norm``) in the
second term, and so does this; its scripts set λ₁ = 0.5 and λ₂ = 0 and adapt q and v.

A baseline for CURLoRA (https://arxiv.org/abs/2408.14572): both keep new learning away
from what is already there, O-LoRA from earlier tasks' subspaces, CURLoRA from W's
dominant directions.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from peft import inject_adapter_in_model
from peft.tuners.tuners_utils import cast_adapter_dtype
from torch import nn

from curlora.adapters.base import check_float, check_targets, module_shapes
from curlora.adapters.lora import LoRAMethod, cuda_devices


@dataclasses.dataclass
class OLoRAMethod(LoRAMethod):
    """O-LoRA: a PEFT LoRA adapter per task, orthogonality penalty between their A's.

    Its losses (orthogonality, L2) read only the adapters' A and B, so they are the same
    under both heads; ``head=words`` is the protocol O-LoRA was designed for (the model
    answers in words, the LM head frozen), ``head=linear`` the paper's heads.

    Fields (``configs/method/o_lora.yaml``), besides ``LoRAMethod``'s name:, lr:, rank:,
    alpha:, target_modules:, dropout: and seed: (the last five apply to every task's
    adapter):
        tasks: the run's task names in training order (``${tasks}``); adapter ``t`` is
            named after task ``t``.
        lambda_orth: λ₁, weight of Σ|A_s A_tᵀ| (O-LoRA's ``lamda_1``; paper: 0.5).
        lambda_l2: λ₂, weight of ‖A_t‖_F + ‖B_t‖_F (O-LoRA's ``lamda_2``; paper: 0).

    ``num_trainable`` counts one task's adapter (what trains at a time); the model holds
    ``len(tasks)`` of them.
    """

    name: str = "o_lora"
    target_modules: list[str] = dataclasses.field(default_factory=lambda: ["q_proj", "v_proj"])
    tasks: list[str] = dataclasses.field(default_factory=list)
    lambda_orth: float = 0.5
    lambda_l2: float = 0.0

    def __post_init__(self) -> None:
        self._current: str | None = None  # the task whose adapter trains (begin_task)
        # The adapted layers, found once at inject: extra_loss runs every training step and
        # must not walk the whole model each time.
        self._layers: dict[str, nn.Module] = {}

    def validate(self, shapes: dict[str, tuple[int, int]]) -> None:
        super().validate(shapes)
        tasks = list(self.tasks) if isinstance(self.tasks, list | tuple) else None
        if (
            not tasks
            or not all(isinstance(t, str) and t.isidentifier() for t in tasks)
            or len(set(tasks)) != len(tasks)
        ):
            raise ValueError(
                f"method '{self.name}': tasks={self.tasks!r} must be a non-empty list of "
                "distinct task names usable as identifiers (one adapter each), e.g. ${tasks}"
            )
        check_float(self.name, "lambda_orth", self.lambda_orth, 0.0, float("inf"))
        check_float(self.name, "lambda_l2", self.lambda_l2, 0.0, float("inf"))

    def inject(self, model: nn.Module) -> None:
        names = check_targets(self.name, self.target_modules, module_shapes(model))
        config = self.peft_config(names)
        # One forked RNG for all adapters: each task's A is a different draw, reproducibly.
        with torch.random.fork_rng(devices=cuda_devices(model)):
            torch.manual_seed(0 if self.seed is None else self.seed)
            with warnings.catch_warnings():  # several adapters in one model is the point
                warnings.filterwarnings("ignore", "Already found a `peft_config`")
                for task in self.tasks:
                    inject_adapter_in_model(config, model, adapter_name=task)
        for task in self.tasks:
            cast_adapter_dtype(model, task, autocast_adapter_dtype=True)
        self._layers = self.adapter_layers(model)
        for layer in self._layers.values():
            layer.set_adapter(list(self.tasks))  # all active; later ones add B·A = 0
        self._current = self.tasks[0]

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The current task's A and B in every adapted layer."""
        task = self._current or self.tasks[0]
        return [
            (f"{name}.lora_{factor}.{task}.weight", getattr(layer, f"lora_{factor}")[task].weight)
            for name, layer in self.adapter_layers(model).items()
            for factor in ("A", "B")
        ]

    def begin_task(self, model: nn.Module, task: str) -> None:
        """Train ``task``'s adapter from now on; every other adapter is frozen."""
        if task not in self.tasks:
            raise ValueError(f"method '{self.name}': unknown task '{task}'; tasks: {self.tasks}")
        self._current = task
        keep = {id(p) for _, p in self.trainable_parameters(model)}
        for layer in self.adapter_layers(model).values():
            for pname, p in layer.named_parameters():
                if not pname.startswith("base_layer."):
                    p.requires_grad_(id(p) in keep)

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """λ₁ Σ|A_s A_tᵀ| over earlier tasks s + λ₂ (‖A_t‖ + ‖B_t‖), summed over layers."""
        task = self._current or self.tasks[0]
        earlier = self.tasks[: self.tasks.index(task)]
        if not earlier and self.lambda_l2 == 0:
            return None
        total: torch.Tensor | None = None
        for layer in self._layers.values():
            a_t = layer.lora_A[task].weight  # (r, in)
            term = a_t.new_zeros(())
            for s in earlier:
                a_s = layer.lora_A[s].weight.detach()  # (r, in), frozen
                term = term + self.lambda_orth * (a_s @ a_t.T).abs().sum()  # (r, r)
            if self.lambda_l2:
                b_t = layer.lora_B[task].weight  # (out, r)
                term = term + self.lambda_l2 * (a_t.norm() + b_t.norm())
            total = term if total is None else total + term
        return total

    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """ΔW = Σ_t s·B_t A_t = [s·B_0 … s·B_T] · [A_0; …; A_T]: (out × T·r), (T·r × in)."""
        p = torch.cat([layer.scaling[t] * layer.lora_B[t].weight for t in self.tasks], dim=1)
        q = torch.cat([layer.lora_A[t].weight for t in self.tasks], dim=0)
        return p, q

    def layer_norms(self, layer: nn.Module) -> dict[str, float]:
        task = self._current or self.tasks[0]
        a = layer.lora_A[task].weight.detach().double()
        b = layer.lora_B[task].weight.detach().double()
        return {
            "a_norm": float(torch.linalg.matrix_norm(a)),
            "b_norm": float(torch.linalg.matrix_norm(b)),
        }
