"""CorDA through PEFT: a calibrated start at the base, the knowledge-preserving choice of
components, and exact reloads without the calibration text."""

from __future__ import annotations

import pytest
import torch

from curlora.adapters import applied_method, apply_adapter, load_adapter, save_adapter

Q0 = "model.layers.0.self_attn.q_proj"


def _calibration(seed: int = 1, n: int = 256) -> torch.Tensor:
    return torch.randint(0, 64, (n,), generator=torch.Generator().manual_seed(seed))


def _cfg(method_cfg, mode: str = "kpm"):
    return method_cfg("corda", mode=mode, calibration_length=16)


def test_starts_at_the_base_and_trains_a_and_b(make_model, method_cfg, input_ids):
    # Source: CorDA (arXiv 2406.05223) / PEFT's corda_init: W = residual + s·B₀A₀, so the
    # adapted model computes the base model's logits up to float32 rounding.
    model = make_model()
    base = model(input_ids).logits
    apply_adapter(model, _cfg(method_cfg), calibration=_calibration())
    torch.testing.assert_close(model(input_ids).logits, base, rtol=0, atol=1e-5)
    layer = model.get_submodule(Q0)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert a.requires_grad and b.requires_grad and a.abs().sum() > 0 and b.abs().sum() > 0
    assert not applied_method(model).starts_at_base()


def test_knowledge_preserving_mode_takes_the_smallest_components(make_model, method_cfg):
    # kpm keeps the r smallest singular values of W·C in the adapter, ipm the r largest:
    # every kpm value is at most every ipm value (same layer, same calibration).
    values = {}
    for mode in ("kpm", "ipm"):
        model = make_model()
        apply_adapter(model, _cfg(method_cfg, mode), calibration=_calibration())
        values[mode] = model.get_submodule(Q0).corda_S
    assert values["kpm"].max() <= values["ipm"].min()


def test_reload_without_calibration_is_exact(make_model, method_cfg, input_ids, tmp_path):
    model = make_model()
    apply_adapter(model, _cfg(method_cfg), calibration=_calibration())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    expected = model(input_ids).logits
    save_adapter(model, tmp_path / "adapter")
    fresh = make_model()
    load_adapter(fresh, tmp_path / "adapter")  # no calibration: the saved decomposition
    assert torch.equal(fresh(input_ids).logits, expected)
    other = make_model(seed=1)  # another base: the fingerprint of the original W refuses it
    with pytest.raises(ValueError, match="does not fit this base model"):
        load_adapter(other, tmp_path / "adapter")


def test_a_run_without_a_scored_prefix_to_skip_is_refused(run_config):
    from curlora.checks.config import ConfigError, validate_config

    cfg = run_config("method=corda", "callbacks.perplexity.max_tokens=null")
    with pytest.raises(ConfigError, match=r"callbacks\.perplexity\.max_tokens"):
        validate_config(cfg, check_model=False)
