"""How a task's answer is read from the backbone: the ``head`` config group.

A head object (built from ``configs/head/<name>.yaml`` by its ``_target_``, like methods
and strategies) decides four things, and the module, the loop and every strategy go
through it, so the task loop is the same for both protocols:

- ``make_heads``: one module per task mapping the features ``[B, H]`` to class logits
  ``[B, C]`` (``ContinualLitModule.heads``; strategies read it as ``module.heads[task]``);
- ``read_index``: where the features are read in each sequence (``[B]`` positions);
- ``loss``: the training loss of a batch from its hidden states;
- ``exact_match``: per example, whether the answer is right over the whole vocabulary
  (None where the protocol has no such score).

``linear`` (the paper's protocol, the default): a fresh ``Linear(H, C)`` per task on the
last text token. ``words`` (the LLM continual-learning literature's): the language model
answers in words through its own frozen LM head (``curlora.models.heads.words``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from curlora.registry import build

HEADS_PACKAGE = "curlora.models.heads"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position of each row, for right or left padding.

    attention_mask: [B, T] of 0/1 → [B]. Flipping makes argmax find the *last* 1.
    """
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).to(torch.int64).argmax(dim=1)


@dataclasses.dataclass
class Head:
    """Base of the protocols (see the module docstring); the defaults are ``linear``'s."""

    answers_in_words: ClassVar[bool] = False
    """Whether examples are prompts followed by an answer word (the data module builds them)."""

    name: str = "linear"

    def prepare_backbone(self, backbone: nn.Module) -> int:
        """Adjust what trains in the adapted backbone; returns how many parameters it froze."""
        return 0

    def make_heads(
        self,
        hidden: int,
        task_classes: Mapping[str, int],
        backbone: nn.Module,
        answer_tokens: Mapping[str, Sequence[int]] | None = None,
    ) -> nn.ModuleDict:
        raise NotImplementedError

    def read_index(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The position whose final hidden state the task's head reads: [B]."""
        return last_token_index(batch["attention_mask"])

    def loss(
        self,
        backbone: nn.Module,
        hidden: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        logits: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-entropy of the head's logits [B, C] against the labels [B]."""
        return F.cross_entropy(logits, batch["labels"])

    def exact_match(
        self, backbone: nn.Module, head: nn.Module, features: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        return None


def build_head(cfg: Any) -> Head:
    """The head a ``head`` config node names (``linear`` when the config has none)."""
    if cfg is None:
        from curlora.models.heads.linear import LinearHeads

        return LinearHeads()
    return build(cfg, Head, "head", HEADS_PACKAGE)
