"""data=standard_cl on local files with each Hub data set's schema (the ``data_files`` path).

Schemas as the Hub lists them: AG News (``text``, ``label`` 0-3), MTEB's Amazon reviews
(``id``, ``text``, ``label`` 0-4, ``label_text``), Yelp full (``label`` 0-4, ``text``),
DBpedia-14 (``label`` 0-13, ``title``, ``content``), Yahoo Answers topics (``id``,
``topic`` 0-9, ``question_title``, ``question_content``, ``best_answer``). Expected rows
are the ones written here. No network: offline mode is on.
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

from curlora.data.sources import load_task_split
from curlora.data.tasks import TaskSpec
from curlora.data.validation import map_labels

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
STANDARD_CL = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / "standard_cl.yaml"))

ROWS: dict[str, dict[str, list[Any]]] = {
    "agnews": {"text": ["Stocks rally.", "Team wins cup."], "label": [2, 1]},
    "amazon": {
        "id": ["en_1", "en_2"],
        "text": ["Broke in a day.", "Love it."],
        "label": [0, 4],
        "label_text": ["0", "4"],
    },
    "yelp": {"label": [3, 0], "text": ["Good tacos.", "Cold food, rude staff."]},
    "dbpedia": {
        "label": [0, 13],
        "title": ["Acme Corp", "Lost Highway"],
        "content": ["Acme is a company.", "A 1997 film."],
    },
    "yahoo": {
        "id": [1, 2],
        "topic": [9, 3],
        "question_title": ["Who won in 1998?", "Why is the sky blue?"],
        "question_content": ["", "Just curious."],
        "best_answer": ["France.", "Rayleigh scattering."],
    },
}
# (text, pair) per row: the fields each spec reads.
EXPECTED = {
    "agnews": [("Stocks rally.", None), ("Team wins cup.", None)],
    "amazon": [("Broke in a day.", None), ("Love it.", None)],
    "yelp": [("Good tacos.", None), ("Cold food, rude staff.", None)],
    "dbpedia": [
        ("Acme Corp", "Acme is a company."),
        ("Lost Highway", "A 1997 film."),
    ],
    "yahoo": [("Who won in 1998?", "France."), ("Why is the sky blue?", "Rayleigh scattering.")],
}


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("task", sorted(ROWS))
def test_each_task_reads_its_hub_schema(task: str, tmp_path: Path) -> None:
    path = tmp_path / f"{task}-test.parquet"
    pd.DataFrame(ROWS[task]).to_parquet(path)
    cfg: dict[str, Any] = json.loads(json.dumps(STANDARD_CL["task_specs"][task]))
    cfg["source"]["data_files"] = {"test": str(path)}
    spec = TaskSpec.from_config(task, cfg)
    raw = load_task_split(spec, spec.eval_split, tmp_path)
    texts, pairs, labels, dropped = map_labels(spec, "test", raw)
    assert dropped == 0
    label_column = "topic" if task == "yahoo" else "label"
    assert labels == ROWS[task][label_column]
    assert list(zip(texts, pairs or [None] * len(texts), strict=True)) == EXPECTED[task]
    assert max(labels) < spec.num_classes


# The class names of the fixture rows' labels, from each data set's ClassLabel feature on
# the Hub (its dataset card); for the two review sets, the star rating each label stands for.
NAMED_ROWS = {
    "agnews": ["Business", "Sports"],
    "amazon": ["1 star", "5 stars"],
    "yelp": ["4 stars", "1 star"],
    "dbpedia": ["Company", "WrittenWork"],
    "yahoo": ["Politics & Government", "Education & Reference"],
}


@pytest.mark.parametrize("task", sorted(ROWS))
def test_each_task_names_its_classes_in_label_order(task: str) -> None:
    spec = TaskSpec.from_config(task, STANDARD_CL["task_specs"][task])
    label_column = "topic" if task == "yahoo" else "label"
    names = spec.display_names()
    assert len(names) == spec.num_classes
    assert [names[label] for label in ROWS[task][label_column]] == NAMED_ROWS[task]


@pytest.mark.parametrize(
    ("order", "tasks"),
    [
        ("olora1", ["dbpedia", "amazon", "yahoo", "agnews"]),
        ("olora2", ["dbpedia", "amazon", "agnews", "yahoo"]),
        ("olora3", ["yahoo", "amazon", "agnews", "dbpedia"]),
    ],
)
def test_olora_orders_compose_with_the_benchmark(order: str, tasks: list[str], run_config):
    cfg = run_config("data=standard_cl", f"order={order}")
    assert list(cfg.tasks) == tasks
    assert set(tasks) <= set(cfg.data.task_specs)
