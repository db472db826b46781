"""The offline suite's item builders on small excerpts in the archives' own formats."""

from __future__ import annotations

from collections import Counter

import pytest

from curlora.reporting.results import build_results, validate_results
from curlora.retention.items import (
    N_CHOICES,
    analogy_items,
    parse_analogies,
    wiki_cloze_items,
    word_sentiment_items,
)

# questions-words.txt's layout: ": section" then "a b c d" lines.
ANALOGIES = """: capital-common-countries
Athens Greece Baghdad Iraq
Athens Greece Bangkok Thailand
Berlin Germany Cairo Egypt
Paris France Rome Italy
Oslo Norway Madrid Spain
: gram8-plural
banana bananas bird birds
bird birds cat cats
cat cats dog dogs
dog dogs eye eyes
eye eyes hand hands
"""


def test_analogies_keep_the_answer_at_the_label_among_distinct_words_of_its_section() -> None:
    assert set(parse_analogies(ANALOGIES)) == {"capital-common-countries", "gram8-plural"}
    semantic, syntactic = analogy_items(ANALOGIES, True), analogy_items(ANALOGIES, False)
    assert len(semantic) == len(syntactic) == 5
    answers = {  # (a, b, c) -> d, from the lines above
        tuple(line.split()[:3]): line.split()[3]
        for line in ANALOGIES.splitlines()
        if line and not line.startswith(":")
    }
    section_words = [
        {"Iraq", "Thailand", "Egypt", "Italy", "Spain"},
        {"bananas", "birds", "cats", "dogs", "eyes", "hands"},
    ]
    for items, words in zip((semantic, syntactic), section_words, strict=True):
        for item in items:
            a, _, _, b, _, c, _, _ = item["query"].split()  # "a is to b as c is to"
            assert item["choices"][item["label"]] == answers[(a, b, c)]
            assert len(item["choices"]) == N_CHOICES == len(set(item["choices"]))
            assert set(item["choices"]) <= words and not {a, b, c} & set(item["choices"])
    # The answer's position varies (by hash), so a position bias cannot score well.
    assert len({i["label"] for i in semantic + syntactic}) > 1
    # Deterministic: the same rows in the same order every time (the fixed subset).
    assert analogy_items(ANALOGIES, True) == semantic


def test_word_sentiment_is_balanced_and_labels_follow_the_mean_rating() -> None:
    lexicon = "\n".join(
        [
            "good\t1.9\t0.9\t[2, 2]",  # below the 2.0 threshold: dropped
            "great\t3.1\t0.7\t[3, 3]",
            "superb\t3.1\t0.7\t[3, 3]",
            "lovely\t2.8\t0.6\t[3, 3]",
            "awful\t-3.4\t0.5\t[-3, -4]",
            "dreadful\t-2.2\t0.9\t[-2, -2]",
            ":(\t-2.2\t0.9\t[-2, -2]",  # not a word: dropped
        ]
    )
    items = word_sentiment_items(lexicon)
    labels = Counter(i["label"] for i in items)
    assert labels == {0: 2, 1: 2}  # two negatives kept, so two of the three positives
    for item in items:
        word = item["query"].split('"')[1]
        assert item["choices"][item["label"]] == (
            "negative" if word in {"awful", "dreadful"} else "positive"
        )


def test_wiki_cloze_asks_for_each_sentence_last_word_among_the_article_words() -> None:
    text = (
        "The river flows north through the old town and into the great lake. "
        "Farmers along its banks grow wheat and barley in the warm summer months. "
        "The town was founded by traders who sold salt and wool to the northern tribes. "
        "Its bridge was rebuilt in stone after a flood destroyed the wooden one in winter. "
        "Short one."
    )
    items = wiki_cloze_items([("River", text)])
    assert len(items) == 4  # "Short one." is under the length floor
    for item in items:
        answer = item["choices"][item["label"]]
        assert f"{item['query']} {answer}" in text
        assert set(item["choices"]) == {"lake", "months", "tribes", "winter"}


def test_results_schema_checks_the_retention_node() -> None:
    base = dict(
        method="lora",
        rank=4,
        seed=0,
        tasks=["a"],
        accuracy_matrix=[[0.5]],
        initial_accuracy=[0.5],
        perplexity={"initial": 2.0, "after_task": [2.0], "tokens": 10},
        majority_baseline=[0.5],
        trainable_params=1,
        status="completed",
        config={},
    )
    good = {"tasks": ["x"], "n": [4], "acc": [[0.25], [0.5]], "acc_norm": [[0.25], None]}
    assert validate_results(build_results(**base, retention=good)) == []
    results = build_results(**base, retention=good)
    results["retention"]["acc"] = [[0.25]]  # one row short of T + 1
    assert any("retention.acc" in p for p in validate_results(results))
    results["retention"]["acc"] = [[0.25], [1.5]]  # not an accuracy
    assert any("retention.acc[1]" in p for p in validate_results(results))
    with pytest.raises(ValueError, match="retention"):
        build_results(**base, retention={"tasks": ["x"]})
