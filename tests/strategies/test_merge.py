"""Adapter merging: PEFT's add_weighted_adapter rule on the adapters' tensors.

Sources: task arithmetic (Ilharco et al. 2023) Σ w_i τ_i; PEFT ``LoraModel.
add_weighted_adapter`` for LoRA factors (the same merged ΔW is checked against PEFT itself).
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from curlora.adapters import adapter_state_dict, apply_adapter
from curlora.strategies.merge import Merge, merge_states

Q0 = "model.layers.0.self_attn.q_proj"


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def test_a_linear_merge_of_two_known_adapters_is_their_weighted_sum() -> None:
    # CURLoRA-like adapters: U trains, the indices are shared. 0.25·U1 + 0.75·U2 by hand.
    u1 = torch.tensor([[1.0, -2.0], [0.0, 4.0]])
    u2 = torch.tensor([[3.0, 2.0], [-4.0, 0.0]])
    idx = torch.tensor([3, 1])
    merged = merge_states(
        [{"l.U": u1, "l.col_idx": idx}, {"l.U": u2, "l.col_idx": idx}], [0.25, 0.75], "linear"
    )
    assert torch.equal(merged["l.U"], torch.tensor([[2.5, 1.0], [-3.0, 1.0]]))
    assert torch.equal(merged["l.col_idx"], idx)
    # LoRA factors: A with sign(w)√|w|, B with √|w| (PEFT's split): A = 0.5·A1 + √0.75·A2.
    a1, a2 = torch.ones(1, 2), torch.full((1, 2), 2.0)
    merged = merge_states(
        [{"l.lora_A.default.weight": a1}, {"l.lora_A.default.weight": a2}], [0.25, 0.75], "linear"
    )
    assert torch.allclose(merged["l.lora_A.default.weight"], (0.5 + 2 * 0.75**0.5) * a1)
    # A buffer is state, not a weight: the last task's value (InfLoRA's memory, indices).
    memory = [{"l.memory": torch.tensor([1.0])}, {"l.memory": torch.tensor([2.0])}]
    merged = merge_states(memory, [0.5, 0.5], "linear", buffers=frozenset({"l.memory"}))
    assert torch.equal(merged["l.memory"], torch.tensor([2.0]))


@pytest.mark.parametrize(
    ("combination", "peft_combination", "density"),
    [("linear", "linear", 0.5), ("ties", "ties", 0.5), ("dare_ties", "ties", 1.0)],
)
def test_lora_merge_gives_peft_add_weighted_adapters_delta(
    combination: str, peft_combination: str, density: float
) -> None:
    # Two LoRA adapters of scale s = lora_alpha / r = 2 in a PeftModel; PEFT merges them
    # into adapter "m" (scale 1). Ours merges the same tensors keeping scale s. DARE's masks
    # are random (PEFT draws the new adapter's init from the same global RNG first, so the
    # draws cannot be aligned): at density 1 it drops nothing and is TIES at density 1.
    model = get_peft_model(
        tiny_llama(), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]), "t0"
    )
    model.add_adapter("t1", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for task in ("t0", "t1"):
            for factor in (layer.lora_A[task].weight, layer.lora_B[task].weight):
                factor.copy_(torch.randn(factor.shape, generator=g))
    weights = [0.3, 0.7]
    model.add_weighted_adapter(["t0", "t1"], weights, "m", peft_combination, density=density)
    peft_delta = layer.lora_B["m"].weight @ layer.lora_A["m"].weight * layer.scaling["m"]
    states = [
        {
            "q.lora_A.default.weight": layer.lora_A[t].weight.detach(),
            "q.lora_B.default.weight": layer.lora_B[t].weight.detach(),
        }
        for t in ("t0", "t1")
    ]
    ours = merge_states(states, weights, combination, density=density)
    delta = 2.0 * ours["q.lora_B.default.weight"] @ ours["q.lora_A.default.weight"]
    assert torch.allclose(delta, peft_delta, atol=1e-5)


class Stand(torch.nn.Module):
    """A stand-in ContinualModel holding a backbone with PEFT LoRA applied."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = tiny_llama()
        apply_adapter(self.backbone, {"_target_": "curlora.adapters.lora.LoRAMethod", "rank": 2})
        self.heads = torch.nn.ModuleDict()


