"""Local data files a user points ``data_files`` at, damaged the ways files get damaged: each
is refused with a DataError (exit 2) naming the file, never a library traceback."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest

from curlora.data.sources import load_task_split
from curlora.data.validation import DataError, map_labels
from tests.data.test_hub_sources import paper_spec

ROWS = [
    {"sentence": "a fine film", "label": 1, "idx": 0},
    {"sentence": "dull", "label": 0, "idx": 1},
]


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _load(tmp_path: Path, train: str, test: str, split: str = "train"):
    spec = paper_spec("sst2", {"train": train, "validation": test})
    return spec, load_task_split(spec, split, tmp_path / "cache")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda p: p.write_bytes(b'{"sentence": "caf\xe9", "label": 1, "idx": 0}\n'), "UTF-8"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text('{"sentence": "cut off', encoding="utf-8"), "cannot be read"),
        (lambda p: None, "is not a file"),  # never written: a missing file
    ],
    ids=["non-utf8", "empty", "truncated", "missing"],
)
def test_a_damaged_data_file_is_one_data_error_naming_it(tmp_path: Path, damage, words) -> None:
    good = _jsonl(tmp_path / "test.jsonl", ROWS)
    bad = tmp_path / "train.jsonl"
    damage(bad)
    with pytest.raises(DataError) as error:
        _load(tmp_path, str(bad), good)
    message = str(error.value)
    assert str(bad) in message and words in message and "\n" not in message, message


def test_a_label_column_missing_in_one_split_file_names_that_file(tmp_path: Path) -> None:
    train = _jsonl(tmp_path / "train.jsonl", ROWS)
    test = _jsonl(tmp_path / "test.jsonl", [{"sentence": "x", "idx": 0}])
    _spec, data = _load(tmp_path, train, test)  # the good split loads on its own
    assert len(data) == 2
    with pytest.raises(DataError) as error:
        _load(tmp_path, train, test, split="validation")
    message = str(error.value)
    assert "split 'validation': label_field='label' is not a column" in message
    assert test in message and "\n" not in message


def test_float_class_ids_are_class_ids_and_other_floats_are_named(tmp_path: Path) -> None:
    rows = [
        {"sentence": "good", "label": 1.0, "idx": 0},
        {"sentence": "bad", "label": 0.0, "idx": 1},
    ]
    spec, data = _load(
        tmp_path, _jsonl(tmp_path / "f.jsonl", rows), _jsonl(tmp_path / "t.jsonl", ROWS)
    )
    assert map_labels(spec, "train", data)[2] == [1, 0]
    half = [{"sentence": "meh", "label": 0.5, "idx": 0}]
    spec, data = _load(
        tmp_path, _jsonl(tmp_path / "h.jsonl", half), _jsonl(tmp_path / "u.jsonl", ROWS)
    )
    with pytest.raises(DataError, match=r"label 0.5, which is not a class id"):
        map_labels(spec, "train", data)
