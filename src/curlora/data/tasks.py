"""Task specifications: what one classification task of the sequence is, and the interface
of the source that loads it (:class:`TaskSource`; the sources themselves live in
``curlora.data.sources``, which builds on this module, never the other way round)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curlora.registry import build

if TYPE_CHECKING:
    import datasets

SOURCES_PACKAGE = "curlora.data.sources"
"""Where the task sources live (listed in the error for an unknown ``_target_``)."""


@dataclasses.dataclass
class TaskSource:
    """Base of every task source: ``load_split(spec, split, cache_dir)`` returns the split as
    a ``datasets.Dataset`` with the columns ``spec`` names (raw labels, before
    ``label_map``). Subclasses are dataclasses whose fields are the source's settings."""

    def options(self) -> dict[str, Any]:
        """The source's settings as a mapping."""
        return dataclasses.asdict(self)

    def load_split(self, spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset:
        raise NotImplementedError


def task_source(cfg: Mapping[str, Any] | TaskSource) -> TaskSource:
    """The task source a config node's ``_target_`` names (``curlora.registry``)."""
    return build(cfg, TaskSource, "data source", SOURCES_PACKAGE)


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
        template: the instruction the language model answers under ``head=words``, with
            ``{text}`` where the text goes and ``{pair}`` where the second text goes (pair
            tasks only), e.g. ``"Review: {text}\nSentiment:"``; unused under
            ``head=linear``. None: the task cannot run under ``head=words``.
        label_words: one answer per class, in class-id order, appended to the template's
            text under ``head=words`` (e.g. ``[" negative", " positive"]``: the leading
            space makes each one token for BPE tokenizers); the words of a task must differ
            in their first token.
        class_names: one name per class id, for displays (the W&B confusion matrices);
            None: ``class 0``, ``class 1``, ...
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
    template: str | None = None
    label_words: tuple[str, ...] | None = None
    class_names: Sequence[str] | None = None

    def display_names(self) -> list[str]:
        """The name of each class id: ``class_names``, else ``class <id>``."""
        if self.class_names is not None:
            return [str(n) for n in self.class_names]
        return [f"class {c}" for c in range(self.num_classes)]

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> TaskSpec:
        """Build from a (resolved) config mapping; unknown keys raise a TypeError naming them."""
        known = {f for f in cls.__dataclass_fields__ if f != "name"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise TypeError(
                f"task '{name}': unknown field(s) {unknown}; valid fields are {sorted(known)}"
            )
        values = dict(cfg)
        if values.get("label_map") is not None:
            values["label_map"] = dict(values["label_map"])
        if values.get("label_words") is not None:
            words = values["label_words"]
            if isinstance(words, str) or not isinstance(words, (list, tuple)):
                raise TypeError(f"task '{name}': label_words must be a list, got {words!r}")
            values["label_words"] = tuple(words)
        if values.get("class_names") is not None and not isinstance(values["class_names"], str):
            values["class_names"] = list(values["class_names"])
        try:
            values["source"] = task_source(values.get("source"))
        except (TypeError, ValueError) as error:
            raise TypeError(f"task '{name}': source: {error}") from None
        return cls(name=name, **values)
