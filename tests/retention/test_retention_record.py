"""A retention score's per-row outcomes travel with the run record (``progress.json``, task
checkpoints, ``outcomes.json``) and must agree with its ``acc``: a record whose ``acc`` was
edited on its own is found, as an edited task accuracy is."""

from __future__ import annotations

import dataclasses

import pytest

from curlora.run.record import Evaluation, RetentionScore, RunRecord, TaskScore
from curlora.run.report import outcomes

TASKS = ["a", "b"]
ROWS = "1101000111"  # 6 of 10 right


def _record(score: RetentionScore) -> RunRecord:
    evaluation = Evaluation(
        scores={t: TaskScore.from_confusion([[1, 0], [0, 1]], "11") for t in TASKS},
        retention={"wiki_cloze": score},
    )
    record = RunRecord(TASKS, initial=evaluation)
    record.add(0, evaluation)
    return record


def test_the_rows_round_trip_and_reach_outcomes_json() -> None:
    record = _record(RetentionScore(acc=0.6, acc_norm=0.5, n=10, correct=ROWS))
    back = RunRecord.from_dict(record.to_dict())
    assert back.initial.retention["wiki_cloze"].correct == ROWS
    assert back.inconsistency() is None
    # Rows: before training, after a, after b (not evaluated yet).
    assert outcomes(back)["retention"] == {"wiki_cloze": [ROWS, ROWS, None]}


def test_a_record_from_before_the_rows_were_kept_still_reads() -> None:
    data = _record(RetentionScore(acc=0.6, acc_norm=0.5, n=10)).to_dict()
    for point in (data["initial"], data["after_task"][0]):
        del point["retention"]["wiki_cloze"]["correct"]
    back = RunRecord.from_dict(data)
    assert back.initial.retention["wiki_cloze"].correct is None
    assert back.inconsistency() is None
    assert "retention" not in outcomes(back)  # nothing recorded: no key, as before


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"acc": 0.9}, "retention.wiki_cloze: acc 0.9 disagrees with its outcomes"),
        ({"correct": ROWS + "1"}, "11 per-example outcomes for 10 examples"),
        ({"correct": ROWS.replace("0", "x")}, "not made of 0 and 1"),
    ],
    ids=["acc edited", "a row more", "not 0 and 1"],
)
def test_an_acc_that_disagrees_with_its_rows_is_found(change: dict, said: str) -> None:
    good = RetentionScore(acc=0.6, acc_norm=0.5, n=10, correct=ROWS)
    record = _record(dataclasses.replace(good, **change))
    problem = RunRecord.from_dict(record.to_dict()).inconsistency()
    assert problem is not None and problem.startswith("initial.retention.wiki_cloze")
    assert said in problem