def _train(module: Stand, value: float) -> dict[str, torch.Tensor]:
    """Stand-in for a task's training: B = value everywhere; the adapter state after it."""
    with torch.no_grad():
        for name, t in adapter_state_dict(module.backbone).items():
            if ".lora_B." in name:
                t.fill_(value)
    return {k: v.clone() for k, v in adapter_state_dict(module.backbone).items()}


def test_each_task_starts_fresh_and_is_evaluated_with_the_merge() -> None:
    module = Stand()
    merge = Merge()  # linear, w = 1/n
    initial = {k: v.clone() for k, v in adapter_state_dict(module.backbone).items()}
    merge.on_task_start(module, "a", None)
    after_a = _train(module, 1.0)
    merge.on_task_end(module, "a", None)
    live = adapter_state_dict(module.backbone)
    assert all(torch.equal(live[k], after_a[k]) for k in live)  # one task: itself (w = 1)
    merge.on_task_start(module, "b", None)
    live = adapter_state_dict(module.backbone)
    assert all(torch.equal(live[k], initial[k]) for k in live)  # fresh adapter for b
    _train(module, 3.0)
    merge.on_task_end(module, "b", None)
    live = adapter_state_dict(module.backbone)
    b_key = next(k for k in live if ".lora_B." in k)
    a_key = next(k for k in live if ".lora_A." in k)
    # B: √½·1 + √½·3; A: both tasks kept the initial A, equal in both: kept as it is.
    assert torch.allclose(live[b_key], torch.full_like(live[b_key], 4 * 0.5**0.5))
    assert torch.equal(live[a_key], initial[a_key])


def test_dare_masks_come_from_the_seed_alone() -> None:
    states = [
        {"l.U": torch.randn(8, 8, generator=torch.Generator().manual_seed(i))} for i in (1, 2)
    ]
    one, two = Merge("dare_ties", seed=3), Merge("dare_ties", seed=3)
    one.adapters = two.adapters = {"a": states[0], "b": states[1]}
    torch.manual_seed(0)
    first = one.merged()["l.U"]
    torch.randn(5)  # the global stream moved: the merge must not depend on it
    assert torch.equal(first, two.merged()["l.U"])
    two.seed = 4
    assert not torch.equal(first, two.merged()["l.U"])


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"strategy.combination='svd' is not valid"):
        Merge(combination="svd")
    with pytest.raises(ValueError, match=r"strategy.density=0.0 is not valid"):
        Merge(density=0.0)
    with pytest.raises(ValueError, match=r"strategy.weight=-1.0 is not valid"):
        Merge(weight=-1.0)


@pytest.mark.parametrize("combination", ["ties", "dare_ties"])
def test_ties_default_weight_is_one_so_the_merge_is_the_tasks_mean(combination) -> None:
    """Tasks τ, 2τ, 3τ (every entry's sign agrees): TIES's disjoint mean at density 1 is
    2τ with λ = 1 (Yadav et al. 2023; DARE at density 1 keeps every entry), so the default
    weight must not shrink it by 1/n as well; linear's default 1/n gives the same mean."""
    tau = torch.randn(6, 6, generator=torch.Generator().manual_seed(5))
    tasks = {t: {"l.U": c * tau} for t, c in zip("abc", (1.0, 2.0, 3.0), strict=True)}
    for name in (combination, "linear"):
        merge = Merge(name, density=1.0)
        merge.adapters = tasks
        assert torch.allclose(merge.merged()["l.U"], 2 * tau, atol=1e-5), name
    explicit = Merge(combination, weight=1 / 3, density=1.0)
    explicit.adapters = tasks
    assert torch.allclose(explicit.merged()["l.U"], 2 * tau / 3, atol=1e-5)
