"""A shuffling sampler whose order is a pure function of (seed, epoch) and can resume mid-epoch.

Lightning calls ``set_epoch`` before every epoch. To resume inside an epoch, the data
module records ``(epoch, batches consumed)`` in the step checkpoint and hands it back
through ``resume_from``; the next iteration then replays that epoch's permutation from the
first unconsumed example, so a resumed run sees exactly the batches an uninterrupted one
would. A checkpoint taken on the last batch of an epoch is a finished epoch: Lightning
restarts at the next one (its ``set_epoch`` says so) and the recorded position is dropped,
rather than replaying the finished epoch from its end (an empty epoch: one epoch lost).

Several processes (DDP): each process gets its own ``rank`` and ``num_replicas`` and reads
positions ``rank, rank + num_replicas, ...`` of the same seeded order, padded by wrapping
around to a multiple of ``num_replicas`` so that every process trains the same number of
batches (as ``torch.utils.data.DistributedSampler`` does). The resume position is counted
in each process's own batches, which are the same number on every process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShuffleSampler(Sampler[int]):
    """Seeded shuffle per epoch, resumable mid-epoch; optionally grouped by length.

    ``lengths`` (optional) turns on length grouping: the epoch's seeded permutation is cut
    into chunks of ``GROUP_BATCHES`` batches and each chunk is sorted by length, so a batch
    holds examples of similar length (less padding) while the order stays a pure function of
    (seed, epoch). It changes which examples share a batch, hence the gradients: an option
    (``data.group_by_length``), off by default.
    """

    GROUP_BATCHES = 50

    def __init__(
        self,
        num_examples: int,
        seed: int,
        batch_size: int,
        lengths: list[int] | None = None,
        rank: int = 0,
        num_replicas: int = 1,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.num_examples = num_examples
        self.rank = rank
        self.num_replicas = num_replicas
        self.seed = seed
        self.batch_size = batch_size
        self.lengths = lengths
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_from(self, epoch: int, batches_consumed: int) -> None:
        """Make the next iteration continue ``epoch`` after ``batches_consumed`` batches."""
        self._resume = (epoch, batches_consumed)

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_examples, generator=generator).tolist()
        if self.lengths is None:
            return order
        size = self.batch_size * self.GROUP_BATCHES
        lengths = self.lengths
        return [
            i
            for start in range(0, len(order), size)
            for i in sorted(order[start : start + size], key=lambda j: -lengths[j])
        ]

    def shard(self, order: list[int]) -> list[int]:
        """This process's part of ``order``: every ``num_replicas``-th position from ``rank``,
        after wrapping ``order`` around to a multiple of ``num_replicas`` (all of it for one
        process)."""
        if self.num_replicas == 1:
            return order
        total = len(self) * self.num_replicas
        padded = [order[i % len(order)] for i in range(total)] if order else []
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._resume is not None:
            (epoch, batches), self._resume = self._resume, None
            if epoch == self.epoch:  # resuming inside this epoch; else it had finished
                skip = batches * self.batch_size
        yield from self.shard(self.permutation(self.epoch))[skip:]

    def __len__(self) -> int:
        """Examples this process draws per epoch."""
        return math.ceil(self.num_examples / self.num_replicas)


class LengthSortedBatches(Sampler[list[int]]):
    """Evaluation batches of examples of similar length, longest first.

    Padding to the longest example of a batch wastes compute on the padded positions; in
    the dataset's own order about half of an eval batch is padding (texts of 10 to 160
    tokens side by side). Sorted by length, a batch holds neighbours in length and almost
    nothing is padded. Which batch an example lands in cannot change its score (padding is
    masked and causal attention never looks right), and per-task accuracy and confusion
    counts are sums, so the order does not matter. Longest first: a batch that does not
    fit in memory fails at once, not at the end. Deterministic (ties keep dataset order).

    Several processes (DDP): ``rank`` of ``num_replicas`` takes every ``num_replicas``-th
    example of the length order, with no padding, so that each example is scored exactly
    once over all processes (a process may hold one example fewer than another; evaluation
    has no collective step per batch, so that is allowed).
    """

    def __init__(
        self, lengths: list[int], batch_size: int, rank: int = 0, num_replicas: int = 1
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.batch_size = batch_size
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])[rank::num_replicas]
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from (list(b) for b in self.batches)

    def __len__(self) -> int:
        return len(self.batches)
