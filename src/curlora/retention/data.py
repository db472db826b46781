"""The offline suite's data files: built once into the cache from pinned archive members.

Each offline task's rows (:mod:`curlora.retention.items`) are written as JSON lines to
``<cache root>/retention/<task>-v<ITEMS_VERSION>.jsonl`` (atomically: the file exists whole or
not at all) and read back by lm-eval's ``json`` dataset loader. The archives are the ones the
offline training data already pins (same file, same sha256); the new :class:`Asset` objects
only name more of their members, so they extract into folders of their own.
"""

from __future__ import annotations

import bz2
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curlora.data.assets import cache_root, ensure_asset
from curlora.data.sources.offline import (
    GENSIM,
    VADER,
    corpus_articles,
    parse_mediawiki_dump,
)
from curlora.data.validation import DataError
from curlora.retention.items import (
    Item,
    analogy_items,
    wiki_cloze_items,
    word_sentiment_items,
)
from curlora.run.atomic import atomic_write_text

ITEMS_VERSION = 1  # bump when a builder changes its rows: old files are then not reused

GENSIM_ANALOGIES = dataclasses.replace(
    GENSIM,
    name="gensim-4.4.0-analogies",
    members=(
        "gensim/test/test_data/questions-words.txt",
        "gensim-4.4.0.dist-info/licenses/COPYING",
    ),
    licence="LGPL-2.1-only (gensim); data: the word-analogy test set of Mikolov et al. 2013 "
    "(word2vec, Apache-2.0)",
)
VADER_LEXICON = dataclasses.replace(
    VADER,
    name="vaderSentiment-3.3.2-lexicon",
    members=(
        "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt",
        "vaderSentiment-3.3.2/LICENSE.txt",
    ),
    notes="VADER's sentiment lexicon: 7,500 tokens, each rated by 10 people from -4 to 4.",
)


def _analogies(semantic: bool) -> Callable[[Path], list[Item]]:
    def build(cache: Path) -> list[Item]:
        folder = ensure_asset(GENSIM_ANALOGIES, cache)
        text = (folder / "questions-words.txt").read_text(encoding="utf-8")
        return analogy_items(text, semantic=semantic)

    return build


def _word_sentiment(cache: Path) -> list[Item]:
    folder = ensure_asset(VADER_LEXICON, cache)
    return word_sentiment_items((folder / "vader_lexicon.txt").read_text(encoding="utf-8"))


def _wiki_cloze(cache: Path) -> list[Item]:
    # The articles outside the perplexity corpus (its "test" split), so the two measurements
    # never score the same text.
    folder = ensure_asset(GENSIM, cache)
    dump = next(folder.glob("enwiki-*.bz2"))
    articles = parse_mediawiki_dump(bz2.decompress(dump.read_bytes()))
    texts = corpus_articles(articles, "train")
    return wiki_cloze_items((t.split("\n", 1)[0], t) for t in texts)


BUILDERS: dict[str, Callable[[Path], list[Item]]] = {
    "analogy_semantic": _analogies(semantic=True),
    "analogy_syntactic": _analogies(semantic=False),
    "word_sentiment": _word_sentiment,
    "wiki_cloze": _wiki_cloze,
}
"""Offline task name → builder of its rows from the cache root."""


def _is_item(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and set(row) == {"query", "choices", "label"}
        and isinstance(row["query"], str)
        and isinstance(row["choices"], list)
        and all(isinstance(c, str) for c in row["choices"])
        and isinstance(row["label"], int)
        and 0 <= row["label"] < len(row["choices"])
    )


def check_data_file(path: Path) -> None:
    """Raise DataError naming ``path`` unless every line is an item ``{query, choices,
    label}``: lm-eval would otherwise fail deep inside with a traceback."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        bad = next((i for i, line in enumerate(lines, 1) if not _is_item(json.loads(line))), 0)
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON
        raise DataError(
            f"retention data file {path} is damaged ({type(error).__name__}); delete it and "
            "the next run builds it again from its archive"
        ) from None
    if bad or not lines:
        where = f"line {bad} is not" if bad else "it holds no"
        raise DataError(
            f"retention data file {path}: {where} an item {{query, choices, label}}; delete "
            "it and the next run builds it again from its archive"
        )


def data_file(task: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The task's JSON-lines file, built from its archive on first use (and checked)."""
    if task not in BUILDERS:
        raise KeyError(task)
    root = cache_root(cache_dir)
    path = root / "retention" / f"{task}-v{ITEMS_VERSION}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = BUILDERS[task](root)
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    check_data_file(path)
    return path
