"""``each_architecture_read_once``: the grid checks many compositions of one model, and a
GGUF architecture read parses the file's whole metadata; outside it every read is fresh."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from curlora.models import backbone


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each architecture read, by model name (the source stubbed: no file is parsed)."""
    done: list[str] = []

    def source(model_cfg):
        def architecture(cache_dir: Path) -> SimpleNamespace:
            done.append(model_cfg["name"])
            return SimpleNamespace(name=model_cfg["name"])

        return SimpleNamespace(architecture=architecture)

    monkeypatch.setattr(backbone, "model_source", source)
    return done


def test_within_each_model_is_read_once_and_outside_every_read_is_fresh(
    reads: list[str], tmp_path: Path
) -> None:
    a, b = {"name": "a"}, {"name": "b"}
    with backbone.each_architecture_read_once():
        first = backbone.load_model_config(a, tmp_path)
        assert backbone.load_model_config(dict(a), tmp_path) is first
        backbone.load_model_config(b, tmp_path)
        backbone.load_model_config(a, tmp_path / "other cache")
        with backbone.each_architecture_read_once():  # nested: the same reads
            assert backbone.load_model_config(a, tmp_path) is first
    assert reads == ["a", "b", "a"]
    backbone.load_model_config(a, tmp_path)
    backbone.load_model_config(a, tmp_path)
    assert reads == ["a", "b", "a", "a", "a"]
