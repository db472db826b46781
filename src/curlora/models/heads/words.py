"""The language model answers in words (``configs/head/words.yaml``).

Each example is a task's instruction template with the text filled in, followed by the
tokens of its class's label word (``curlora.data.templates``). Nothing new is trained for
a task: the LM head and the input embeddings are frozen and shared by every task, and only
the method's adapter learns. With ``W``: the LM head's weight ``[V, H]``, ``h``: the final
hidden state at the answer position (the last prompt token, which predicts the answer's
first token) ``[B, H]``:

- training loss: causal-LM cross-entropy on the answer tokens only (the prompt is masked):
  the hidden states at the answer's positions ``[N, H]`` (N = answer tokens in the batch)
  times ``Wᵀ`` → ``[N, V]``; never a ``[B, T, V]`` tensor;
- ``acc`` (rank classification): the class whose word's first token has the highest
  logit, ``h @ W[first tokens]ᵀ`` → ``[B, C]`` (the logits strategies read as the head's);
  the softmax normaliser is shared, so this ranks the words' log-likelihoods. The words of
  a task must differ in their first token, and only that token is ranked: a multi-token
  word is scored by its first token (exactly its total log-likelihood when every word is
  one token, as the shipped words are on SmolLM2);
- ``em`` (exact match): the argmax of ``h @ Wᵀ`` → ``[B, V]`` over the whole vocabulary is
  the right word's first token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from curlora.checks.config import ConfigError
from curlora.models.heads.base import Head, last_token_index


def output_layer(backbone: nn.Module) -> nn.Module:
    """The backbone's LM head (``get_output_embeddings``); ConfigError when it has none."""
    getter = getattr(backbone, "get_output_embeddings", None)
    layer = getter() if getter is not None else None
    if layer is None or getattr(layer, "weight", None) is None:
        raise ConfigError(
            f"head=words needs a language model with an LM head; {type(backbone).__name__} "
            "has none (get_output_embeddings() is None); valid: a causal LM, or head=linear"
        )
    return layer


def lm_logits(
    layer: nn.Module, hidden: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """``hidden [N, H] @ W[rows]ᵀ (+ bias)`` in fp32: ``[N, len(rows)]``, or ``[N, V]`` when
    ``rows`` is None."""
    weight = layer.weight if rows is None else layer.weight[rows]
    bias = getattr(layer, "bias", None)
    if bias is not None and rows is not None:
        bias = bias[rows]
    return F.linear(hidden.to(weight.dtype), weight, bias).float()


def label_token_ids(
    label_words: Mapping[str, Sequence[str]], tokenizer: PreTrainedTokenizerBase
) -> dict[str, list[list[int]]]:
    """Per task, each label word's token ids (no special tokens) in class order.

    Raises ConfigError naming the key when a word tokenises to nothing or two words of a
    task share their first token (rank classification and exact match read only it)."""
    out: dict[str, list[list[int]]] = {}
    for task, words in label_words.items():
        key = f"data.task_specs.{task}.label_words"
        ids = [list(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
        for word, tokens in zip(words, ids, strict=True):
            if not tokens:
                raise ConfigError(
                    f"{key}={list(words)!r} is not valid: {word!r} tokenises to nothing; "
                    "valid: words the model's tokenizer encodes"
                )
        firsts = [tokens[0] for tokens in ids]
        if len(set(firsts)) != len(firsts):
            pieces = tokenizer.convert_ids_to_tokens(firsts)
            raise ConfigError(
                f"{key}={list(words)!r} is not valid: two words share their first token "
                f"(first tokens {pieces}); valid: words whose first tokens differ"
            )
        out[task] = ids
    return out


class LabelWordHead(nn.Module):
    """A task's "head" under ``words``: ``[B, H]`` → the LM head's logits of its label
    words' first tokens ``[B, C]``. No parameter of its own: the LM head is the backbone's
    (kept out of this module's parameters and state, so it is never saved twice); the
    token ids are a buffer (saved with the heads)."""

    def __init__(self, first_tokens: Sequence[int], layer: nn.Module) -> None:
        super().__init__()
        self.register_buffer("token_ids", torch.tensor(list(first_tokens), dtype=torch.long))
        self.out_features = len(first_tokens)
        self._layer = (layer,)  # a tuple: not registered as a submodule

    @property
    def layer(self) -> nn.Module:
        return self._layer[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return lm_logits(self.layer, features, self.token_ids)


@dataclasses.dataclass
class LabelWords(Head):
    """The language model answers in words (see the module docstring)."""

    answers_in_words = True

    name: str = "words"

    def prepare_backbone(self, backbone: nn.Module) -> int:
        """Freeze the LM head and the input embeddings (shared by every task: the words
        mean the same thing all along); returns how many trainable parameters that froze.
        ConfigError when the backbone has no LM head."""
        frozen = 0
        layers = [output_layer(backbone), backbone.get_input_embeddings()]
        seen: set[int] = set()
        for layer in layers:
            for p in layer.parameters() if layer is not None else ():
                if p.requires_grad and id(p) not in seen:
                    frozen += p.numel()
                seen.add(id(p))
                p.requires_grad_(False)
        return frozen

    def make_heads(
        self,
        hidden: int,
        task_classes: Mapping[str, int],
        backbone: nn.Module,
        answer_tokens: Mapping[str, Sequence[Sequence[int]]] | None = None,
    ) -> nn.ModuleDict:
        if answer_tokens is None:
            raise ValueError("head=words needs each task's label-word token ids")
        layer = output_layer(backbone)
        return nn.ModuleDict(
            {t: LabelWordHead([ids[0] for ids in answer_tokens[t]], layer) for t in task_classes}
        )

    def read_index(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The last prompt token: the answer's ``answer_length`` tokens end the sequence."""
        return last_token_index(batch["attention_mask"]) - batch["answer_length"]

    def loss(
        self,
        backbone: nn.Module,
        hidden: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        logits: torch.Tensor,
    ) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens of the batch (prompt masked).

        hidden: [B, T, H]. Answer token k of row b sits at ``read[b] + 1 + k`` and is
        predicted from position ``read[b] + k``; only those N positions reach the LM head."""
        read = self.read_index(batch)  # [B]
        lengths = batch["answer_length"]  # [B]
        steps = torch.arange(int(lengths.max()), device=hidden.device)  # [L]
        taken = steps[None, :] < lengths[:, None]  # [B, L]
        positions = (read[:, None] + steps[None, :])[taken]  # [N]
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None].expand_as(taken)
        rows = rows[taken]  # [N]
        targets = batch["input_ids"][rows, positions + 1]  # [N]
        logits_v = lm_logits(output_layer(backbone), hidden[rows, positions])  # [N, V]
        return F.cross_entropy(logits_v, targets)

    def exact_match(
        self, backbone: nn.Module, head: nn.Module, features: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Whether the whole-vocabulary argmax at the answer position is the right word's
        first token: Bool[B] (features ``[B, H]`` → ``[B, V]``, one position per row)."""
        predicted = lm_logits(output_layer(backbone), features).argmax(dim=-1)  # [B]
        return predicted == head.token_ids[labels]
