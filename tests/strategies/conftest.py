"""A tiny module and datamodule that satisfy the contract in ``curlora.strategies.base``.

``FakeModule``: frozen EmbeddingBag "backbone" (mean over non-pad tokens) → a trainable
``adapter`` matrix → tanh → one Linear head per task. ``unused`` is trainable but enters
no loss (its Fisher must be exactly zero). ``FakeDataModule``: random token sequences of
varying length per task, labels in ``0..num_classes-1``, and ``index`` values that are
neither contiguous nor zero-based (row numbers of a larger split), padded with id 0.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

NUM_CLASSES = {"a": 2, "b": 3, "c": 2}
VOCAB, HIDDEN, N_TRAIN = 12, 4, 24


class FakeModule(nn.Module):
    def __init__(self, num_classes: dict[str, int] = NUM_CLASSES, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.EmbeddingBag(VOCAB, HIDDEN, mode="mean", padding_idx=0)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(VOCAB, HIDDEN, generator=g))
            self.embed.weight[0].zero_()
        self.embed.weight.requires_grad_(False)  # frozen backbone
        self.adapter = nn.Parameter(
            torch.eye(HIDDEN) + 0.3 * torch.randn(HIDDEN, HIDDEN, generator=g)
        )
        self.unused = nn.Parameter(torch.ones(3))  # trainable, reaches no loss
        self.heads = nn.ModuleDict({t: nn.Linear(HIDDEN, c) for t, c in num_classes.items()})
        with torch.no_grad():
            for head in self.heads.values():
                head.weight.copy_(torch.randn(head.weight.shape, generator=g))
                head.bias.copy_(torch.randn(head.bias.shape, generator=g))
        self.modes_seen: list[bool] = []  # self.training at every task_logits call
        self.calls = 0

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, T] token ids → [B, HIDDEN]."""
        return torch.tanh(self.embed(batch["input_ids"]) @ self.adapter.T)

    def task_logits(self, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        self.modes_seen.append(self.training)
        self.calls += 1
        return self.heads[task](self.features(batch))

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


class FakeDataModule:
    def __init__(self, num_classes: dict[str, int] = NUM_CLASSES, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.num_classes = dict(num_classes)
        self.examples: dict[str, list[dict[str, Any]]] = {}
        for t, c in num_classes.items():
            rows = []
            for i in range(N_TRAIN):
                length = int(torch.randint(2, 7, (1,), generator=g))
                rows.append(
                    {
                        "input_ids": torch.randint(1, VOCAB, (length,), generator=g).tolist(),
                        "label": i % c,  # every class present
                        "index": 3 * i + 5,
                    }
                )
            self.examples[t] = rows

    def train_examples(self, task: str) -> list[dict[str, Any]]:
        return self.examples[task]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.zeros(len(examples), width, dtype=torch.long)
        for r, e in enumerate(examples):
            ids[r, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        return {
            "input_ids": ids,
            "attention_mask": (ids != 0).long(),
            "labels": torch.tensor([e["label"] for e in examples]),
            "index": torch.tensor([e["index"] for e in examples]),
        }

    def train_dataloader_for(self, task: str) -> DataLoader:
        return DataLoader(self.examples[task], batch_size=8, collate_fn=self.collate)


@pytest.fixture
def module() -> FakeModule:
    return FakeModule()


@pytest.fixture
def datamodule() -> FakeDataModule:
    return FakeDataModule()
