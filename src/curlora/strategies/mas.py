"""Memory Aware Synapses (Aljundi et al. 2018, arXiv 1711.09601), the global (ℓ2) version.

After each task the importance of every parameter is how much the squared ℓ2 norm of the
model's output moves when the parameter moves, averaged over the task's training inputs
(paper Eq. 2 and 4; no labels are used):

    Ω_k^new = 1/N · Σ_n | ∂ ‖F(x_n; θ)‖₂² / ∂θ_k |

``F(x_n)`` is the output of the task's own head, the logits ``[C]`` of one example: a
gradient of one example at a time (a batch of 1), since the absolute value of a batch's
summed gradient is not the sum of the examples' absolute gradients. Importances accumulate
over tasks and the anchor is the parameters after the latest task (the authors' code,
rahafaljundi/MAS-Memory-Aware-Synapses, ``accumelate_reg_params``: Ω ← Ω_prev + Ω_new,
``init_val`` ← θ at the start of the next task). Every later training batch adds (Eq. 3)

    λ · Σ_k Ω_k · (θ_k − θ*_k)²

Which parameters: the trainable ones except task heads (as EWC and SI: a past head gets no
gradient from later tasks). The importance pass runs in eval mode and writes no ``.grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from curlora.strategies.base import (
    Batch,
    ContinualModel,
    Strategy,
    TaskData,
    check_float,
    check_int,
    head_param_ids,
    new_generator,
    require_datamodule,
)
from curlora.strategies.importance import mean_per_example_gradient, quadratic_penalty

Tensors = dict[str, torch.Tensor]


def output_sensitivity(
    module: ContinualModel,
    task: str,
    examples: Sequence[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    named_params: Sequence[tuple[str, torch.nn.Parameter]],
    n_samples: int | None,
    generator: torch.Generator,
) -> Tensors:
    """1/N Σ_n |∂‖logits_n‖₂²/∂θ| of ``named_params``: {name: Float32[param shape]}.

    ``N = min(n_samples, len(examples))`` examples drawn without replacement with
    ``generator`` (all when ``n_samples`` is None), each scored alone by ``task``'s head
    (logits ``[1, C]``). Parameters the output does not reach get exact zeros.
    """
    return mean_per_example_gradient(
        module, task, examples, collate, named_params, n_samples, generator,
        lambda logits, _batch: logits.pow(2).sum(),  # ‖F(x)‖₂²
        torch.abs,
    )  # fmt: skip


class MAS(Strategy):
    """Memory Aware Synapses: a pull towards the last task's parameters, weighted by how
    sensitive the output is to each.

    "The output" is ``task_logits``: the task's linear head's logits under ``head=linear``,
    its label-word logits at the answer position under ``head=words``.

    Args:
        mas_lambda: λ ≥ 0, the penalty weight (Eq. 3 has no ½). Default 1.0, not tuned
            here: sweep it (orders of magnitude).
        samples: training examples per task for Ω (≥ 1; None: all). Default 200, as EWC's
            Fisher: a seeded random fifth of a 1000-example task, one forward+backward of
            a single example each.
        seed: seeds the local generator that picks the examples (config: ``${seed}``).
    """

    name = "mas"

    def __init__(self, mas_lambda: float = 1.0, samples: int | None = 200, seed: int = 0) -> None:
        self.lambda_ = check_float("mas_lambda", mas_lambda, 0.0)
        self.samples = None if samples is None else check_int("samples", samples, 1)
        self.seed = check_int("seed", seed, 0)
        self._rng = new_generator(self.seed)
        self._omega: Tensors = {}  # parameter name -> Ω, Float32 of the parameter's shape
        self._anchor: Tensors = {}  # parameter name -> θ* after the latest task
        self._tasks: list[str] = []

    def penalised_parameters(self, module: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """The trainable parameters MAS measures and penalises: all but the task heads."""
        heads = head_param_ids(module)
        return [(n, p) for n, p in module.trainable_named_parameters() if id(p) not in heads]

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Nothing to do yet; fail now rather than after training when there is no datamodule."""
        require_datamodule(self.name, "on_task_start", datamodule)

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Ω ← Ω + Ω_new on ``task``'s training inputs, θ* ← θ (once per task)."""
        if task in self._tasks:
            return  # already consolidated (a resumed run repeating the hook)
        data = require_datamodule(self.name, "on_task_end", datamodule)
        named = self.penalised_parameters(module)
        if named:
            new = output_sensitivity(
                module,
                task,
                data.train_examples(task),
                data.collate,
                named,
                self.samples,
                self._rng,
            )
            for name, omega in new.items():
                old = self._omega.get(name)
                self._omega[name] = omega if old is None else old.to(omega.device) + omega
            self._anchor.update({n: p.detach().float().clone() for n, p in named})
        self._tasks.append(task)

    def extra_loss(
        self, module: ContinualModel, task: str, batch: Batch, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """λ · Σ_k Ω_k (θ_k − θ*_k)² as a 0-dim float32 tensor; None before any task ended."""
        if not self._omega or self.lambda_ == 0.0:
            return None
        params = dict(self.penalised_parameters(module))
        total = quadratic_penalty(params, self._omega, self._anchor)
        return None if total is None else self.lambda_ * total

    def state_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self._tasks),
            "omega": dict(self._omega),
            "anchor": dict(self._anchor),
            "rng": self._rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._tasks = list(state["tasks"])
        self._omega = dict(state["omega"])
        self._anchor = dict(state["anchor"])
        self._rng.set_state(state["rng"].cpu())

    def importance(self) -> Tensors:
        """Ω by parameter name (read-only copies), for tests and analysis."""
        return {n: t.clone() for n, t in self._omega.items()}
