"""Perplexity of a causal LM over a whole corpus with a sliding window.

Method (the Hugging Face perplexity guide, "Perplexity of fixed-length models"): the
corpus is tokenised once and concatenated; windows of at most ``max_length`` tokens slide
over it by ``stride`` tokens; each window scores only the tokens no earlier window scored,
so every token is predicted exactly once, with at least ``max_length − stride`` tokens of
context once the corpus is longer than a window; perplexity is exp of the token-weighted
mean negative log-likelihood over the whole corpus. Never one truncated window (the paper's
reference code scores only the first ``max_length`` tokens).

Window layout, in target space. Of N tokens, tokens 1..N−1 are predicted (token 0 has no
context), so N−1 is the exact count whenever stride <= max_length. A window feeds tokens
``[begin, end)`` and its logit at position p predicts token ``begin + p + 1``; it scores its
last ``scored`` positions, i.e. targets ``end − scored + 1 .. end``. The first window feeds
``[0, min(max_length, N−1))``; each next window moves the last target on by ``stride`` and
feeds the ``max_length`` tokens before it. Feeding the tokens *before* the targets, not
the targets themselves, fixes the first-token-of-window shift: with stride == max_length
the windows are disjoint chunks and each chunk's last logit predicts the next chunk's first
token, which a window that starts at that token could never score (the guide's layout
then loses one token per window, and its ``num_valid_tokens − batch_size`` count is off by
one per window whenever stride < max_length). The last window is full length with fewer
targets, so it keeps full context (as lm-evaluation-harness's rolling windows do).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PerplexityResult:
    """ppl = exp(nll_sum / tokens); ``tokens`` is the number of predicted (scored) tokens."""

    ppl: float
    nll_sum: float
    tokens: int


@dataclass(frozen=True)
class Window:
    """Feed ``ids[begin:end]``; score the logits of its last ``scored`` positions."""

    begin: int
    end: int
    scored: int


def sliding_windows(n_tokens: int, max_length: int, stride: int) -> list[Window]:
    """The windows that score each of tokens 1..n_tokens−1 exactly once (layout: module doc)."""
    if max_length < 1 or stride < 1:
        raise ValueError(f"max_length ({max_length}) and stride ({stride}) must be >= 1")
    if stride > max_length:
        raise ValueError(
            f"stride ({stride}) > max_length ({max_length}) would leave tokens unscored"
        )
    last_target = n_tokens - 1
    end = min(max_length, last_target)
    windows = [Window(0, end, end)] if end > 0 else []
    while end < last_target:
        new_end = min(end + stride, last_target)
        windows.append(Window(max(0, new_end - max_length), new_end, new_end - end))
        end = new_end
    return windows


def _forward_options(model: nn.Module) -> tuple[bool, bool]:
    """Whether forward takes ``logits_to_keep`` (HF: only the scored positions reach the
    LM head, saving a [B, L, vocab] tensor) and ``use_cache`` (no KV cache is built)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False, False
    return "logits_to_keep" in params, "use_cache" in params


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _batch_nll(
    model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, keep: bool, cache: bool
) -> float:
    """Summed NLL of ``targets`` [B, S] given ``ids`` [B, W]; the last S logits predict them."""
    scored = targets.shape[1]
    kwargs: dict[str, object] = {}
    if keep:
        kwargs["logits_to_keep"] = scored
    if cache:
        kwargs["use_cache"] = False
    out = model(input_ids=ids, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out[0]
    logits = logits[:, -scored:, :].float()  # [B, S, vocab]
    return float(
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    )


def sliding_window_perplexity(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_length: int,
    stride: int,
    batch_size: int = 1,
    max_tokens: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` (a causal LM returning ``.logits``) on ``input_ids`` [N] or [1, N].

    Args:
        max_length: tokens fed per window (at most the model's context length).
        stride: new tokens scored per window after the first; 1 <= stride <= max_length.
            Smaller strides give more context per token and cost more forward passes.
        batch_size: windows per forward pass. Windows of equal shape are batched (all but
            the first and last are equal); no padding is ever needed.
        max_tokens: score only the first ``max_tokens`` tokens of the corpus (CPU budgets);
            None = all. The result's ``tokens`` says how many were scored.
        progress: called as ``progress(windows done, windows in all)`` after each batch
            (a progress bar); never changes the result.

    Runs under ``torch.inference_mode`` with the model in eval mode (dropout off), then
    restores each submodule's training flag as it was (a frozen backbone left in eval
    stays there). Only the scored positions reach the LM head (``logits_to_keep``), so
    no [batch, window, vocabulary] tensor is built for the context positions.
    """
    if input_ids.dim() == 2 and input_ids.shape[0] == 1:
        input_ids = input_ids[0]
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must be [N] or [1, N], got {tuple(input_ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None:
        input_ids = input_ids[:max_tokens]
    if input_ids.numel() < 2:
        raise ValueError(f"need at least 2 tokens for perplexity, got {input_ids.numel()}")
    windows = sliding_windows(input_ids.numel(), max_length, stride)
    ids = input_ids.to(device=_device(model), dtype=torch.long)
    keep, cache = _forward_options(model)

    modes = {module: module.training for module in model.modules()}
    model.eval()
    nll_sum, tokens, done = 0.0, 0, 0
    try:
        with torch.inference_mode():
            # Consecutive windows of one shape (length, scored) form batches of batch_size.
            for _, group in groupby(windows, key=lambda w: (w.end - w.begin, w.scored)):
                group = list(group)
                for start in range(0, len(group), batch_size):
                    chunk = group[start : start + batch_size]
                    batch = torch.stack([ids[w.begin : w.end] for w in chunk])  # [B, W]
                    targets = torch.stack(
                        [ids[w.end - w.scored + 1 : w.end + 1] for w in chunk]
                    )  # [B, S]
                    nll_sum += _batch_nll(model, batch, targets, keep, cache)
                    tokens += targets.numel()
                    done += len(chunk)
                    if progress is not None:
                        progress(done, len(windows))
    finally:
        for module, mode in modes.items():
            module.train(mode)
    try:
        ppl = math.exp(nll_sum / tokens)
    except OverflowError:  # mean NLL > ~709 nats: a broken model; report inf, not a crash
        ppl = math.inf
    return PerplexityResult(ppl=ppl, nll_sum=nll_sum, tokens=tokens)


def tokenize_corpus(tokenizer: object, text: str, add_special_tokens: bool = True) -> torch.Tensor:
    """Tokenise the whole corpus once into a LongTensor [N].

    ``verbose=False`` silences the "sequence length is longer than the specified maximum"
    warning: the corpus is meant to be longer than the model's context, and the sliding
    window never feeds more than ``max_length`` tokens at once. No truncation. Special
    tokens follow the tokenizer's default (e.g. Llama's BOS at the start), as in the guide.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"text must be one string (join documents first), got {type(text).__name__}"
        )
    encoding = tokenizer(  # type: ignore[operator]
        text,
        add_special_tokens=add_special_tokens,
        return_attention_mask=False,
        truncation=False,
        verbose=False,
    )
    return torch.tensor(encoding["input_ids"], dtype=torch.long)
