"""Joint training, the usual upper bound of a continual-learning sequence.

At task i the model trains on tasks 0..i together: every training batch of the current
task comes with one batch from *each* earlier task's whole training data, scored by that
task's own head, and the losses are added (tasks weighted equally, as in multi-task
training with one batch per task and step). This is :class:`Replay` with a memory that
keeps every training example of every past task, so nothing has to be forgotten: the gap
between a method under ``joint`` and under ``sequential`` is the forgetting that
rehearsing all the data removes (Fawi 2024, CURLoRA, arXiv 2408.14572, reports only the
sequential protocol). Past tasks are sampled, not swept: the number of steps is the
current task's, so a past example is seen about batch / (its task's size) times per step.
"""

from __future__ import annotations

from curlora.strategies.replay import Replay

EVERY_EXAMPLE = 2**31 - 1  # a reservoir that never drops: every training example is kept


class Joint(Replay):
    """Replay of every training example of every past task.

    Each past batch adds its task's loss as in :class:`Replay`: the linear head's
    cross-entropy under ``head=linear``, the answer tokens' causal-LM loss under
    ``head=words``.

    Args:
        replay_batch_size: examples of each past task per training batch (≥ 1). None
            (default): the current batch's size, so every task's loss averages as many
            examples.
        seed: seeds the draws of past-task batches (config: ``${seed}``).
    """

    name = "joint"

    def __init__(self, replay_batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__(buffer_size=EVERY_EXAMPLE, replay_batch_size=replay_batch_size, seed=seed)
