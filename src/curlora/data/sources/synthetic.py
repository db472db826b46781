"""Synthetic tasks and corpus for tests and CI: the shapes of the real sequence, no downloads.

Three task kinds mirror the paper's sequence (MRPC → SST-2 → Sentiment140):
- ``pair``: sentence pairs; label 1 when the second sentence *agrees* with the first
  (it contains an agreement cue), 0 when it contradicts (a contradiction cue).
- ``sentiment``: single sentences whose label is the polarity of the sentiment words in
  them; ``lexicon`` picks one of two disjoint word lists so two sentiment tasks differ.
Every sentence also carries filler and topic words so the cue position varies. The labels
are
balanced by construction and determined by the cue words, so a small model learns them in a
few hundred steps, well above chance. Generation is deterministic in the source's ``seed``
(a data seed, independent of the run seed that draws training subsets).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from curlora.data.sources import CorpusSource, TaskSource

if TYPE_CHECKING:
    from curlora.data.tasks import TaskSpec

SUBJECTS = ["the film", "the movie", "this show", "the plot", "the cast", "the story", "my day"]
TOPICS = ["music", "acting", "ending", "script", "camera", "dialogue", "pacing", "scenery"]
FILLER = ["really", "quite", "so", "very", "today", "again", "overall", "honestly", "just"]
VERBS = ["was", "is", "felt", "seemed", "looked"]
LEXICONS: dict[str, tuple[list[str], list[str]]] = {
    # (negative words, positive words)
    "a": (["awful", "boring", "dull", "terrible", "weak"], ["great", "brilliant", "superb", "fun"]),
    "b": (["sad", "angry", "tired", "annoyed", "upset"], ["happy", "glad", "excited", "joyful"]),
}
PAIR_CUES: tuple[list[str], list[str]] = (
    ["however", "not", "never", "wrong", "differs"],  # contradiction
    ["indeed", "agreed", "true", "same", "confirmed"],  # agreement
)
CORPUS_WORDS = ["and", "but", "with", "because", "while", "."]

VOCABULARY: list[str] = sorted(
    {w for phrase in SUBJECTS for w in phrase.split()}
    | set(TOPICS)
    | set(FILLER)
    | set(VERBS)
    | {w for neg, pos in LEXICONS.values() for w in neg + pos}
    | {w for cues in PAIR_CUES for w in cues}
    | set(CORPUS_WORDS)
)

_SPLIT_OFFSET = {"train": 0, "validation": 1, "test": 2}


def _sentence(rng: random.Random, cue: str) -> str:
    words = [*rng.choice(SUBJECTS).split(), rng.choice(VERBS), rng.choice(FILLER)]
    words.insert(rng.randrange(len(words) + 1), cue)
    words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS))
    return " ".join(words)


def _generate(kind: str, lexicon: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        label = i % 2  # balanced by construction
        if kind == "pair":
            first = _sentence(rng, rng.choice(TOPICS))
            second = _sentence(rng, rng.choice(PAIR_CUES[label]))
            rows.append({"sentence1": first, "sentence2": second, "label": label})
        elif kind == "sentiment":
            words = LEXICONS[lexicon][label]
            rows.append({"sentence": _sentence(rng, rng.choice(words)), "label": label})
        else:
            raise ValueError(f"synthetic task kind '{kind}' unknown; valid: ['pair', 'sentiment']")
    rng.shuffle(rows)
    return rows


@dataclasses.dataclass
class SyntheticTask(TaskSource):
    """A generated task: ``kind`` pair or sentiment, ``lexicon`` a or b, ``seed`` (data),
    ``sizes`` per split."""

    kind: str = "sentiment"
    lexicon: str = "a"
    seed: int = 0
    sizes: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"train": 400, "validation": 100, "test": 100}
    )

    def __post_init__(self) -> None:
        # Checked when the config is validated, not when the split is generated mid-run.
        if self.kind not in ("pair", "sentiment"):
            raise ValueError(f"kind={self.kind!r} is not valid; valid: ['pair', 'sentiment']")
        if self.kind == "sentiment" and self.lexicon not in LEXICONS:
            raise ValueError(f"lexicon={self.lexicon!r} is not valid; valid: {sorted(LEXICONS)}")

    def load_split(self, spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset:
        """Generate ``split`` of a synthetic task; its size comes from ``sizes[split]``."""
        if split not in _SPLIT_OFFSET:
            raise ValueError(
                f"task '{spec.name}': synthetic split '{split}' unknown; "
                f"valid: {sorted(_SPLIT_OFFSET)}"
            )
        rng = random.Random(f"{spec.name}:{int(self.seed) * 10 + _SPLIT_OFFSET[split]}")
        return datasets.Dataset.from_list(
            _generate(self.kind, self.lexicon, self.sizes[split], rng)
        )


@dataclasses.dataclass
class SyntheticCorpus(CorpusSource):
    """A small deterministic corpus of ``num_sentences`` synthetic sentences."""

    num_sentences: int = 200
    seed: int = 0

    def load(self, cache_dir: Path) -> str:
        return synthetic_corpus(self.num_sentences, self.seed)


def synthetic_corpus(num_sentences: int, seed: int) -> str:
    """The synthetic sentences, five to a paragraph, paragraphs joined by blank lines."""
    rng = random.Random(int(seed))
    sentences = []
    for _ in range(int(num_sentences)):
        neg, pos = LEXICONS[rng.choice(sorted(LEXICONS))]
        cue = rng.choice(neg + pos)
        sentences.append(
            f"{_sentence(rng, cue)} {rng.choice(CORPUS_WORDS[:-1])} {_sentence(rng, cue)} ."
        )
    return "\n\n".join(" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5))
