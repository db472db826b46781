"""Experience replay with a fixed-size reservoir buffer per past task.

After task ``s`` trains, ``buffer_size`` of its training examples are kept, chosen by
reservoir sampling (Vitter 1985, "Random sampling with a reservoir", ACM TOMS 11(1),
Algorithm R, credited there to Waterman: every example of the stream ends up in the buffer
with probability ``buffer_size / n``). During every later task each training batch is
accompanied by one batch per past task, drawn from that task's buffer and scored by that
task's own head with cross-entropy (the module scores them and adds each replay loss to
the task loss). This is the "tiny episodic memory" form of replay (Chaudhry et al. 2019,
arXiv 1902.10486) with one reservoir per task instead of a single shared one, so every past
task keeps the same share of memory however long the sequence.

The buffer stores the examples exactly as ``datamodule.train_examples`` returns them
(token ids, label, index), so it is saved with the checkpoints and a resumed run replays
the same examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from curlora.strategies.base import (
    Batch,
    ContinualModel,
    Strategy,
    TaskData,
    batch_to,
    check_int,
    new_generator,
    require_datamodule,
)

T = TypeVar("T")


def reservoir_sample(
    stream: Iterable[T], size: int, generator: torch.Generator
) -> tuple[list[T], int]:
    """Vitter's Algorithm R: a uniform ``size``-subset of ``stream`` in one pass.

    Returns ``(buffer, n_seen)``. The first ``size`` items fill the buffer; item ``i``
    (0-based, ``i ≥ size``) draws ``j`` uniformly from ``0..i`` and replaces slot ``j`` when
    ``j < size``, so each item is kept with probability ``size / n``. A stream shorter
    than ``size`` is kept whole.
    """
    buffer: list[T] = []
    seen = 0
    for item in stream:
        if seen < size:
            buffer.append(item)
        else:
            j = int(torch.randint(0, seen + 1, (1,), generator=generator))
            if j < size:
                buffer[j] = item
        seen += 1
    return buffer, seen


class Replay(Strategy):
    """Experience replay from a reservoir buffer per past task.

    A replayed batch is scored with its own task's loss: cross-entropy of that task's
    linear head under ``head=linear``; under ``head=words`` the causal-LM loss of its
    answer tokens (the buffer keeps the prompt + answer examples as they were built).

    Args:
        buffer_size: examples kept per past task (≥ 1). Default 100: a tenth of a
            1000-example task (the paper's training size), a memory an order of magnitude
            smaller than the data, the regime replay is meant for. A round, untuned number.
        replay_batch_size: examples replayed per past task with every training batch (≥ 1),
            drawn without replacement from its buffer (all of it when the buffer is
            smaller). None (default): the size of the current training batch, so each past
            task's replay loss is a mean over as many examples as the current task's.
        seed: seeds the two local generators, one for the reservoir and one for drawing
            replay batches (config: ``${seed}``). Kept apart so that the buffer's content
            does not depend on how many batches earlier tasks drew.
    """

    name = "replay"

    def __init__(
        self, buffer_size: int = 100, replay_batch_size: int | None = None, seed: int = 0
    ) -> None:
        self.buffer_size = check_int("buffer_size", buffer_size, 1)
        self.replay_batch_size = (
            None
            if replay_batch_size is None
            else check_int("replay_batch_size", replay_batch_size, 1)
        )
        self.seed = check_int("seed", seed, 0)
        if self.seed >= 2**63:
            raise ValueError(f"strategy.seed={seed}: expected an integer < 2**63")
        self._reservoir_rng = new_generator(self.seed)
        self._sample_rng = new_generator(self.seed + 1)
        self._buffers: dict[str, list[dict[str, Any]]] = {}  # past task -> its examples
        self._seen: dict[str, int] = {}  # past task -> number of examples streamed
        self._collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None

    def buffer(self, task: str) -> list[dict[str, Any]]:
        """The examples kept for ``task`` (empty when it has no buffer)."""
        return list(self._buffers.get(task, []))

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Remember how to collate examples: ``extra_batches`` gets no datamodule."""
        self._collate = require_datamodule(self.name, "on_task_start", datamodule).collate

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Fill ``task``'s reservoir from its training examples (once per task)."""
        self._collate = require_datamodule(self.name, "on_task_end", datamodule).collate
        if task in self._buffers:
            return  # already filled (a resumed run repeating the hook)
        kept, seen = reservoir_sample(
            datamodule.train_examples(task), self.buffer_size, self._reservoir_rng
        )
        self._buffers[task] = kept
        self._seen[task] = seen

    def extra_batches(
        self, module: ContinualModel, task: str, batch: Batch
    ) -> list[tuple[str, dict[str, torch.Tensor]]]:
        """One collated batch per past task, in the order the tasks were trained.

        Each batch holds ``min(replay_batch_size or B, buffer)`` distinct buffer examples
        (``B`` = rows of the current batch) and lies on the current batch's device.
        """
        past = [t for t, kept in self._buffers.items() if t != task and kept]
        if not past:
            return []
        if self._collate is None:
            raise RuntimeError(
                "Replay.extra_batches called before on_task_start: the module must call "
                "on_task_start for the current task (also after a resume)"
            )
        size = self.replay_batch_size or int(batch["labels"].shape[0])
        device = batch["labels"].device
        out = []
        for past_task in past:
            kept = self._buffers[past_task]
            rows = torch.randperm(len(kept), generator=self._sample_rng)[:size].tolist()
            out.append((past_task, batch_to(self._collate([kept[r] for r in rows]), device)))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffers": {t: list(kept) for t, kept in self._buffers.items()},
            "seen": dict(self._seen),
            "reservoir_rng": self._reservoir_rng.get_state(),
            "sample_rng": self._sample_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, kept in state["buffers"].items():
            if len(kept) > self.buffer_size:
                raise ValueError(
                    f"replay state holds {len(kept)} examples for task '{t}', more than "
                    f"buffer_size={self.buffer_size}; resume with the run's own settings"
                )
        self._buffers = {t: list(kept) for t, kept in state["buffers"].items()}
        self._seen = dict(state["seen"])
        self._reservoir_rng.set_state(state["reservoir_rng"].cpu())
        self._sample_rng.set_state(state["sample_rng"].cpu())
