"""The base of the head protocols (``curlora.models.heads``) and where they read."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} is not valid; valid: the head's name")

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
