"""Learning-rate schedules, configured with ``_partial_: true`` and completed by the module."""

from __future__ import annotations

import torch
from transformers import get_cosine_schedule_with_warmup


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Transformers' cosine schedule; warmup as a step count (paper: 500) or a ratio.

    ``num_training_steps`` is the task's total optimizer steps, filled in by the module
    from ``trainer.estimated_stepping_batches``. Warmup longer than the task is capped at
    the task length (the learning rate then only rises), and said so in the log.
    """
    if (warmup_steps is None) == (warmup_ratio is None):
        raise ValueError("set exactly one of scheduler.warmup_steps and scheduler.warmup_ratio")
    warmup = warmup_steps if warmup_steps is not None else round(warmup_ratio * num_training_steps)
    return get_cosine_schedule_with_warmup(
        optimizer,
        num_warmup_steps=min(warmup, num_training_steps),
        num_training_steps=num_training_steps,
    )
