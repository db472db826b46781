"""MIGU: only the rows of a linear layer with the largest outputs on the batch learn.

Source: Du et al. 2024 (arXiv 2406.17245), its method: M_i = 1 when the L1-normalised output
magnitude of row i is in the layer's top ratio; ∇W_i ← M_i ∇W_i. Numbers by hand below.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curlora.strategies.migu import MIGU, top_mask


class Stand(nn.Module):
    """A stand-in ContinualModel: a backbone of one Linear (3 → 4), no heads."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(3, 4))
        self.heads = nn.ModuleDict()
        with torch.no_grad():
            # Rows scaled so that x = [1, 1, 1] gives outputs [0.1, −5, 2, 3] (bias 0).
            self.backbone[0].weight.copy_(
                torch.tensor([[0.1, 0, 0], [-5, 0, 0], [2, 0, 0], [3, 0, 0]])
            )
            self.backbone[0].bias.zero_()

    def trainable_named_parameters(self):
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def test_the_mask_keeps_the_top_ratio_of_known_magnitudes() -> None:
    magnitude = torch.tensor([0.1, 5.0, 2.0, 3.0])
    assert top_mask(magnitude, 0.5).tolist() == [False, True, False, True]  # ⌈0.5·4⌉ = 2
    assert top_mask(magnitude, 0.6).tolist() == [False, True, True, True]  # ⌈2.4⌉ = 3
    assert top_mask(magnitude, 0.01).tolist() == [False, True, False, False]  # at least one
    assert top_mask(magnitude, 1.0).all()


def test_only_the_rows_with_the_largest_outputs_get_a_gradient() -> None:
    model = Stand()
    migu = MIGU(top_ratio=0.5)
    migu.on_task_start(model, "a", None)
    # Two tokens: x = [1, 1, 1] and [−1, −1, −1]: |y| summed = [0.2, 10, 4, 6] → rows 1, 3.
    x = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    (model.backbone(x) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    layer = model.backbone[0]
    # Unmasked ∂/∂W_i = c_i · Σ_tokens x = 0 (the tokens cancel) — use the bias: ∂/∂b_i =
    # 2 c_i = [2, 4, 6, 8], masked to [0, 4, 0, 8]; and the weight's rows 0, 2 are 0.
    assert layer.bias.grad.tolist() == [0.0, 4.0, 0.0, 8.0]
    layer.zero_grad()
    (model.backbone(x[:1]) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    # One token: |y| = [0.1, 5, 2, 3] → rows 1, 3; ∂/∂W_i = c_i · [1, 1, 1].
    expected = torch.tensor([[0.0] * 3, [2.0] * 3, [0.0] * 3, [4.0] * 3])
    assert torch.equal(layer.weight.grad, expected)
    migu.on_task_end(model, "a", None)
    layer.zero_grad()
    (model.backbone(x[:1]) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert layer.bias.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # hooks removed: unmasked


def test_a_ratio_outside_0_1_is_refused() -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=rf"strategy.top_ratio={bad!r} is not valid"):
            MIGU(top_ratio=bad)


def test_with_peft_lora_each_lora_b_keeps_the_top_half_of_its_rows() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from curlora.adapters import apply_adapter

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = Stand()
    model.backbone = LlamaForCausalLM(config)
    apply_adapter(model.backbone, {"_target_": "curlora.adapters.lora.LoRAMethod", "rank": 4})
    migu = MIGU(top_ratio=0.5)
    migu.on_task_start(model, "a", None)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
    model.backbone(ids).logits.pow(2).mean().backward()
    lora_b = {n: m for n, m in model.backbone.named_modules() if n.endswith("lora_B.default")}
    assert len(lora_b) == 3  # q, k, v
    for name, layer in lora_b.items():
        # B = 0 at init: ∂/∂B = (∂L/∂y)ᵀ (A x) is dense, so exactly ⌈0.5 · out⌉ rows survive.
        rows = int((layer.weight.grad.abs().sum(dim=1) > 0).sum())
        assert rows == layer.weight.shape[0] // 2, name
