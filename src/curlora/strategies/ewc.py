"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, arXiv 1612.00796), offline and online.

After each task ``s`` the diagonal Fisher information ``F_s`` of the trainable parameters and
a snapshot ``θ*_s`` are stored; every later training batch adds

    offline:  λ/2 · Σ_{s < t} Σ_i F_{s,i} · (θ_i − θ*_{s,i})²        (one term per past task)
    online:   λ/2 · Σ_i F̃_i · (θ_i − θ*_i)²,  F̃ ← γ · F̃ + F_s,  θ* ← θ after task s

(online EWC: Schwarz et al. 2018, "Progress & Compress", arXiv 1805.06370, Sec. 3.1; one
running Fisher and the latest parameters instead of one pair per task).

Fisher (per parameter, a mean over ``n`` examples of per-example squared gradients):

    F_i = 1/n · Σ_k ( ∂ log p(y_k | x_k; θ) / ∂θ_i )²

``y_k`` is drawn from the model's own predictive distribution ``p(· | x_k)`` by default (the
true Fisher, the one EWC's Laplace argument needs) or is the dataset label when
``empirical`` (the "empirical Fisher"; Kunstner et al. 2019, arXiv 1905.12558, on why the
two differ). Gradients are taken one example at a time (a batch of 1): a gradient of a
batch mean squared is not a mean of squared per-example gradients. The cost is ``n``
forward+backward passes of one example per task.

Which parameters are penalised: the trainable ones (``module.trainable_named_parameters()``)
except task heads. A head only enters its own task's loss; under EWC a past head receives
no gradient from later tasks and so stays exactly at its θ* with no penalty, while a zero
penalty gradient on it would hand it to the optimizer (weight decay, momentum) every step.
``include_heads: true`` penalises past heads too (the textbook all-parameters form); the
current task's own head is never penalised (its Fisher under past tasks is zero anyway: it
does not enter their logits). With ``method=head_only`` (only heads train) EWC therefore
adds nothing unless ``include_heads``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from curlora.strategies.base import (
    Batch,
    ContinualModel,
    Strategy,
    TaskData,
    check_float,
    check_int,
    head_param_ids,
    module_device,
    new_generator,
    require_datamodule,
)
from curlora.strategies.importance import mean_per_example_gradient, quadratic_penalty

ONLINE_KEY = "online"  # the single key of the running Fisher / anchor in online mode


