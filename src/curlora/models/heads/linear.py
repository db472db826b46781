"""The paper's protocol: a fresh linear classifier per task (``configs/head/linear.yaml``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from torch import nn

from curlora.models.heads.base import Head


@dataclasses.dataclass
class LinearHeads(Head):
    """One ``Linear(H, num_classes)`` per task on the final hidden state of the last text
    token, trained from scratch with the task (fp32 whatever the backbone dtype: tiny, and
    they start from random); earlier tasks' heads get no gradient afterwards. Loss:
    cross-entropy over the task's classes. Forgetting can only come from the shared
    adapter's drift."""

    name: str = "linear"

    def make_heads(
        self,
        hidden: int,
        task_classes: Mapping[str, int],
        backbone: nn.Module,
        answer_tokens: Mapping[str, Sequence[int]] | None = None,
    ) -> nn.ModuleDict:
        return nn.ModuleDict({t: nn.Linear(hidden, n) for t, n in task_classes.items()})
