"""A random tiny Llama and a word-level tokenizer built in memory: tests and CI, no downloads.

The tokenizer's vocabulary is the synthetic data's words plus specials; other words map to
``[UNK]``. The model is a ``LlamaForCausalLM`` from a ``LlamaConfig`` whose sizes come from
the config (defaults: hidden 64, 2 layers), initialised from ``init_seed`` so every run and
test sees the same "pretrained" weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from curlora.data.sources.synthetic import VOCABULARY
from curlora.models.source import ModelSource

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]"]


def build_tokenizer(extra_words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: lower-cased, split on whitespace and punctuation."""
    words = [*SPECIALS, *VOCABULARY, *(extra_words or [])]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        sep_token="[SEP]",
        model_max_length=int(1e9),
    )


def load_config(model_cfg: Mapping[str, Any], cache_dir: Path) -> LlamaConfig:
    vocab_size = len(build_tokenizer().get_vocab())
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=int(model_cfg.get("hidden_size", 64)),
        intermediate_size=int(model_cfg.get("intermediate_size", 128)),
        num_hidden_layers=int(model_cfg.get("num_hidden_layers", 2)),
        num_attention_heads=int(model_cfg.get("num_attention_heads", 4)),
        num_key_value_heads=int(model_cfg.get("num_key_value_heads", 2)),
        max_position_embeddings=int(model_cfg.get("max_position_embeddings", 512)),
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
    )


@dataclasses.dataclass
class TinyLlama(ModelSource):
    """A random tiny Llama (``configs/model/tiny_llama.yaml``): sizes, and ``init_seed``
    fixing its "pretrained" weights independently of the run seed."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    init_seed: int = 0

    def architecture(self, cache_dir: Path) -> LlamaConfig:
        return load_config(self.as_config(), cache_dir)

    def load(self, cache_dir: Path) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
        return load(self.as_config(), cache_dir)


def load(
    model_cfg: Mapping[str, Any], cache_dir: Path
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    config = load_config(model_cfg, cache_dir)
    # Fork the RNG so building the model never shifts the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(model_cfg.get("init_seed", 0)))
        model = LlamaForCausalLM(config)
    model.eval()
    return model, build_tokenizer()
