"""A shuffling sampler whose order is a pure function of (seed, epoch) and can resume mid-epoch.

Lightning calls ``set_epoch`` before every epoch. To resume inside an epoch, the data
module records ``(epoch, batches consumed)`` in the step checkpoint and hands it back
through ``resume_from``; the next iteration then replays that epoch's permutation from the
first unconsumed example, so a resumed run sees exactly the batches an uninterrupted one
would. A checkpoint taken on the last batch of an epoch is a finished epoch: Lightning
restarts at the next one (its ``set_epoch`` says so) and the recorded position is dropped,
rather than replaying the finished epoch from its end (an empty epoch: one epoch lost).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShuffleSampler(Sampler[int]):
    def __init__(self, num_examples: int, seed: int, batch_size: int) -> None:
        self.num_examples = num_examples
        self.seed = seed
        self.batch_size = batch_size
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_from(self, epoch: int, batches_consumed: int) -> None:
        """Make the next iteration continue ``epoch`` after ``batches_consumed`` batches."""
        self._resume = (epoch, batches_consumed)

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_examples, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._resume is not None:
            (epoch, batches), self._resume = self._resume, None
            if epoch == self.epoch:  # resuming inside this epoch; else it had finished
                skip = batches * self.batch_size
        yield from self.permutation(self.epoch)[skip:]

    def __len__(self) -> int:
        return self.num_examples
