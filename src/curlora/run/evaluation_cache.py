"""The evaluation before training, computed once and shared by every run it is the same for.

Before any training, a method that starts exactly at the base model (a zero-initialised U
or B: ``AdapterMethod.starts_at_base``) gives every run the same numbers as the base model
itself, whatever its rank, α or strategy: the same untrained heads score the same features,
and the perplexity is the base model's. A sweep over methods and ranks would compute that
evaluation once per job; here it is computed once and stored under
``<cache dir>/evaluations/<key>.json``.

The key is a sha256 of everything the numbers depend on, taken from the objects themselves
rather than from config names: every value of every base tensor (and buffer), the
backbone's config (``config.to_dict()`` less the fields that only say where it came from,
such as ``_name_or_path``: ``curlora.adapters.base_config``) and the attention and experts
implementations it runs, the heads' initial weights and the head protocol, every eval
example whole (token ids, label, answer length), the tokenizer (its vocabulary and rules,
padding side and pad token), the eval batch size (batch composition), the perplexity
corpus slice and window settings, the Trainer's accelerator, devices and precision, the
machine's CPU capability, GPU model and float32 matmul precision, the number of threads,
determinism, and the torch and transformers versions. Anything else that differs gives
another key, so a hit is bit-for-bit the evaluation the run would have done (tested). No
sample: a base that differs in one value of one tensor, or in one number of its config
(``rms_norm_eps``), gets another key. Entries stored under keys of an earlier version
(which hashed a sample of the weights and no config) are never looked up again: they are
ignored, not misread. Writes are atomic; two jobs computing the same entry at once both
write the same content. The cache is best-effort: an entry that cannot be read is
recomputed, one that cannot be written is skipped, each with a warning naming the file.

A cache is often shared (a cluster-wide directory), so an entry is not trusted because it
parses: it holds its own key and a sha256 of its record, and every score must agree with
the per-example outcomes and the confusion matrix stored beside it (an ``accuracy`` edited
from 0.45 to 0.95 would otherwise become every user's initial accuracy). An entry that
fails any check is named in a warning and recomputed (and rewritten). What no check can
catch is an entry forged whole, numbers and outcomes alike, by someone who can write the
cache: share a cache only among people who share results; ``reuse_initial_evaluation=false``
never reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import PretrainedConfig

from curlora.adapters import applied_method
from curlora.adapters.base_config import without_origin
from curlora.run.atomic import OutputError, atomic_write_text
from curlora.run.record import Evaluation, RunRecord, evaluation_inconsistency

log = logging.getLogger("curlora")
# Bump when the evaluation itself changes (2: validation carves, 3: checksums, 4: the whole
# base, its config, the tokenizer and the machine in the key, 5: the retention suite's
# per-row outcomes recorded).
VERSION = 5
ENTRY_FORMAT = "curlora-evaluation/3"

# The Trainer settings that change how the evaluation runs (device, sharding, autocast);
# the rest (epochs, clipping, logging) only act in training.
TRAINER_FIELDS = ("accelerator", "devices", "strategy", "num_nodes", "precision")


def _hash_tensor(digest: Any, tensor: torch.Tensor) -> None:
    """Every byte of ``tensor`` (with its shape and dtype): a sample would miss a change
    in the values it skips."""
    flat = tensor.detach().reshape(-1).cpu().contiguous()  # [numel]
    digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
    digest.update(memoryview(flat.view(torch.uint8).numpy()))  # no copy of the bytes


def _implementations(config: PretrainedConfig, prefix: str = "") -> dict[str, str]:
    """Which kernels the forward pass runs (``_attn_implementation_internal``: sdpa, eager,
    flash...; the experts'), kept as attributes outside ``to_dict()``; sub-configs too."""
    found: dict[str, str] = {}
    for name, value in sorted(vars(config).items()):
        if "implementation" in name:
            found[prefix + name] = str(value)
        elif isinstance(value, PretrainedConfig):
            found.update(_implementations(value, f"{prefix}{name}."))
    return found


def _tokenizer(tokenizer: Any) -> dict[str, Any]:
    """What of the tokenizer the evaluation uses beyond the token ids already hashed: the
    padding (collation) and, for the retention suite's own prompts, the whole tokenizer
    (a fast tokenizer's serialised vocabulary, merges and rules, else its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    whole = (
        backend.to_str()
        if backend is not None
        else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    return {
        "class": type(tokenizer).__name__,
        "padding_side": tokenizer.padding_side,
        "pad_token_id": tokenizer.pad_token_id,
        "special": [str(t) for t in tokenizer.all_special_tokens],
        "sha256": hashlib.sha256(whole.encode("utf-8")).hexdigest(),
    }


def _machine(accelerator: str) -> dict[str, Any]:
    """What of the machine changes the numbers: the CPU kernels' instruction set, and on a
    GPU its model, CUDA version and float32 matmul precision (TF32)."""
    gpu = None
    if accelerator != "cpu" and torch.cuda.is_available():
        gpu = [torch.cuda.get_device_name(), torch.version.cuda]
    elif accelerator != "cpu" and torch.backends.mps.is_available():
        gpu = ["mps"]
    return {
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "gpu": gpu,
        "matmul_precision": torch.get_float32_matmul_precision(),
    }


def _placement(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Where ``tensor``'s values lie: two tensors with the same placement hold the same
    values (tied weights are one storage under two names)."""
    storage = (str(tensor.device), tensor.untyped_storage().data_ptr(), tensor.storage_offset())
    return (*storage, tensor.dtype, tuple(tensor.shape), tensor.stride())


def _base_tensors(backbone: nn.Module, method: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The base's tensors by their name without the adapter's wrapping, the non-persistent
    buffers (rotary frequencies) included; not the adapter's own tensors: those differ by
    rank, sampling and seed, yet add exact zeros before training (what starts_at_base
    promises). A tensor stored twice (tied embeddings) is named, not hashed, the second
    time."""
    layers = method.adapter_layers(backbone)
    adapter_own = tuple(f"{n}." for n in layers)
    base_layers = tuple(f"{n}.base_layer." for n in layers)
    state = backbone.state_dict()
    buffers = {n: b for n, b in backbone.named_buffers() if n not in state}
    for name, tensor in [*state.items(), *sorted(buffers.items())]:
        if name.startswith(adapter_own) and not name.startswith(base_layers):
            continue
        yield name.replace(".base_layer", ""), tensor  # the same name for every method


def initial_evaluation_key(loop: Any) -> str | None:
    """The cache key of ``loop``'s evaluation before training; None when not shareable."""
    method = applied_method(loop.backbone)
    if method is None or not method.starts_at_base():
        return None
    digest = hashlib.sha256()
    config = loop.backbone.config
    trainer = loop.cfg.get("trainer") or {}
    settings = {
        "version": VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "model": without_origin(config.to_dict()),
        "implementations": _implementations(config),
        "tokenizer": _tokenizer(loop.tokenizer),
        "head": loop.head.name,
        "trainer": {k: str(trainer.get(k)) for k in TRAINER_FIELDS},
        "machine": _machine(str(trainer.get("accelerator", "auto"))),
        "tasks": loop.tasks,
        "eval_batch_size": loop.data.eval_batch_size,
        "perplexity": {
            k: getattr(loop.perplexity, k)
            for k in ("max_length", "stride", "batch_size", "max_tokens")
        },
    }
    retention = getattr(loop, "retention", None)
    if retention is not None:
        settings["retention"] = asdict(retention.settings)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in _base_tensors(loop.backbone, method):
        digest.update(name.encode())
        where = _placement(tensor)
        if where in seen:
            digest.update(f"same as {seen[where]}".encode())
            continue
        seen[where] = name
        _hash_tensor(digest, tensor)
    for name, tensor in sorted(loop.module.heads.state_dict().items()):
        digest.update(name.encode())
        _hash_tensor(digest, tensor)
    for task in loop.tasks:
        for role in ("eval", "validation"):
            digest.update(f"{task}:{role}".encode())
            for example in getattr(loop.data.prepared[task], role):
                digest.update(json.dumps(example, sort_keys=True).encode())
    if loop.data.corpus_ids is not None:
        _hash_tensor(digest, loop.data.corpus_ids)
    return digest.hexdigest()


def _path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "evaluations" / f"{key}.json"


def _record_sha256(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


def load(cache_dir: Path, key: str, tasks: list[str]) -> Evaluation | None:
    """The cached evaluation, or None (missing, unreadable or failing a check: it is simply
    recomputed, with a warning naming the file)."""
    path = _path(cache_dir, key)
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
            raise ValueError("not a cache entry of this version")
        if entry.get("key") != key:
            raise ValueError("it holds the entry of another key")
        if entry.get("sha256") != _record_sha256(entry.get("record")):
            raise ValueError("its record does not match its checksum")
        record = RunRecord.from_dict(entry["record"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring unreadable cached evaluation %s (%s); recomputing", path, error)
        return None
    problem = record.initial and evaluation_inconsistency(record.initial)
    if problem:
        log.warning("ignoring cached evaluation %s (%s); recomputing", path, problem)
        return None
    initial = record.initial
    if initial is None or record.tasks != tasks:
        return None
    scores = [*initial.scores.values(), *initial.validation.values()]
    if any(score.correct is None for score in scores):
        return None  # stored before per-example outcomes were recorded: recompute them
    if any(s.exact_match is not None and s.exact_correct is None for s in scores):
        return None  # head=words, stored before per-example exact matches were recorded
    return initial


def store(cache_dir: Path, key: str, tasks: list[str], evaluation: Evaluation) -> bool:
    """Store the evaluation for the next run; returns whether it was stored.

    The cache only saves time, so a cache that cannot be written (a shared read-only cache
    on a cluster, a full disk) costs one warning, never the run."""
    record = RunRecord(list(tasks), initial=evaluation, status="cached evaluation").to_dict()
    entry = {"format": ENTRY_FORMAT, "key": key, "sha256": _record_sha256(record), "record": record}
    text = json.dumps(entry, indent=1, allow_nan=False) + "\n"
    try:
        atomic_write_text(_path(cache_dir, key), text)
    except OutputError as error:
        log.warning("not caching the evaluation before training: %s; the run goes on", error)
        return False
    return True
