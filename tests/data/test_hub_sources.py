"""Hub task/corpus loaders on local files with the Hub's schema (the ``data_files`` override).

The schemas are those of the Hub datasets the paper config names: GLUE MRPC (``sentence1``,
``sentence2``, ``label``, ``idx``), SST-2 (``sentence``, ``label``, ``idx``), Sentiment140's
parquet conversion (``text``, ``date``, ``user``, ``sentiment`` 0/2/4, ``query``) and
WikiText (``text`` lines). Expected rows are the ones written here. The real ``paper.yaml``
specs are used, with ``data_files`` pointed at the fixtures. No network: offline mode is on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pandas as pd
import pytest
from omegaconf import OmegaConf

from curlora.data.sources import hub, load_corpus, load_task_split
from curlora.data.tasks import TaskSpec
from curlora.data.validation import map_labels

PAPER = OmegaConf.to_container(
    OmegaConf.load(Path(__file__).resolve().parents[2] / "configs" / "data" / "paper.yaml")
)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the environment says, these tests must not reach the Hub."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def paper_spec(task: str, data_files: dict[str, str]) -> TaskSpec:
    cfg: dict[str, Any] = json.loads(json.dumps(PAPER["task_specs"][task]))
    cfg["source"]["data_files"] = data_files
    return TaskSpec.from_config(task, cfg)


MRPC = {
    "train": [
        ("Amrozi accused his brother.", "Referring to him, Amrozi accused his brother.", 1),
        ("Yucaipa owned Dominick's.", "Yucaipa bought Dominick's in 1995.", 0),
        ("They had published an advertisement.", "On June 10, they published it.", 1),
    ],
    "validation": [("He said the foodservice pie business.", "The pie business is small.", 0)],
}


def test_mrpc_from_local_parquet_keeps_the_hub_schema(tmp_path: Path) -> None:
    files = {}
    for split, rows in MRPC.items():
        frame = pd.DataFrame(rows, columns=["sentence1", "sentence2", "label"])
        frame["idx"] = range(len(rows))
        files[split] = str(tmp_path / f"mrpc-{split}.parquet")
        frame.to_parquet(files[split])
    spec = paper_spec("mrpc", files)
    train = load_task_split(spec, "train", tmp_path / "cache")
    assert train.column_names == ["sentence1", "sentence2", "label", "idx"]
    assert (
        list(zip(train["sentence1"], train["sentence2"], train["label"], strict=True))
        == MRPC["train"]
    )
    evaluation = load_task_split(spec, spec.eval_split, tmp_path / "cache")
    assert evaluation["label"] == [0] and len(evaluation) == 1
    # Arrow caches go under the run's cache folder, not the home directory.
    assert (tmp_path / "cache" / "hf_datasets").is_dir()


def test_sst2_from_jsonl_format_inferred(tmp_path: Path) -> None:
    path = tmp_path / "sst2-validation.jsonl"
    rows = [{"sentence": "it 's a charming journey .", "label": 1, "idx": 0},
            {"sentence": "unflinchingly bleak .", "label": 0, "idx": 1}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_task_split(paper_spec("sst2", {"validation": str(path)}), "validation", tmp_path)
    assert data["sentence"] == [r["sentence"] for r in rows] and data["label"] == [1, 0]


def test_sentiment140_label_map_drops_and_counts_neutral(tmp_path: Path) -> None:
    # 3 negative (0), 2 neutral (2), 4 positive (4): the paper config keeps 7, drops 2.
    sentiments = [0, 4, 2, 4, 0, 4, 2, 0, 4]
    frame = pd.DataFrame(
        {
            "text": [f"tweet {i}" for i in range(len(sentiments))],
            "date": ["Mon May 11 03:17:40 UTC 2009"] * len(sentiments),
            "user": ["someone"] * len(sentiments),
            "sentiment": sentiments,
            "query": ["kindle2"] * len(sentiments),
        }
    )
    path = tmp_path / "sentiment140-test.parquet"
    frame.to_parquet(path)
    spec = paper_spec("sentiment140", {"test": str(path)})
    assert spec.source.revision == "refs/convert/parquet"
    raw = load_task_split(spec, spec.eval_split, tmp_path)
    texts, _, labels, dropped = map_labels(spec, "test", raw)
    assert dropped == 2
    assert labels == [0, 1, 1, 0, 1, 0, 1]
    assert texts == [f"tweet {i}" for i in (0, 1, 3, 4, 5, 7, 8)]


def test_wikitext_corpus_joins_lines_like_the_hf_guide(tmp_path: Path) -> None:
    lines = ["", " = Robert Boulter = \n", "", " Robert Boulter is an English actor . \n"]
    path = tmp_path / "wikitext-test.parquet"
    pd.DataFrame({"text": lines}).to_parquet(path)
    corpus_cfg = dict(PAPER["corpus"], data_files={"test": str(path)})
    assert load_corpus(corpus_cfg, tmp_path) == "\n\n".join(lines)


def test_missing_split_or_format_is_named(tmp_path: Path) -> None:
    spec = paper_spec("sst2", {"train": str(tmp_path / "x.parquet")})
    with pytest.raises(ValueError, match="data_files has no split 'validation'"):
        load_task_split(spec, "validation", tmp_path)
    spec = paper_spec("sst2", {"validation": str(tmp_path / "x.tsv")})
    with pytest.raises(ValueError, match=r"set the source's format"):
        load_task_split(spec, "validation", tmp_path)


def test_unreachable_hub_names_the_alternatives(tmp_path: Path) -> None:
    spec = TaskSpec(
        name="mrpc",
        source=hub.HubTask(path="curlora-tests/no-such-dataset", name="mrpc"),
        text_field="sentence1",
        label_field="label",
        num_classes=2,
    )
    with pytest.raises(hub.HubUnreachableError) as error:
        load_task_split(spec, "validation", tmp_path)
    message = str(error.value)
    assert "unreachable" in message and "data=offline" in message
    # The key a user sets, whole (the message once said "options.data_files", no such key).
    assert "data.task_specs.mrpc.source.data_files" in message
    with pytest.raises(hub.HubUnreachableError, match="data=offline") as error:
        hub.HubCorpus(path="curlora-tests/no-such-corpus", split="test").load(tmp_path)
    assert "data.corpus.data_files" in str(error.value)


def test_is_offline_error_follows_the_cause_chain() -> None:
    class OfflineModeIsEnabled(Exception):  # same name as huggingface_hub's
        pass

    try:
        try:
            raise OfflineModeIsEnabled("offline")
        except OfflineModeIsEnabled as inner:
            raise FileNotFoundError("not cached") from inner
    except FileNotFoundError as outer:
        assert hub.is_offline_error(outer)
    assert hub.is_offline_error(ConnectionError("refused"))
    assert not hub.is_offline_error(ValueError("bad config"))
