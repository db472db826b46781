"""model.gradient_checkpointing: the decoder layers recompute in backward, same gradients."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from curlora.adapters import apply_adapter
from curlora.models.backbone import load_backbone


def _adapted_backbone(tmp_path: Path, checkpointing: bool) -> torch.nn.Module:
    with initialize_config_module(config_module="curlora.configs", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "model=tiny_llama",
                "method=curlora",
                "rank=4",
                f"model.gradient_checkpointing={str(checkpointing).lower()}",
            ],
        )
    model, _ = load_backbone(cfg.model, tmp_path)
    apply_adapter(model, cfg.method)
    for name, parameter in model.named_parameters():  # a U that is not 0, so dL/dU ≠ 0 ...
        if name.endswith(".U"):
            torch.nn.init.normal_(parameter, std=0.1, generator=torch.Generator().manual_seed(0))
    return model.train()  # (Lightning's fit mode; checkpointing acts only in training)


def _attention_calls_and_grads(
    tmp_path: Path, checkpointing: bool
) -> tuple[int, dict[str, torch.Tensor]]:
    """Calls of layer 0's attention in one forward + backward, and the adapter gradients.
    (transformers checkpoints a layer's ``forward``, so hooks on the layer itself do not
    see the recompute; its submodules' hooks do.)"""
    model = _adapted_backbone(tmp_path, checkpointing)
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    model.model.layers[0].self_attn.register_forward_pre_hook(count)
    input_ids = torch.randint(0, 20, (2, 12), generator=torch.Generator().manual_seed(1))
    model(input_ids, labels=input_ids).loss.backward()
    return calls[0], {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_checkpointing_recomputes_layers_and_keeps_the_gradients(tmp_path: Path) -> None:
    plain_calls, plain = _attention_calls_and_grads(tmp_path, checkpointing=False)
    checkpointed_calls, checkpointed = _attention_calls_and_grads(tmp_path, checkpointing=True)
    assert (plain_calls, checkpointed_calls) == (1, 2)  # recomputed in the backward pass
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7)
