"""Measures the backbone's perplexity on the LM corpus at every evaluation point.

Sliding window over the whole concatenated corpus, token-weighted mean NLL (the Hugging
Face perplexity guide); the computation is the pure function
``curlora.metrics.perplexity.sliding_window_perplexity``. ``max_tokens`` caps the corpus
for CPU runs (None = all of it; results report the token count either way).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from curlora.metrics.perplexity import sliding_window_perplexity


class PerplexityCallback(Callback):
    def __init__(
        self,
        max_length: int = 512,
        stride: int = 256,
        batch_size: int = 4,
        max_tokens: int | None = None,
    ) -> None:
        self.max_length = max_length
        self.stride = stride
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.initial: float | None = None
        self.after_task: list[float | None] = []
        self.tokens: int | None = None

    def reset(self, num_tasks: int) -> None:
        self.initial, self.after_task, self.tokens = None, [None] * num_tasks, None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        corpus = pl_module.task_data.corpus_ids
        if corpus is None:
            return
        result = sliding_window_perplexity(
            pl_module.backbone,
            corpus.to(pl_module.device),
            max_length=self.max_length,
            stride=self.stride,
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
        )
        point = int(getattr(pl_module, "eval_point", -1))
        if point < 0:
            self.initial = result.ppl
        else:
            self.after_task[point] = result.ppl
        self.tokens = result.tokens
        for logger in trainer.loggers:
            logger.log_metrics({"lm/ppl": result.ppl, "tasks_trained": point + 1}, step=point + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "after_task": self.after_task, "tokens": self.tokens}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)
