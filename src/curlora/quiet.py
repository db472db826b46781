"""A console worth reading: the run's own lines, progress bars, no library boilerplate.

Lightning prints, for every Trainer (one per task and per evaluation), which devices exist,
an advertisement and "Loading `train_dataloader` ...", through a handler of its own that
bypasses Hydra's (so they reach the console but never ``train.log``). Here Lightning's
loggers send everything through Hydra's handlers instead, at WARNING and above, and the
warnings known to be harmless for this project are silenced by their exact text, each
with its reason. Progress bars (training, each evaluation, the perplexity windows) are
tqdm's and are unaffected.
"""

from __future__ import annotations

import logging
import warnings

LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")

HARMLESS_WARNINGS: tuple[tuple[str, str], ...] = (
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "Lightning's pytree helper calls an API that this torch release deprecates; "
        "nothing in the run depends on it",
    ),
    (
        r"You defined a `validation_step` but have no `val_dataloader`",
        "training Trainers skip validation on purpose: every head is evaluated by the loop",
    ),
    (
        r"You're resuming from a checkpoint that ended before the epoch ended",
        "mid-epoch resume is exact here: the data module's state replays the epoch",
    ),
)


def configure_console() -> None:
    """Route Lightning's logs through the root handlers at WARNING; silence known noise."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.WARNING)
    for message, _reason in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
