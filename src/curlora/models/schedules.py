"""Learning-rate schedules, configured with ``_partial_: true`` and completed by the module."""

from __future__ import annotations

import logging

import torch
from transformers import get_cosine_schedule_with_warmup

log = logging.getLogger(__name__)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Transformers' cosine schedule; warmup as a step count (paper: 500) or a ratio.

    ``num_training_steps`` is the task's total optimizer steps, filled in by the module
    from ``trainer.estimated_stepping_batches``. A warmup longer than the task is kept as
    configured, so the learning rate only rises and never reaches its peak: that is what
    the paper's reference code did (500 warmup steps, ``get_cosine_schedule_with_warmup``,
    on tasks of ~375 batches), and ``experiment=paper`` reproduces it. A warning states
    both numbers.
    """
    if (warmup_steps is None) == (warmup_ratio is None):
        raise ValueError("set exactly one of scheduler.warmup_steps and scheduler.warmup_ratio")
    warmup = warmup_steps if warmup_steps is not None else round(warmup_ratio * num_training_steps)
    if warmup > num_training_steps:
        peak = num_training_steps / warmup
        log.warning(
            "scheduler: %d warmup steps but the task has %d optimizer steps: the learning rate "
            "only rises, to %.0f%% of its peak on the last step",
            warmup,
            num_training_steps,
            100 * peak,
        )
    return get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps
    )
