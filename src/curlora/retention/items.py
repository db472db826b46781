"""Multiple-choice items for the offline retention suite, built from pinned archive files.

Every builder is a pure function of a file's text and returns rows
``{"query": str, "choices": [str, ...], "label": int}`` that the package's lm-eval task
YAMLs read (lm-eval joins query and choice with one space and compares the choices'
log-likelihoods). Rows come ordered by the sha256 of ``"<task>:<key>"``, so the first
``limit`` rows that lm-eval scores are a fixed pseudo-random sample: the same rows for every
seed, run and machine. Distractors and the correct answer's position are chosen from the
same hashes, never from a random generator.

==================  ===========================================================  ======
task                item                                                         chance
==================  ===========================================================  ======
analogy_semantic    "Athens is to Greece as Baghdad is to" → Iraq, among 4 answer   0.25
                    words of the same relation (gensim's questions-words.txt,
                    Mikolov et al. 2013: capitals, currencies, states, family)
analogy_syntactic   the same over its grammatical relations (plural, past tense,    0.25
                    comparative, opposite, ...)
word_sentiment      is a word positive or negative? words with a mean human         0.50
                    rating of at least 2 in absolute value (VADER's lexicon,
                    10 raters each, -4..4)
wiki_cloze          a Wikipedia sentence without its last word → that word, among   0.25
                    the last words of 3 other sentences of the same article
                    (gensim's test dump, the articles outside the perplexity split)
==================  ===========================================================  ======
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

Item = dict[str, Any]
N_CHOICES = 4

# questions-words.txt's sections: the first five are semantic, the "gram*" ones syntactic.
SEMANTIC = ("capital-common-countries", "capital-world", "currency", "city-in-state", "family")


def _hash(task: str, key: str) -> str:
    return hashlib.sha256(f"{task}:{key}".encode()).hexdigest()


def _choose(task: str, key: str, answer: str, pool: Sequence[str], exclude: set[str]) -> Item:
    """The answer plus ``N_CHOICES − 1`` distractors from ``pool`` (not in ``exclude``), picked
    by hash; the answer's position is the key's hash modulo ``N_CHOICES``."""
    candidates = sorted({p for p in pool if p not in exclude and p != answer})
    candidates.sort(key=lambda p: _hash(task, f"{key}|{p}"))
    choices = candidates[: N_CHOICES - 1]
    if len(choices) < N_CHOICES - 1:
        raise ValueError(f"{task}: fewer than {N_CHOICES} distinct choices for {key!r}")
    label = int(_hash(task, key), 16) % N_CHOICES
    choices.insert(label, answer)
    return {"query": "", "choices": choices, "label": label}


def _ordered(task: str, keyed: Iterable[tuple[str, Item]]) -> list[Item]:
    return [item for _, item in sorted(keyed, key=lambda ki: _hash(task, ki[0]))]


def parse_analogies(text: str) -> dict[str, list[tuple[str, str, str, str]]]:
    """``{section: [(a, b, c, d), ...]}`` of questions-words.txt (": section" header lines,
    then "a b c d" lines meaning a is to b as c is to d)."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
            continue
        words = line.split()
        if current is None or len(words) != 4:
            raise ValueError(f"questions-words line {i} is malformed: {line!r}")
        sections[current].append((words[0], words[1], words[2], words[3]))
    return sections


def analogy_items(text: str, semantic: bool) -> list[Item]:
    """Analogy items of the semantic (or syntactic) sections; distractors are answer words
    of the same section, never one of the question's own words."""
    task = "analogy_semantic" if semantic else "analogy_syntactic"
    keyed = []
    for section, rows in parse_analogies(text).items():
        if (section in SEMANTIC) != semantic:
            continue
        pool = [d for *_, d in rows]
        for a, b, c, d in rows:
            key = f"{section}|{a} {b} {c} {d}"
            item = _choose(task, key, d, pool, exclude={a, b, c})
            item["query"] = f"{a} is to {b} as {c} is to"
            keyed.append((key, item))
    return _ordered(task, keyed)


SENTIMENT_MIN = 2.0  # |mean rating| kept: clearly positive or negative words
# The answer words of the tasks whose every item offers the same choices (the others choose
# among words that change from item to item). A fine-tuning task that answers with one of
# these words trains the suite task's answer format: a report reads this to say so.
FIXED_ANSWERS: dict[str, tuple[str, ...]] = {"word_sentiment": ("positive", "negative")}
_WORD = re.compile(r"^[a-z]{3,}$")


def word_sentiment_items(lexicon: str) -> list[Item]:
    """Items from VADER's ``vader_lexicon.txt`` (word, mean, std, ratings; tab-separated):
    alphabetic words whose mean rating is at least ``SENTIMENT_MIN`` in absolute value,
    balanced (as many positive as negative, the smallest hashes of each kept)."""
    task = "word_sentiment"
    by_class: dict[int, list[tuple[str, Item]]] = {0: [], 1: []}
    for i, line in enumerate(lexicon.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"vader_lexicon line {i} is malformed: {line!r}")
        word, mean = fields[0], float(fields[1])
        if not _WORD.match(word) or abs(mean) < SENTIMENT_MIN:
            continue
        label = int(mean < 0)  # choices: positive (0), negative (1)
        item = {
            "query": f'Is the word "{word}" positive or negative? Answer:',
            "choices": list(FIXED_ANSWERS[task]),
            "label": label,
        }
        by_class[label].append((word, item))
    n = min(len(v) for v in by_class.values())
    kept = [ki for v in by_class.values() for ki in sorted(v, key=lambda k: _hash(task, k[0]))[:n]]
    return _ordered(task, kept)


CLOZE_WORDS = (8, 24)  # sentence length kept, in words
_SENTENCE_END = re.compile(r"(?<=[a-z]{3}[.!?])\s+(?=[A-Z])")
_LAST_WORD = re.compile(r"^(.*\S)\s+([A-Za-z]{4,})[.!?]$", re.S)


def wiki_cloze_items(articles: Iterable[tuple[str, str]]) -> list[Item]:
    """Items from ``(title, plain text)`` articles: a sentence of ``CLOZE_WORDS`` words that
    ends in an alphabetic word of 4+ letters, without that word; distractors are the last
    words of other such sentences of the same article (at least 4 distinct ones needed)."""
    task = "wiki_cloze"
    keyed = []
    for title, text in articles:
        found = []
        for paragraph in text.split("\n"):
            for sentence in _SENTENCE_END.split(paragraph.strip()):
                n_words = len(sentence.split())
                match = _LAST_WORD.match(sentence)
                if match and CLOZE_WORDS[0] <= n_words <= CLOZE_WORDS[1]:
                    found.append((match.group(1), match.group(2)))
        pool = [word for _, word in found]
        if len(set(pool)) < N_CHOICES:
            continue
        for context, word in found:
            key = f"{title}|{context}"
            item = _choose(task, key, word, pool, exclude=set())
            item["query"] = context
            keyed.append((key, item))
    return _ordered(task, keyed)
