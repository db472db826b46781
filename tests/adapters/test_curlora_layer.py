"""CURLoRALinear: the fast forward against the explicit formula, state, merge, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from curlora.adapters import SAMPLING_MODES, CURLoRALinear


def make_layer(bias: bool, out_f: int = 12, in_f: int = 20, **kwargs) -> CURLoRALinear:
    torch.manual_seed(0)
    base = nn.Linear(in_f, out_f, bias=bias)
    layer = CURLoRALinear(base, kwargs.pop("rank", 5), kwargs.pop("alpha", 1.7), **kwargs)
    with torch.no_grad():
        layer.U.copy_(
            torch.randn(layer.rank, layer.rank, generator=torch.Generator().manual_seed(1))
        )
    return layer


def explicit(layer: CURLoRALinear, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """x (W + α C U R)ᵀ + b with C, R gathered by hand (CURLoRA, arXiv 2408.14572)."""
    w = layer.base_layer.weight
    c, r = w[:, layer.col_idx], w[layer.row_idx, :]
    return F.linear(x, w + layer.alpha * (c @ u @ r), layer.base_layer.bias)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_fast_forward_and_grads_equal_explicit_formula(bias: bool, mode: str) -> None:
    layer = make_layer(bias, sampling=mode)
    x = torch.randn(3, 4, 20, requires_grad=True)
    out = layer(x)
    u = layer.U.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    ref = explicit(layer, x2, u)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(layer.U.grad, u.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    assert layer.base_layer.weight.grad is None  # frozen


def test_only_u_trains_and_starts_at_zero() -> None:
    layer = CURLoRALinear(nn.Linear(20, 12), rank=5)
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["U"]
    assert layer.U.shape == (5, 5) and not layer.U.any()
    x = torch.randn(2, 20)
    assert torch.equal(layer(x), layer.base_layer(x))  # U = 0: the base layer exactly


def test_state_dict_holds_u_and_int_indices_not_c_or_r() -> None:
    # C and R are gathered from the base weight, never stored as float copies.
    state = make_layer(True).state_dict()
    assert set(state) == {"U", "col_idx", "row_idx", "base_layer.weight", "base_layer.bias"}
    assert state["col_idx"].dtype == state["row_idx"].dtype == torch.int64


def test_forward_never_builds_an_out_by_in_tensor() -> None:
    # The fast path never materialises an out × in matrix. Record every op's output during
    # forward+backward; 1 token, so any tensor with out·in = 2000 elements could only be a
    # full-size matrix.
    class Sizes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = [a for a in [*args, *(kwargs or {}).values()] if isinstance(a, torch.Tensor)]
            seen = {a.untyped_storage().data_ptr() for a in inputs}
            for t in out if isinstance(out, (tuple, list)) else [out]:
                # views (e.g. Wᵀ for the matmul) share an input's storage: not allocations
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                    self.largest = max(self.largest, t.numel())
            return out

    layer = make_layer(True, out_f=40, in_f=50)
    x = torch.randn(1, 50)
    with Sizes() as sizes:
        layer(x).sum().backward()
    assert 0 < sizes.largest < 40 * 50
    with Sizes() as sizes:
        layer.delta_weight()
    assert sizes.largest == 40 * 50  # the recorder does see a full-size matrix when one is built


def test_dropout_takes_the_direct_path_in_training() -> None:
    # With dropout on the adapter input, (base_out − b)[..., rows] ≠ dropout(x) Rᵀ.
    layer = make_layer(True, dropout=0.5).train()
    x = torch.randn(4, 20)
    torch.manual_seed(5)
    out = layer(x)
    torch.manual_seed(5)
    xd = F.dropout(x, 0.5, training=True)
    w = layer.base_layer.weight
    c, r = w[:, layer.col_idx], w[layer.row_idx, :]
    ref = layer.base_layer(x) + layer.alpha * (xd @ r.T @ layer.U.T @ c.T)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    layer.eval()  # no dropout at evaluation: the fast path and the explicit formula agree
    torch.testing.assert_close(layer(x), explicit(layer, x, layer.U), rtol=1e-5, atol=1e-5)


def test_delta_weight_is_alpha_c_u_r() -> None:
    layer = make_layer(False)
    w = layer.base_layer.weight
    ref = layer.alpha * w[:, layer.col_idx] @ layer.U @ w[layer.row_idx, :]
    torch.testing.assert_close(layer.delta_weight(), ref)


@pytest.mark.parametrize("bias", [True, False])
def test_merge_keeps_outputs_and_unmerge_restores_weight(bias: bool) -> None:
    layer = make_layer(bias)
    x = torch.randn(3, 20)
    before, w0 = layer(x), layer.base_layer.weight.detach().clone()
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.base_layer.weight, w0 + layer.delta_weight())
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()


def test_rank_errors_name_layer_rank_and_limit() -> None:
    base = nn.Linear(20, 12)
    for rank in (0, 13):
        with pytest.raises(
            ValueError, match=rf"rank={rank} for layer blk.q .*1\.\.12.*min\(out, in\)=12"
        ):
            CURLoRALinear(base, rank, name="blk.q")
    assert CURLoRALinear(base, 12).rank == 12  # the limit itself is valid


def test_unknown_sampling_lists_valid_modes() -> None:
    with pytest.raises(ValueError, match="'inverted', 'inverted_smoothed', 'leverage', 'uniform'"):
        CURLoRALinear(nn.Linear(20, 12), 4, sampling="invert")


def test_seed_and_name_fix_the_indices() -> None:
    base = nn.Linear(64, 64)
    a = CURLoRALinear(base, 8, seed=3, name="a")
    torch.manual_seed(42)
    assert torch.equal(a.col_idx, CURLoRALinear(base, 8, seed=3, name="a").col_idx)
    other = [CURLoRALinear(base, 8, seed=3, name="b"), CURLoRALinear(base, 8, seed=4, name="a")]
    assert all(not torch.equal(a.col_idx, o.col_idx) for o in other)
