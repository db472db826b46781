"""ContinualLitModule: features, heads, optimizer contents, isolation of earlier heads."""

from __future__ import annotations

import torch

from curlora.adapters import apply_adapter
from curlora.adapters.head_only import HeadOnlyMethod
from curlora.models.module import ContinualLitModule, last_token_index
from curlora.models.tiny import load


def _module() -> ContinualLitModule:
    backbone, _ = load({}, cache_dir=".")
    apply_adapter(backbone, HeadOnlyMethod())
    return ContinualLitModule(
        backbone, {"a": 2, "b": 3}, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2)
    )


def test_last_token_index_handles_both_padding_sides() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token_index(right).tolist() == [2, 3]
    assert last_token_index(left).tolist() == [3, 3]


def test_features_ignore_padding() -> None:
    module = _module().eval()
    ids = torch.tensor([[5, 6, 7]])
    padded = {
        "input_ids": torch.tensor([[5, 6, 7, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0]]),
    }
    plain = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    # Right padding after a causal LM cannot change the last real token's state.
    torch.testing.assert_close(module.features(padded), module.features(plain))


def test_heads_have_task_shapes_and_optimizer_gets_trainable_only() -> None:
    module = _module()
    assert module.heads["b"].out_features == 3
    names = [n for n, _ in module.trainable_named_parameters()]
    assert names and all(n.startswith("heads.") for n in names)  # backbone frozen here


def test_checkpoint_keeps_only_trainable_state() -> None:
    module = _module()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == {
        "heads.a.weight",
        "heads.a.bias",
        "heads.b.weight",
        "heads.b.bias",
    }
