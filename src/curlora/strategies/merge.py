"""Adapter merging: one adapter per task, merged into one after every task.

Every task trains a fresh adapter (the method's initial state, as ``separate``); after task
i the adapters of tasks 0..i are merged into one, which is what every task is evaluated
with (and what the perplexity after task i measures, and what a finished run saves). The
merge is PEFT's ``LoraModel.add_weighted_adapter`` rule with its merging functions
(``peft.utils.merge_utils``), applied to the adapters' tensors:

- ``linear`` (task arithmetic, Ilharco et al. 2023, arXiv 2212.04089): Σ_i w_i τ_i;
- ``ties`` (TIES-merging, Yadav et al. 2023, arXiv 2306.01708): keep each τ_i's top
  ``density`` entries by magnitude, elect each entry's sign by the weighted total (or the
  count: ``majority_sign_method``), average the weighted entries that agree with it;
- ``dare_ties`` (DARE, Yu et al. 2024, arXiv 2311.03099): keep each entry of τ_i with
  probability ``density`` and rescale by 1/density, then TIES's sign election and mean.

τ_i is task i's adapter tensor. For PEFT LoRA factors (``lora_A``/``lora_B`` in the name)
add_weighted_adapter merges A's and B's separately, A with weights sign(w_i)·√|w_i s| and
B with √|w_i s| into an adapter of scale 1; here the live adapter keeps its scale s, so the
factors get sign(w_i)·√|w_i| and √|w_i| and s · B_m A_m is PEFT's merged ΔW exactly. For
``linear`` that is s · Σ_ij √(w_i w_j) B_i A_j, not Σ_i w_i s B_i A_i: PEFT calls it a rough
approximation. For an adapter linear in its one trainable tensor (CURLoRA's
ΔW = α C U R) the linear merge is exact: Σ_i w_i ΔW_i. A tensor equal in every task's
adapter (MiCA's frozen B) is no task's update and is kept as it is; a buffer (CURLoRA's
indices, InfLoRA's memory of earlier tasks' inputs) is state, not a weight: the last task's
is kept.

With one task there is nothing to merge with: its adapter is scaled by w (PEFT switches
to ``linear`` for one adapter too). DARE's random masks come from the global RNG inside
PEFT, so the merge runs on the CPU under ``torch.random.fork_rng`` seeded with
``seed + number of the merge``: reproducible, and the training RNG stream is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from peft.utils.merge_utils import dare_ties, task_arithmetic, ties

from curlora import checks
from curlora.adapters import load_adapter_state_dict
from curlora.strategies.base import ContinualModel, Strategy, TaskData, check_float, check_int
from curlora.strategies.separate import FreshAdapterPerTask

State = dict[str, torch.Tensor]
COMBINATIONS = ("linear", "ties", "dare_ties")
SIGN_METHODS = ("total", "frequency")


def factor_weights(key: str, weights: Sequence[float]) -> list[float]:
    """The per-task weights of tensor ``key``: PEFT's split of w over a LoRA factor pair
    (A: sign(w)·√|w|, B: √|w|), the weights themselves for any other tensor."""
    if ".lora_A." in key:
        return [math.copysign(math.sqrt(abs(w)), w) for w in weights]
    if ".lora_B." in key:
        return [math.sqrt(abs(w)) for w in weights]
    return list(weights)


def merge_states(
    states: Sequence[State],
    weights: Sequence[float],
    combination: str,
    density: float = 1.0,
    majority_sign_method: str = "total",
    buffers: frozenset[str] = frozenset(),
) -> State:
    """One adapter state from several (same keys and shapes), tensor by tensor (module
    docstring); the keys in ``buffers`` take the last state's value. Float tensors merge in
    float32 and come back in their own dtype."""
    if combination not in COMBINATIONS:
        raise ValueError(f"combination={combination!r} is not valid; valid: {COMBINATIONS}")
    if len(states) == 1:
        combination = "linear"  # as add_weighted_adapter: nothing to elect signs against
    merged: State = {}
    for key, first in states[0].items():
        if key in buffers:
            merged[key] = states[-1][key].clone()
            continue
        tensors = [state[key] for state in states]
        same = all(torch.equal(first, t) for t in tensors[1:])
        if not first.is_floating_point() or (same and len(states) > 1):
            merged[key] = first.clone()
            continue
        w = torch.tensor(factor_weights(key, weights), dtype=torch.float32)  # [tasks]
        stacked = [t.float() for t in tensors]
        if combination == "linear":
            out = task_arithmetic(stacked, w)
        elif combination == "ties":
            out = ties(stacked, w, density, majority_sign_method)
        else:
            out = dare_ties(stacked, w, density, majority_sign_method)
        merged[key] = out.to(first.dtype)
    return merged


def default_weight(combination: str, tasks: int) -> float:
    """Each task's weight when ``strategy.weight`` is null: 1/n for ``linear`` (the mean of
    the n task vectors, task arithmetic's usual average), 1 for ``ties`` and ``dare_ties``.

    TIES's disjoint merge already averages the entries that agree, and its paper scales the
    result by λ = 1 (DARE-TIES the same). Weighting each task by 1/n before that mean would
    scale the merge by 1/n again (with PEFT's factor-by-factor merge of LoRA's A and B, each
    factor by √w, the merged ΔW by about 1/n): measured on LoRA after three tasks with
    w = 1/n, the TIES merge's ΔW had a quarter of the linear merge's Frobenius norm."""
    return 1.0 / tasks if combination == "linear" else 1.0


class Merge(FreshAdapterPerTask, Strategy):
    """A fresh adapter per task; after each task, all trained ones merged into one.

    It never reads a head: the same under ``head=linear`` and ``head=words`` (where every
    task answers through the shared frozen LM head with the merged adapter).

    Args:
        combination: ``linear`` (task arithmetic), ``ties`` or ``dare_ties``
            (PEFT's ``add_weighted_adapter`` combination types).
        weight: each task adapter's weight w in the merge, > 0; None (default): the
            combination's own scale (``default_weight``).
        density: ``ties``/``dare_ties``: the share of each task tensor's entries kept, in
            (0, 1]. 0.5 is a round value, not tuned here (PEFT's docs use 0.2–0.7).
        majority_sign_method: ``total`` (the sign of the weighted sum; TIES's paper) or
            ``frequency`` (the sign of most entries).
        seed: seeds DARE's random masks (``seed`` + the number of the merge); unused by
            ``linear`` and ``ties``.
    """

    name = "merge"
    keep_on_cpu = True  # merged on the CPU

    def __init__(
        self,
        combination: str = "linear",
        weight: float | None = None,
        density: float = 0.5,
        majority_sign_method: str = "total",
        seed: int = 0,
    ) -> None:
        if combination not in COMBINATIONS:
            checks.fail("strategy.combination", combination, " | ".join(COMBINATIONS))
        self.combination = combination
        self.weight = None if weight is None else check_float("weight", weight, 0.0, low_open=True)
        self.density = check_float("density", density, 0.0, 1.0, low_open=True)
        if majority_sign_method not in SIGN_METHODS:
            checks.fail("strategy.majority_sign_method", majority_sign_method, "total | frequency")
        self.majority_sign_method = majority_sign_method
        self.seed = check_int("seed", seed, 0)
        super().__init__()

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        if task in self.adapters:
            return  # a resumed run repeating the hook: the live adapter is the merge already
        self.adapters[task] = self.copy_adapter(module)
        buffers = frozenset(name for name, _ in module.backbone.named_buffers())
        load_adapter_state_dict(module.backbone, self.merged(buffers))

    def merged(self, buffers: frozenset[str] = frozenset()) -> State:
        """The merge of every finished task's adapter, in training order (on the CPU);
        ``buffers``: the adapter-state keys that are buffers (the last task's is kept)."""
        states = list(self.adapters.values())
        w = (
            self.weight
            if self.weight is not None
            else default_weight(self.combination, len(states))
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + len(states))
            return merge_states(
                states,
                [w] * len(states),
                self.combination,
                self.density,
                self.majority_sign_method,
                buffers,
            )
