"""CUR column/row selection: probabilities, modes, determinism (CURLoRA, arXiv 2408.14572)."""

from __future__ import annotations

import pytest
import torch

from curlora.adapters.sampling import (
    SAMPLING_MODES,
    cur_indices,
    draw_indices,
    layer_seed,
    norm_probabilities,
    selection_probabilities,
)


def graded_weight() -> torch.Tensor:
    """(8 × 10) with column j scaled by j + 1 and row i by i + 1: norms strictly increase."""
    base = torch.randn(8, 10, generator=torch.Generator().manual_seed(0)).abs() + 0.5
    return base * torch.arange(1, 11) * torch.arange(1, 9)[:, None]


def test_norm_probabilities_are_squared_norm_shares() -> None:
    # Source: the CURLoRA paper (arXiv 2408.14572), p_j = ‖W[:, j]‖² / ‖W‖_F²,
    # p_i = ‖W[i, :]‖² / ‖W‖_F².
    w = graded_weight()
    p_cols, p_rows = norm_probabilities(w)
    total = (w.double() ** 2).sum()
    torch.testing.assert_close(p_cols, (w.double() ** 2).sum(0) / total)
    torch.testing.assert_close(p_rows, (w.double() ** 2).sum(1) / total)


def test_inverted_is_paper_eq4_and_smoothed_is_reference_code() -> None:
    # Source: paper eq. 4, p̃ = (1/p) / Σ(1/p); reference code 1/(p + 0.001) normalised.
    p = norm_probabilities(graded_weight())[0]
    torch.testing.assert_close(selection_probabilities(p, "inverted"), (1 / p) / (1 / p).sum())
    q = 1 / (p + 0.001)
    torch.testing.assert_close(selection_probabilities(p, "inverted_smoothed"), q / q.sum())
    torch.testing.assert_close(selection_probabilities(p, "leverage"), p)


def test_inverted_favours_low_norm_columns_leverage_the_reverse() -> None:
    # Invariant: the low-norm half gets more mass under inverted than uniform
    # (0.5), and less under leverage; also in actual draws over many seeds.
    p = norm_probabilities(graded_weight())[0]
    low = torch.arange(10) < 5  # columns scaled 1..5: the low-norm half
    mass = {m: float(selection_probabilities(p, m)[low].sum()) for m in SAMPLING_MODES}
    assert mass["uniform"] == pytest.approx(0.5)
    assert mass["inverted"] > mass["uniform"] > mass["leverage"]
    counts = {}
    for mode in ("inverted", "leverage"):
        probs = selection_probabilities(p, mode)
        draws = [
            draw_indices(probs, 3, False, torch.Generator().manual_seed(s)) for s in range(200)
        ]
        counts[mode] = int((torch.cat(draws) < 5).sum())
    assert counts["inverted"] > 300 > counts["leverage"]  # 600 draws, half would be 300


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_zero_norm_columns_give_finite_probabilities(mode: str) -> None:
    # Zero-norm columns must not produce inf/NaN.
    w = graded_weight()
    w[:, [0, 3]] = 0.0
    for p in norm_probabilities(w):
        q = selection_probabilities(p, mode)
        assert torch.isfinite(q).all() and (q >= 0).all()
        assert float(q.sum()) == pytest.approx(1.0)
    q = selection_probabilities(norm_probabilities(torch.zeros(4, 5))[0], mode)
    torch.testing.assert_close(q, torch.full((5,), 0.2, dtype=torch.float64))


def test_inverted_without_replacement_uses_zero_columns_only_when_needed() -> None:
    # 3 non-zero columns out of 6: k = 3 takes exactly those, k = 5 takes them plus 2 zeros.
    w = torch.zeros(6, 6)
    w[:, [1, 2, 4]] = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    probs = selection_probabilities(norm_probabilities(w)[0], "inverted")
    gen = torch.Generator().manual_seed(0)
    assert draw_indices(probs, 3, False, gen).tolist() == [1, 2, 4]
    five = draw_indices(probs, 5, False, gen)
    assert len(set(five.tolist())) == 5 and {1, 2, 4} <= set(five.tolist())


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_without_replacement_indices_are_distinct(mode: str) -> None:
    w = graded_weight()
    for seed in range(20):
        cols, rows = cur_indices(w, 8, mode, replace=False, seed=seed)
        assert len(set(cols.tolist())) == 8 and len(set(rows.tolist())) == 8
        assert cols.max() < 10 and rows.max() < 8


def test_with_replacement_can_repeat_like_the_reference_code() -> None:
    # 8 draws from 10 near-uniform columns with replacement repeat with probability
    # 1 − 10!/(2!·10^8) ≈ 0.98; over 20 seeds at least one repeat is certain in practice.
    w = graded_weight()
    repeats = [
        len(set(cur_indices(w, 8, "inverted_smoothed", True, s)[0].tolist())) < 8 for s in range(20)
    ]
    assert any(repeats)


def test_same_seed_same_indices_whatever_the_global_rng() -> None:
    w = graded_weight()
    torch.manual_seed(1)
    a = cur_indices(w, 4, "inverted", False, seed=7)
    torch.manual_seed(999)
    torch.rand(100)
    b = cur_indices(w, 4, "inverted", False, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    state = torch.get_rng_state()
    cur_indices(w, 4, "inverted", False, seed=7)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not consumed


def test_layer_seed_is_stable_and_distinct_per_layer() -> None:
    # Stable across processes (a digest, not Python's salted hash). Source of the pinned
    # value: blake2b(b"0:model.layers.0.self_attn.q_proj", digest_size=8), little-endian,
    # masked to 63 bits, computed once.
    assert layer_seed(0, "model.layers.0.self_attn.q_proj") == 5869112140846083358
    names = [
        f"model.layers.{i}.self_attn.{p}" for i in range(4) for p in ("q_proj", "k_proj", "v_proj")
    ]
    assert len({layer_seed(0, n) for n in names}) == len(names)
    assert layer_seed(0, "x") != layer_seed(1, "x")
    assert layer_seed(None, "x") == layer_seed(0, "x")
    assert 0 <= layer_seed(2**40, "x") < 2**63


def test_unknown_mode_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"inverted_smoothed.*leverage.*uniform"):
        selection_probabilities(torch.ones(3) / 3, "inverse")
