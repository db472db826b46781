"""Hub model loader on a local folder (a tiny Llama saved with save_pretrained) and offline.

The folder is the repository's tiny test model and tokenizer (``curlora.models.tiny``), so
expected weights are that model's. Offline mode is forced, so nothing reaches the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2 as httpx
import huggingface_hub.constants
import pytest
import torch
import transformers
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from curlora.data.sources.hub import HubUnreachableError
from curlora.models import hub as hub_loader
from curlora.models import tiny
from curlora.models.backbone import load_backbone, load_model_config


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("tiny-llama")
    model, tokenizer = tiny.load({}, folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def cfg(name: str | Path, **extra: Any) -> dict[str, Any]:
    return {"_target_": "curlora.models.hub.HubModel", "name_or_path": str(name), **extra}


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("auto", torch.float32)],
)
def test_local_folder_loads_in_the_requested_dtype(
    saved_tiny: tuple[Path, torch.nn.Module], tmp_path: Path, dtype: str, expected: torch.dtype
) -> None:
    folder, original = saved_tiny
    model, tokenizer = load_backbone(cfg(folder, dtype=dtype), tmp_path)
    assert model.dtype == expected  # auto: the checkpoint's own dtype, saved in fp32
    assert not model.training
    torch.testing.assert_close(
        model.model.embed_tokens.weight.float(),
        original.model.embed_tokens.weight.to(expected).float(),
    )
    assert tokenizer.pad_token == "[PAD]"
    assert load_model_config(cfg(folder), tmp_path).hidden_size == original.config.hidden_size


def test_trust_remote_code_is_off_unless_configured(
    saved_tiny: tuple[Path, torch.nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    real = transformers.AutoConfig.from_pretrained

    def spy(name: str, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(hub_loader.AutoConfig, "from_pretrained", spy)
    hub_loader.load_config(cfg(saved_tiny[0]), tmp_path)
    hub_loader.load_config(cfg(saved_tiny[0], trust_remote_code=True), tmp_path)
    assert [k["trust_remote_code"] for k in seen] == [False, True]
    with pytest.raises(ValueError, match="trust_remote_code must be true or false"):
        hub_loader.load_config(cfg(saved_tiny[0], trust_remote_code="yes"), tmp_path)


def test_unreachable_hub_is_one_clear_error(tmp_path: Path) -> None:
    for load in (hub_loader.load_config, hub_loader.load):
        with pytest.raises(HubUnreachableError) as error:
            load(cfg("curlora-tests/no-such-model"), tmp_path)
        message = str(error.value)
        assert "unreachable" in message and "model=smollm2_135m" in message
        assert "local folder" in message


def _http_error(kind: type[Exception], status: int) -> Exception:
    request = httpx.Request("GET", "https://huggingface.co/api/models/x")
    return kind("refused", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    ("hub_error", "expected"),
    [
        (lambda: _http_error(GatedRepoError, 401), ["is gated", "HF_TOKEN", "hf auth login"]),
        (lambda: _http_error(RepositoryNotFoundError, 404), ["no repository", "a typo"]),
    ],
)
def test_gated_or_missing_repository_is_one_clear_error(
    hub_error: Any, expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers wraps huggingface_hub's refusal in an OSError; the cause chain decides."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        try:
            raise hub_error()
        except Exception as cause:
            raise OSError("You are trying to access a gated repo.") from cause

    monkeypatch.setattr(hub_loader.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(hub_loader.AutoTokenizer, "from_pretrained", refuse)
    for load in (hub_loader.load_config, hub_loader.load):
        with pytest.raises(HubUnreachableError) as error:
            load(cfg("curlora-tests/gated-model"), tmp_path)
        assert all(part in str(error.value) for part in expected), str(error.value)
        assert "curlora-tests/gated-model" in str(error.value)


def test_bad_settings_are_named(saved_tiny: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name_or_path is required"):
        hub_loader.load_config({"source": "hub"}, tmp_path)
    with pytest.raises(ValueError, match="unknown"):
        hub_loader.load(cfg(saved_tiny[0], dtype="int4"), tmp_path)
