"""Data sources: where a task's splits and the language-modelling corpus come from.

A *task source* is ``load_split(spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset``
returning the split with the columns the spec names (``text_field``, optional
``text_pair_field``, ``label_field``; raw labels, before ``label_map``).
A *corpus source* is ``load_corpus(corpus_cfg: Mapping, cache_dir: Path) -> str`` returning the
whole evaluation corpus as one string (documents joined as the config says).

Sources are looked up by name and imported lazily, so a run that uses synthetic data never
imports the Hub or archive code. Adding a source is one module plus one line in each table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

    from curlora.data.tasks import TaskSpec

TASK_SOURCES: dict[str, str] = {
    "synthetic": "curlora.data.sources.synthetic:load_split",
    "hub": "curlora.data.sources.hub:load_split",
    "offline": "curlora.data.sources.offline:load_split",
}
CORPUS_SOURCES: dict[str, str] = {
    "synthetic": "curlora.data.sources.synthetic:load_corpus",
    "hub": "curlora.data.sources.hub:load_corpus",
    "offline": "curlora.data.sources.offline:load_corpus",
}


def _resolve(table: Mapping[str, str], kind: str, name: str) -> Callable[..., Any]:
    if name not in table:
        raise ValueError(f"unknown {kind} source '{name}'; valid sources: {sorted(table)}")
    module_name, attr = table[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def load_task_split(spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset:
    """Load one split of a task from the source its spec names."""
    return _resolve(TASK_SOURCES, "task", spec.source)(spec, split, Path(cache_dir))


def load_corpus(corpus_cfg: Mapping[str, Any], cache_dir: Path) -> str:
    """Load the perplexity corpus (one string) from the source its config names."""
    return _resolve(CORPUS_SOURCES, "corpus", corpus_cfg["source"])(corpus_cfg, Path(cache_dir))