def estimate_fisher(
    module: ContinualModel,
    task: str,
    examples: Sequence[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    named_params: Sequence[tuple[str, torch.nn.Parameter]],
    n_samples: int | None,
    empirical: bool,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``named_params`` under task ``task``'s head: {name: Float32[shape]}.

    Draws ``min(n_samples, len(examples))`` examples without replacement with ``generator``
    (all when ``n_samples`` is None), then for each one: logits ``[1, C]`` → label (sampled
    from ``softmax(logits)`` with ``generator``, or the true label when ``empirical``) →
    ``torch.autograd.grad`` of its negative log-likelihood → squared gradient accumulated in
    float32. Parameters the loss does not reach get exact zeros. Runs in eval mode (no
    dropout: the Fisher of the deterministic model, and no draw from the global RNG) and
    never writes ``.grad``.
    """
    device = module_device(module)

    def nll(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=-1)  # [1, C]
        if empirical:
            label = batch["labels"].view(1)
        else:
            probs = log_probs.detach().exp().cpu()
            label = torch.multinomial(probs, 1, generator=generator).view(1).to(device)
        return -log_probs.gather(1, label.view(1, 1)).sum()

    return mean_per_example_gradient(
        module, task, examples, collate, named_params, n_samples, generator, nll,
        lambda g: g.pow(2),
    )  # fmt: skip


class EWC(Strategy):
    """Elastic Weight Consolidation: a quadratic pull towards each past task's parameters.

    The Fisher is that of the head's class distribution ``softmax(task_logits)``: under
    ``head=linear`` the task's linear head; under ``head=words`` the label-word logits at
    the answer position (the distribution over the task's words, the frozen LM head's rows),
    with labels sampled from it (or the true word's class when ``empirical``). There is no
    head parameter under ``words``, so ``include_heads`` changes nothing there.

    Args:
        ewc_lambda: λ, the penalty weight (≥ 0). Default 1.0: with the task loss a mean over
            examples and F a mean over examples, the Laplace approximation of the previous
            task's posterior gives λ = N_prev / N_current, which is 1 for this project's
            equal-size tasks (1000 training examples each, as in the paper). Not tuned;
            sweep it (orders of magnitude) in an ``hparams_search`` config.
        fisher_samples: examples per task for the Fisher (≥ 1; None: all). Default 200:
            a seeded random fifth of a 1000-example task; one forward+backward of a single
            example each, roughly 1–2 minutes per task for SmolLM2-135M on two CPU cores
            (an estimate from the measured 3–4 s per 8 × 128-token batch of SmolLM2-135M on
            two CPU cores, not itself a measurement).
        empirical: False (default) samples labels from the model: the true Fisher. True
            uses the dataset labels (empirical Fisher).
        online: False (default): one (F, θ*) pair per past task, as in Kirkpatrick et al.
            True: online EWC (Schwarz et al. 2018) with one running Fisher.
        gamma: online EWC's decay γ ∈ (0, 1] of the running Fisher; default 1.0 (no decay,
            every task counts equally). Setting γ ≠ 1 without ``online`` is an error rather
            than silently ignored.
        include_heads: False (default): heads are not penalised (see the module docstring).
            True: past tasks' heads are penalised as well.
        seed: seeds the local generator that picks the Fisher examples and samples labels
            (config: ``${seed}``), so the estimate is reproducible.
    """

    name = "ewc"

    def __init__(
        self,
        ewc_lambda: float = 1.0,
        fisher_samples: int | None = 200,
        empirical: bool = False,
        online: bool = False,
        gamma: float = 1.0,
        include_heads: bool = False,
        seed: int = 0,
    ) -> None:
        self.lambda_ = check_float("ewc_lambda", ewc_lambda, 0.0)
        self.fisher_samples = (
            None if fisher_samples is None else check_int("fisher_samples", fisher_samples, 1)
        )
        for key, value in (("empirical", empirical), ("online", online)):
            if not isinstance(value, bool):
                raise ValueError(f"strategy.{key}={value!r}: expected true or false")
        if not isinstance(include_heads, bool):
            raise ValueError(f"strategy.include_heads={include_heads!r}: expected true or false")
        self.empirical, self.online, self.include_heads = empirical, online, include_heads
        self.gamma = check_float("gamma", gamma, 0.0, 1.0, low_open=True)
        if self.gamma != 1.0 and not online:
            raise ValueError(
                f"strategy.gamma={gamma} only applies to online EWC; set strategy.online=true "
                "or leave gamma at 1.0"
            )
        self.seed = check_int("seed", seed, 0)
        self._rng = new_generator(self.seed)
        # key (past task name, or ONLINE_KEY) -> parameter name -> Float32 tensor (param shape)
        self._fisher: dict[str, dict[str, torch.Tensor]] = {}
        self._anchor: dict[str, dict[str, torch.Tensor]] = {}
        self._tasks: list[str] = []  # tasks consolidated so far, in order

    def penalised_parameters(self, module: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """Trainable parameters whose Fisher is estimated (heads only if ``include_heads``)."""
        heads = set() if self.include_heads else head_param_ids(module)
        return [(n, p) for n, p in module.trainable_named_parameters() if id(p) not in heads]

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Nothing to do yet; fail now rather than after training when there is no datamodule."""
        require_datamodule(self.name, "on_task_start", datamodule)

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Estimate ``F_task``, snapshot ``θ*_task`` and consolidate (once per task)."""
        if task in self._tasks:
            return  # already consolidated (a resumed run repeating the hook)
        require_datamodule(self.name, "on_task_end", datamodule)
        named = self.penalised_parameters(module)
        if named:
            fisher = estimate_fisher(
                module,
                task,
                datamodule.train_examples(task),
                datamodule.collate,
                named,
                self.fisher_samples,
                self.empirical,
                self._rng,
            )
            anchor = {n: p.detach().float().clone() for n, p in named}
            if self.online:
                old = self._fisher.get(ONLINE_KEY, {})
                for n, f in old.items():
                    fisher[n] = self.gamma * f + fisher[n] if n in fisher else self.gamma * f
                self._fisher[ONLINE_KEY] = fisher
                self._anchor[ONLINE_KEY] = {**self._anchor.get(ONLINE_KEY, {}), **anchor}
            else:
                self._fisher[task] = fisher
                self._anchor[task] = anchor
        self._tasks.append(task)

    def extra_loss(
        self, module: ContinualModel, task: str, batch: Batch, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """λ/2 · Σ_keys Σ_i F_i (θ_i − θ*_i)² as a 0-dim float32 tensor; None before any task."""
        if not self._fisher or self.lambda_ == 0.0:
            return None
        params = dict(module.trainable_named_parameters())
        for fisher in self._fisher.values():
            unknown = next((name for name in fisher if name not in params), None)
            if unknown is not None:
                raise ValueError(
                    f"EWC state holds a Fisher for parameter '{unknown}', which the module "
                    "does not list as trainable; was the run resumed with another method?"
                )
        current_head = head_param_ids(module, [task])  # the task being learned: free
        penalised = {n: p for n, p in params.items() if id(p) not in current_head}
        total: torch.Tensor | None = None
        for key, fisher in self._fisher.items():
            total = quadratic_penalty(penalised, fisher, self._anchor[key], total)
        return None if total is None else 0.5 * self.lambda_ * total

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "tasks": list(self._tasks),
            "fisher": {k: dict(v) for k, v in self._fisher.items()},
            "anchor": {k: dict(v) for k, v in self._anchor.items()},
            "rng": self._rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["online"] != self.online:
            raise ValueError(
                f"EWC state was saved with online={state['online']}, config says "
                f"online={self.online}; resume with the run's own strategy settings"
            )
        self._tasks = list(state["tasks"])
        self._fisher = {k: dict(v) for k, v in state["fisher"].items()}
        self._anchor = {k: dict(v) for k, v in state["anchor"].items()}
        self._rng.set_state(state["rng"].cpu())
