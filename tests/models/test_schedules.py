"""The cosine schedule keeps a warmup longer than the task, as the paper's code did, and
says so in the log."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from curlora.models.schedules import cosine_with_warmup


def _lrs(steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2.5e-4)
    schedule = cosine_with_warmup(optimizer, num_training_steps=steps, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_warmup_longer_than_the_task_only_rises_and_is_reported(caplog) -> None:
    # The paper: 500 warmup steps, 375 steps per task (1000 records, batch 8, 3 epochs).
    with caplog.at_level(logging.WARNING):
        lrs = _lrs(375, warmup_steps=500)
    assert all(b > a for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(2.5e-4 * 374 / 500)  # never the peak
    (message,) = [r.getMessage() for r in caplog.records]
    assert "500 warmup steps" in message and "375 optimizer steps" in message


def test_warmup_ratio_peaks_then_decays() -> None:
    lrs = _lrs(50, warmup_ratio=0.1)
    assert max(lrs) == pytest.approx(2.5e-4) and lrs.index(max(lrs)) == 5
    assert lrs[-1] < lrs[5]
