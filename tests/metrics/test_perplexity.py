"""Sliding-window perplexity against an explicit token-by-token computation.

Source of the expected numbers: the definition (as in the Hugging Face perplexity
guide): perplexity = exp(Σ_t −log p(x_t | context_t) / #t) over t = 1..N−1, each target
predicted once, with the context its window gives it. The reference below runs one forward
pass per target on exactly that context, with no windows, batching or logits_to_keep.
"""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from curlora.metrics.perplexity import sliding_window_perplexity, sliding_windows, tokenize_corpus


def context_start(t: int, n: int, max_length: int, stride: int) -> int:
    """First context token of target t (module docstring's layout, in closed form).

    Targets 1..L form the first block; then blocks of ``stride`` targets. A block ending at
    target e is predicted from the L tokens before e+1, i.e. tokens [max(0, e − L), e).
    """
    if t <= max_length:
        block_end = min(max_length, n - 1)
    else:
        block_end = min(n - 1, max_length + stride * math.ceil((t - max_length) / stride))
    return max(0, block_end - max_length)


def token_by_token_nll(model: nn.Module, ids: torch.Tensor, max_length: int, stride: int) -> float:
    n, total = ids.numel(), 0.0
    with torch.no_grad():
        for t in range(1, n):
            context = ids[context_start(t, n, max_length, stride) : t]
            assert 1 <= context.numel() <= max_length
            logits = model(input_ids=context[None]).logits[0, -1]
            total -= float(torch.log_softmax(logits.double(), dim=-1)[ids[t]])
    return total


_REFERENCE: dict[tuple[int, int], float] = {}  # one token-by-token pass per window shape


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize(("max_length", "stride"), [(8, 8), (8, 3), (8, 1)])
def test_matches_token_by_token(
    tiny_lm: LlamaForCausalLM,
    corpus_ids: torch.Tensor,
    max_length: int,
    stride: int,
    batch_size: int,
) -> None:
    result = sliding_window_perplexity(
        tiny_lm, corpus_ids, max_length, stride, batch_size=batch_size
    )
    if (max_length, stride) not in _REFERENCE:
        _REFERENCE[max_length, stride] = token_by_token_nll(tiny_lm, corpus_ids, max_length, stride)
    expected = _REFERENCE[max_length, stride]
    assert result.tokens == corpus_ids.numel() - 1  # 44: every token but the first, once
    assert result.nll_sum == pytest.approx(expected, rel=1e-5)
    assert result.ppl == pytest.approx(math.exp(expected / 44), rel=1e-5)


def test_windows_score_every_target_once_with_enough_context() -> None:
    # Invariants of the layout for many shapes: targets 1..N−1 each scored once, each window
    # feeds <= L tokens, and every target sees min(t, L − s + 1) tokens of context or more.
    for n in (2, 3, 9, 10, 17, 45):
        for max_length in (1, 2, 4, 8):
            for stride in range(1, max_length + 1):
                targets: list[int] = []
                for w in sliding_windows(n, max_length, stride):
                    assert 0 < w.end - w.begin <= max_length
                    for t in range(w.end - w.scored + 1, w.end + 1):
                        targets.append(t)
                        assert t - w.begin >= min(t, max_length - stride + 1)
                assert targets == list(range(1, n))


def test_one_window_equals_the_models_own_loss(
    tiny_lm: LlamaForCausalLM, corpus_ids: torch.Tensor
) -> None:
    # Source: transformers' causal-LM loss, the mean NLL of tokens 1..N−1 given the prefix.
    ids = corpus_ids[:6]
    with torch.no_grad():
        hf_loss = float(tiny_lm(input_ids=ids[None], labels=ids[None]).loss)
    result = sliding_window_perplexity(tiny_lm, ids, max_length=16, stride=16)
    assert result.tokens == 5
    assert result.nll_sum / 5 == pytest.approx(hf_loss, rel=1e-5)


def test_accepts_batch_dim_and_caps_tokens(
    tiny_lm: LlamaForCausalLM, corpus_ids: torch.Tensor
) -> None:
    capped = sliding_window_perplexity(tiny_lm, corpus_ids[None], 8, 4, max_tokens=20)
    direct = sliding_window_perplexity(tiny_lm, corpus_ids[:20], 8, 4)
    assert capped.tokens == 19  # max_tokens − 1 predicted tokens
    assert capped.nll_sum == pytest.approx(direct.nll_sum, rel=1e-6)


class LogitsOnly(nn.Module):
    """A model whose forward takes only input_ids and returns a tuple: the fallback path."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.inner(input_ids=input_ids).logits,)


def test_models_without_logits_to_keep(tiny_lm: LlamaForCausalLM, corpus_ids: torch.Tensor) -> None:
    wrapped = sliding_window_perplexity(LogitsOnly(tiny_lm), corpus_ids, 8, 3, batch_size=2)
    expected = token_by_token_nll(tiny_lm, corpus_ids, 8, 3)
    assert wrapped.nll_sum == pytest.approx(expected, rel=1e-5)


def test_eval_mode_inside_and_training_flags_restored(corpus_ids: torch.Tensor) -> None:
    config = LlamaConfig(
        vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).train()
    model.lm_head.eval()  # a submodule deliberately in eval must stay so
    first = sliding_window_perplexity(model, corpus_ids, 8, 4)
    second = sliding_window_perplexity(model, corpus_ids, 8, 4)
    assert first.nll_sum == second.nll_sum  # dropout (p = 0.5) was off: identical passes
    assert first.nll_sum == pytest.approx(
        token_by_token_nll(model.eval(), corpus_ids, 8, 4), rel=1e-5
    )
    model.train()
    model.lm_head.eval()
    sliding_window_perplexity(model, corpus_ids, 8, 4)
    assert model.training and model.model.training and not model.lm_head.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_length": 4, "stride": 5}, "stride"),
        ({"max_length": 0, "stride": 1}, "must be >= 1"),
        ({"max_length": 4, "stride": 2, "batch_size": 0}, "batch_size"),
        ({"max_length": 4, "stride": 2, "max_tokens": 1}, "at least 2 tokens"),
    ],
)
def test_invalid_arguments_raise(
    tiny_lm: LlamaForCausalLM, corpus_ids: torch.Tensor, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sliding_window_perplexity(tiny_lm, corpus_ids, **kwargs)


def test_tokenize_corpus_whole_text_without_length_warning() -> None:
    words = ["the", "cat", "sat", "on", "mat"]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="the"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=4)
    text = " ".join(words * 4)  # 20 tokens > model_max_length = 4
    ids = tokenize_corpus(tokenizer, text)
    assert ids.dtype == torch.long and ids.shape == (20,)  # no truncation
    assert ids.tolist() == list(range(5)) * 4
    # transformers records this flag exactly when it emits the max-length warning
    assert (
        "sequence-length-is-longer-than-the-specified-maximum" not in tokenizer.deprecation_warnings
    )
    with pytest.raises(TypeError, match="one string"):
        tokenize_corpus(tokenizer, ["a", "b"])  # type: ignore[arg-type]
