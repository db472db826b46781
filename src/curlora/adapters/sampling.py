"""Column/row selection for CURLoRA (Fawi 2024, https://arxiv.org/abs/2408.14572).

For a weight W (out × in) the paper's selection probabilities are

    p_j = ‖W[:, j]‖² / ‖W‖_F²   (columns, length in)
    p_i = ‖W[i, :]‖² / ‖W‖_F²   (rows, length out)

and CURLoRA *inverts* them (eq. 4): p̃ = (1/p) / Σ(1/p), so that low-norm columns and rows,
which carry little of the pretrained function, are the ones the adapter builds on.

Everything here is deterministic given (weights, seed): draws use a local CPU
``torch.Generator`` and never touch the global RNG.
"""

from __future__ import annotations

import hashlib

import torch

SAMPLING_MODES: tuple[str, ...] = ("inverted", "inverted_smoothed", "leverage", "uniform")
"""Valid ``sampling`` values:

- ``inverted``: the paper's eq. 4, p̃ ∝ 1/p. Zero-norm columns/rows get probability 0 (1/0
  would be inf; a zero column of C adds nothing), unless fewer than ``rank`` non-zero ones
  exist, in which case the remaining draws come uniformly from the zero-norm ones.
- ``inverted_smoothed``: the reference code's 1/(p + 0.001). For wide matrices p ≪ 0.001,
  so this is close to uniform sampling.
- ``leverage``: p̃ ∝ p, the classic CUR choice (Drineas et al. 2008), the opposite bias.
- ``uniform``: every column/row equally likely.
"""

SMOOTHING = 1e-3  # the reference code's additive constant in 1/(p + 0.001)


def check_sampling_mode(sampling: str) -> None:
    """Raise ValueError listing the valid modes when ``sampling`` is not one of them."""
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling='{sampling}' is not known; valid modes: {list(SAMPLING_MODES)}")


def norm_probabilities(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row probabilities of ``weight`` (out × in), in float64 on the CPU.

    Returns ``(p_cols: (in,), p_rows: (out,))``; each sums to 1. An all-zero weight has no
    norm to normalise by and gets uniform probabilities (rather than 0/0 = NaN).
    """
    w = weight.detach()
    col_sq = torch.linalg.vector_norm(w, dim=0, dtype=torch.float64).pow(2).cpu()
    row_sq = torch.linalg.vector_norm(w, dim=1, dtype=torch.float64).pow(2).cpu()
    total = col_sq.sum()
    if not torch.isfinite(total) or total <= 0:
        return torch.full_like(col_sq, 1 / col_sq.numel()), torch.full_like(
            row_sq, 1 / row_sq.numel()
        )
    return col_sq / total, row_sq / total


def selection_probabilities(p: torch.Tensor, sampling: str) -> torch.Tensor:
    """Turn norm probabilities ``p`` (n,) into the distribution a mode samples from (n,).

    The result is finite, non-negative and sums to 1 for every input, zero entries included.
    """
    check_sampling_mode(sampling)
    p = p.to(torch.float64)
    if sampling == "inverted":
        # 1/p only where p > 0: the paper's formula is undefined at p = 0.
        q = torch.where(p > 0, 1.0 / p.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    elif sampling == "inverted_smoothed":
        q = 1.0 / (p + SMOOTHING)
    elif sampling == "leverage":
        q = p.clone()
    else:
        q = torch.ones_like(p)
    total = q.sum()
    if not torch.isfinite(total) or total <= 0:
        return torch.full_like(p, 1 / p.numel())
    return q / total


def draw_indices(
    probs: torch.Tensor, k: int, replace: bool, generator: torch.Generator
) -> torch.Tensor:
    """Draw ``k`` indices from ``probs`` (n,), sorted ascending, as int64 (k,).

    Without replacement the indices are distinct. When fewer than ``k`` entries have
    non-zero probability (e.g. ``inverted`` on a matrix with zero columns), all of them
    are taken and the rest are drawn uniformly from the zero-probability entries, so C and
    R still get ``k`` distinct columns/rows.
    """
    n = probs.numel()
    if not replace and k > n:
        raise ValueError(f"cannot draw {k} distinct indices out of {n}")
    positive = probs > 0
    n_pos = int(positive.sum())
    if replace or n_pos >= k:
        idx = torch.multinomial(probs, k, replacement=replace, generator=generator)
    else:
        first = torch.nonzero(positive).flatten()
        zeros = torch.nonzero(~positive).flatten()
        pick = torch.multinomial(
            torch.ones(zeros.numel(), dtype=torch.float64), k - n_pos, generator=generator
        )
        idx = torch.cat([first, zeros[pick]])
    return torch.sort(idx).values


def layer_seed(seed: int | None, name: str) -> int:
    """A per-layer seed from (seed, layer name), stable across processes and platforms.

    Python's ``hash`` is salted per process, so a cryptographic digest is used instead.
    ``seed=None`` means 0: draws are never taken from the global RNG.
    """
    digest = hashlib.blake2b(f"{0 if seed is None else int(seed)}:{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def cur_indices(
    weight: torch.Tensor, rank: int, sampling: str, replace: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``(col_idx: (rank,), row_idx: (rank,))`` for ``weight`` (out × in), int64 CPU.

    Columns are drawn first, then rows, from one generator seeded with ``seed``.
    """
    check_sampling_mode(sampling)
    p_cols, p_rows = norm_probabilities(weight)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    cols = draw_indices(selection_probabilities(p_cols, sampling), rank, replace, gen)
    rows = draw_indices(selection_probabilities(p_rows, sampling), rank, replace, gen)
    return cols, rows
