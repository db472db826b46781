"""Task specifications: what one classification task of the sequence is and where it comes from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curlora.data.sources import TaskSource


@dataclass(frozen=True)
class TaskSpec:
    """One classification task of the continual sequence.

    Attributes:
        name: task name, used for its head, its metrics (``eval/<name>/acc``) and results.
        source: the ``TaskSource`` that loads its splits (built from the config's
            ``source`` node by its ``_target_``; see ``curlora.data.sources``).
        text_field: column holding the (first) text.
        text_pair_field: column holding the second text of a sentence pair, or None.
        label_field: column holding the integer label.
        num_classes: number of classes; labels must lie in ``0..num_classes-1`` after
            ``label_map``.
        train_split / eval_split: split names passed to the source.
        train_limit: at most this many training records, drawn with the run seed
            (the paper uses 1000); None keeps all.
        eval_limit: at most this many evaluation records, a fixed random subset that does
            not depend on the run seed; None keeps the whole split (what papers report).
        validation_limit: carve about this many records (whole groups) out of the training
            split as a validation set for model selection (learning rates): never trained
            on, scored at every evaluation point next to the eval split; fixed, whatever the
            run seed. None: no validation set.
        label_map: raw label value -> class id. Rows whose raw label is not a key are
            dropped and counted (e.g. Sentiment140's neutral tweets); None keeps labels as is.
    """

    name: str
    source: TaskSource
    text_field: str
    label_field: str
    num_classes: int
    train_split: str = "train"
    eval_split: str = "validation"
    text_pair_field: str | None = None
    train_limit: int | None = 1000
    eval_limit: int | None = None
    validation_limit: int | None = None
    label_map: Mapping[Any, int] | None = None

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> TaskSpec:
        """Build from a (resolved) config mapping; unknown keys raise a TypeError naming them."""
        known = {f for f in cls.__dataclass_fields__ if f != "name"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise TypeError(
                f"task '{name}': unknown field(s) {unknown}; valid fields are {sorted(known)}"
            )
        from curlora.data.sources import task_source

        values = dict(cfg)
        if values.get("label_map") is not None:
            values["label_map"] = dict(values["label_map"])
        try:
            values["source"] = task_source(values.get("source"))
        except (TypeError, ValueError) as error:
            raise TypeError(f"task '{name}': source: {error}") from None
        return cls(name=name, **values)
