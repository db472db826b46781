"""The retention suite in the words grid's report (``curlora.reporting.words_retention``):
each suite task on its own, and the suite tasks whose fixed answers are label words of the
trained sequence, asked about again without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curlora.reporting import words_report
from curlora.reporting.words_retention import final_retention, shared_answer_tasks
from curlora.retention.items import FIXED_ANSWERS
from tests.reporting.test_protocol_check import KEEPS, _run
from tests.reporting.test_words_report import _as, _report, _store

SUITE = ["analogy_semantic", "word_sentiment"]
# The default sequence's label words under head=words (configs/data/offline.yaml).
PROMPTS = {
    "a": {"template": "{text}", "label_words": [" Democratic", " Republican"]},
    "b": {"template": "{text}", "label_words": [" negative", " positive"]},
    "c": {"template": "{text}", "label_words": [" Negative", " positive"]},
}


def _with_suite(run, before: list[float], after: list[float], prompts=PROMPTS):
    results = json.loads(json.dumps(run.results))
    results["head"]["prompts"] = prompts
    results["retention"] = {
        "tasks": SUITE,
        "n": [100, 100],
        "acc": [before, None, None, after],
        "acc_norm": [before, None, None, after],
    }
    return type(run)(run.path, results)


def test_a_suite_task_answered_with_trained_label_words_is_found(tmp_path: Path) -> None:
    run = _with_suite(_run(tmp_path, 1, 1e-3, KEEPS, 0.8), [0.8, 0.6], [0.8, 0.9])
    # Case and the leading space of a label word do not matter; a and its words do not match.
    assert shared_answer_tasks([run]) == {"word_sentiment": ["b", "c"]}
    assert FIXED_ANSWERS["word_sentiment"] == ("positive", "negative")
    # Under head=linear a run has no label words: nothing is shared.
    linear = _with_suite(_run(tmp_path, 2, 1e-3, KEEPS, 0.8), [0.8, 0.6], [0.8, 0.9], {})
    assert shared_answer_tasks([linear]) == {}
    assert final_retention(run) == pytest.approx(0.85)
    assert final_retention(run, {"word_sentiment"}) == pytest.approx(0.8)


def test_the_report_shows_each_suite_task_and_asks_again_without_the_shared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LoRA's word_sentiment rises to 0.98 with the sentiment tasks' answer format while it
    # loses 0.38 on the analogies; CURLoRA keeps both at the base model's. Over the whole
    # suite (the rule's question) the two end level; without word_sentiment CURLoRA keeps
    # more, and the report says which question is which.
    store = _store(tmp_path)
    runs = []
    for seed in (1, 2, 3):
        lora = _as(_run(store / "runs" / "lora", seed, 1e-3, KEEPS, 0.8), "lora")
        runs.append(_with_suite(lora, [0.8, 0.6], [0.42 + 0.001 * seed, 0.98 + 0.001 * seed]))
        cur = _as(_run(store / "runs" / "cur", seed, 1e-3, KEEPS, 0.8), "curlora")
        runs.append(_with_suite(cur, [0.8, 0.6], [0.8, 0.6 + 0.002 * seed]))
    monkeypatch.setattr(words_report, "load_grid", lambda root: runs)
    report = _report(store, tmp_path)
    section = report[report.index("## What the base model knew") :]
    assert "word_sentiment (before 0.60, 100 rows)" in section
    lora_row = next(line for line in section.splitlines() if line.startswith("| lora r16"))
    assert "| 0.422 ± 0.001" in lora_row and "| 0.982 ± 0.001" in lora_row
    assert "word_sentiment shares its answer words with the trained sequence" in section
    assert "label words of b, c" in section
    rows = [line for line in report.splitlines() if "keep more of what the base" in line]
    whole, without = rows
    assert "without word_sentiment" not in whole and "equivalent within ±0.02" in whole
    assert "than lora without word_sentiment?" in without
    assert "CURLoRA keeps more, beyond the 0.02 margin" in without
    assert "a reading beside the rule's verdict over the whole suite" in without
    # On 3 seeds or fewer each seed's difference stands beside the verdict, as in the
    # other questions: without word_sentiment, 0.8 - (0.42 + 0.001 * seed).
    assert "seeds 1,2,3; per seed: +0.379, +0.378, +0.377" in without
    # The README's block (summary.md) carries both questions.
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("keep more of what the base model knew") == 2
    # Table 2 has the ratio without word_sentiment beside the whole suite's: LoRA's analogy
    # (its only other suite task) went 0.8 -> 0.421..0.423, a ratio of 0.422 / 0.8 = 0.527.
    table = report[report.index("## Table 2") : report.index("## What the base model knew")]
    assert "retention ratio without word_sentiment (95 % CI)" in table
    lora_t2 = next(line for line in table.splitlines() if line.startswith("| lora r16"))
    assert lora_t2.split("|")[-2].strip().startswith("0.527")
    # The rows' own binomial noise is stated (sqrt(0.6 * 0.4 / 100) = 0.049).
    assert "word_sentiment ±0.049" in section
