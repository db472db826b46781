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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import transformers

from curlora.adapters import applied_method
from curlora.run.atomic import OutputError, atomic_write_text
from curlora.run.record import Evaluation, RunRecord

log = logging.getLogger("curlora")
VERSION = 3  # bump when the evaluation itself changes (2: validation carves, 3: checksums)
ENTRY_FORMAT = "curlora-evaluation/3"


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


def _record_sha256(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


def _inconsistency(evaluation: Evaluation) -> str | None:
    """Why the stored scores cannot be what was measured (None: they agree): each
    accuracy must be the share of right outcomes and the confusion matrix's diagonal."""
    for role in ("scores", "validation"):
        for task, score in getattr(evaluation, role).items():
            if score.correct is None:
                continue
            right, size = score.correct.count("1"), len(score.correct)
            if size == 0:
                continue  # an empty split: accuracy is nan by definition
            diagonal = sum(score.confusion[c][c] for c in range(len(score.confusion)))
            if size != score.size or right != diagonal or score.accuracy != right / max(size, 1):
                return f"{role}.{task}: accuracy {score.accuracy} disagrees with its outcomes"
            exact = score.exact_correct
            if exact is not None and (
                len(exact) != size or score.exact_match != exact.count("1") / size
            ):
                return f"{role}.{task}: exact match {score.exact_match} disagrees with its outcomes"
    return None


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
    problem = record.initial and _inconsistency(record.initial)
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
