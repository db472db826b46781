"""The evaluation before training, computed once and shared by every run it is the same for.

Before any training, a method that starts exactly at the base model (a zero-initialised U
or B: ``AdapterMethod.starts_at_base``) gives every run the same numbers as the base model
itself, whatever its rank, α or strategy: the same untrained heads score the same features,
and the perplexity is the base model's. A sweep over methods and ranks would compute that
evaluation once per job; here it is computed once and stored under
``<cache dir>/evaluations/<key>.json``.

The key is a sha256 of everything the numbers depend on, taken from the objects themselves
rather than from config names: the base weights (a strided sample of every tensor), the
heads' initial weights, every eval example's token ids and label, the eval batch size
(batch composition), the perplexity corpus slice and window settings, the dtype, the
number of threads, determinism, and the torch/transformers versions. Anything else that
differs gives another key, so a hit is bit-for-bit the evaluation the run would have done
(tested). Writes are atomic; two jobs computing the same entry at once both write the same
content. The cache is best-effort: an entry that cannot be read is recomputed, one that
cannot be written is skipped, each with a warning naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import transformers

from curlora.adapters import applied_method
from curlora.run.atomic import OutputError, atomic_write_text
from curlora.run.record import Evaluation, RunRecord

log = logging.getLogger("curlora")
VERSION = 2  # bump when the evaluation itself changes (2: validation carves)


def _hash_tensor(digest: Any, tensor: torch.Tensor, sample: bool = False) -> None:
    flat = tensor.detach().reshape(-1)
    if sample:
        flat = flat[:: max(1, flat.numel() // 4096)]
    digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
    digest.update(flat.cpu().contiguous().view(torch.uint8).numpy().tobytes())


def initial_evaluation_key(loop: Any) -> str | None:
    """The cache key of ``loop``'s evaluation before training; None when not shareable."""
    method = applied_method(loop.backbone)
    if method is None or not method.starts_at_base():
        return None
    digest = hashlib.sha256()
    settings = {
        "version": VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "tasks": loop.tasks,
        "eval_batch_size": loop.data.eval_batch_size,
        "perplexity": {
            k: getattr(loop.perplexity, k)
            for k in ("max_length", "stride", "batch_size", "max_tokens")
        },
    }
    retention = getattr(loop, "retention", None)
    if retention is not None:  # only then: the keys of runs without the suite stay as they were
        settings["retention"] = asdict(retention.settings)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    # The base weights, not the adapter's own tensors: those differ by rank, sampling and
    # seed, yet add exact zeros before training (that is what starts_at_base promises).
    adapter_own = tuple(f"{n}." for n in method.adapter_layers(loop.backbone))
    base_layers = tuple(f"{n}.base_layer." for n in method.adapter_layers(loop.backbone))
    for name, tensor in loop.backbone.state_dict().items():
        if name.startswith(adapter_own) and not name.startswith(base_layers):
            continue
        digest.update(name.replace(".base_layer", "").encode())  # the same for every method
        _hash_tensor(digest, tensor, sample=True)
    for name, tensor in sorted(loop.module.heads.state_dict().items()):
        digest.update(name.encode())
        _hash_tensor(digest, tensor)
    for task in loop.tasks:
        for role in ("eval", "validation"):
            digest.update(f"{task}:{role}".encode())
            for example in getattr(loop.data.prepared[task], role):
                digest.update(json.dumps([example["input_ids"], example["labels"]]).encode())
    if loop.data.corpus_ids is not None:
        _hash_tensor(digest, loop.data.corpus_ids)
    return digest.hexdigest()


def _path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "evaluations" / f"{key}.json"


def load(cache_dir: Path, key: str, tasks: list[str]) -> Evaluation | None:
    """The cached evaluation, or None (missing or unreadable: it is simply recomputed)."""
    path = _path(cache_dir, key)
    if not path.exists():
        return None
    try:
        record = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring unreadable cached evaluation %s (%s)", path, error)
        return None
    initial = record.initial
    if initial is None or record.tasks != tasks:
        return None
    scores = [*initial.scores.values(), *initial.validation.values()]
    if any(score.correct is None for score in scores):
        return None  # stored before per-example outcomes were recorded: recompute them
    return initial


def store(cache_dir: Path, key: str, tasks: list[str], evaluation: Evaluation) -> bool:
    """Store the evaluation for the next run; returns whether it was stored.

    The cache only saves time, so a cache that cannot be written (a shared read-only cache
    on a cluster, a full disk) costs one warning, never the run."""
    record = RunRecord(list(tasks), initial=evaluation, status="cached evaluation")
    text = json.dumps(record.to_dict(), indent=1, allow_nan=False) + "\n"
    try:
        atomic_write_text(_path(cache_dir, key), text)
    except OutputError as error:
        log.warning("not caching the evaluation before training: %s; the run goes on", error)
        return False
    return True
