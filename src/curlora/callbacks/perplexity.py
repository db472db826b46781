"""Measures the backbone's perplexity on the LM corpus at every evaluation point.

Sliding window over the whole concatenated corpus, token-weighted mean NLL (the Hugging
Face perplexity guide); the computation is the pure function
``curlora.metrics.perplexity.sliding_window_perplexity``, the corpus comes from
``trainer.datamodule.corpus_ids``. ``max_tokens`` caps the corpus for CPU runs (None = all
of it; the result reports the token count either way). After each validation pass,
:attr:`result` holds the typed measurement (None when the data has no corpus).
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from tqdm.auto import tqdm

from curlora.metrics.perplexity import sliding_window_perplexity, sliding_windows
from curlora.run.record import PerplexityScore


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
        self.result: PerplexityScore | None = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        corpus = trainer.datamodule.corpus_ids
        if corpus is None:
            return
        if trainer.world_size > 1:
            # Several processes hold the same model: the first measures, the others wait
            # for its number, so it is measured once and equals a one-process run's.
            measured = self._measure(trainer, pl_module, corpus) if trainer.is_global_zero else None
            self.result = trainer.strategy.broadcast(measured, src=0)
        else:
            self.result = self._measure(trainer, pl_module, corpus)

    def _measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule, corpus: torch.Tensor
    ) -> PerplexityScore:
        """``corpus``: [N] token ids."""
        bar = None
        if trainer.progress_bar_callback is not None and trainer.is_global_zero:
            n = corpus.numel() if self.max_tokens is None else min(corpus.numel(), self.max_tokens)
            total = len(sliding_windows(n, self.max_length, self.stride))
            bar = tqdm(total=total, desc="Perplexity", unit="window", leave=False)

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            measured = sliding_window_perplexity(
                pl_module.backbone,
                corpus.to(pl_module.device),
                max_length=self.max_length,
                stride=self.stride,
                batch_size=self.batch_size,
                max_tokens=self.max_tokens,
                progress=progress if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        return PerplexityScore(ppl=measured.ppl, tokens=measured.tokens)
