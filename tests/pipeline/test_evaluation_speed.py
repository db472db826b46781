"""Faster evaluation, same numbers: length-sorted eval batches, the evaluation before training
shared between runs, a frozen backbone measured once. Each shortcut is checked against the
computation it replaces, bit for bit (perplexity to 1e-6 relative where the path differs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import open_dict
from torch.utils.data import DataLoader

from curlora.loop import TaskLoop
from curlora.metrics import perplexity as perplexity_module
from curlora.models.module import ContinualLitModule
from curlora.run import evaluation_cache
from curlora.run.interrupts import InterruptGuard
from curlora.train import run

SHORT = ["trainer.max_epochs=1"]
NUMBERS = ("accuracy_matrix", "initial_accuracy", "perplexity", "metrics")


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    return {k: results[k] for k in NUMBERS}


def _loop(run_config, *overrides: str) -> TaskLoop:
    cfg = run_config(*overrides)
    return TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())


def test_length_sorted_batches_give_identical_predictions(run_config) -> None:
    loop = _loop(run_config, "data.eval_batch_size=8")
    module, data = loop.module.eval(), loop.data
    for task in data.tasks:
        plain = DataLoader(data.prepared[task].eval, batch_size=8, collate_fn=data.collate)
        sorted_ = data.eval_dataloader_for(task)
        lengths = [b["input_ids"].shape[1] for b in sorted_]
        assert lengths == sorted(lengths, reverse=True)  # longest first
        predictions = {}
        for name, loader, context in (
            ("plain", plain, torch.no_grad),
            ("sorted", sorted_, torch.inference_mode),
        ):
            with context():
                predictions[name] = sorted(
                    (i, p)
                    for b in loader
                    for i, p in zip(
                        b["index"].tolist(),
                        module.task_logits(b, task).argmax(-1).tolist(),
                        strict=True,
                    )
                )
        assert predictions["plain"] == predictions["sorted"]


def test_perplexity_in_inference_mode_equals_the_no_grad_path(run_config, monkeypatch) -> None:
    loop = _loop(run_config)
    ids = loop.data.corpus_ids
    new = perplexity_module.sliding_window_perplexity(loop.backbone, ids, 64, 32, 4)
    monkeypatch.setattr(perplexity_module.torch, "inference_mode", torch.no_grad)
    old = perplexity_module.sliding_window_perplexity(loop.backbone, ids, 64, 32, 4)
    assert new.tokens == old.tokens
    assert new.ppl == pytest.approx(old.ppl, rel=1e-6)


def test_initial_evaluation_is_shared_bit_for_bit(run_config, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="curlora")

    # One cache directory for three runs: curlora r16 computes the evaluation before
    # training; lora r8 and head_only reuse it; the same lora run recomputing it agrees.
    def config(*overrides: str):
        cfg = run_config(*SHORT, *overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "_".join(overrides).replace("=", "-"))
            cfg.paths.cache_dir = str(tmp_path / "shared-cache")
        return cfg

    first = run(config("method=curlora"))
    assert len(list((tmp_path / "shared-cache" / "evaluations").glob("*.json"))) == 1
    reused = run(config("method=lora", "rank=8"))
    assert any("reused" in r.getMessage() for r in caplog.records)
    fresh = run(config("method=lora", "rank=8", "reuse_initial_evaluation=false"))
    assert _numbers(reused) == _numbers(fresh)
    assert reused["initial_accuracy"] == first["initial_accuracy"]
    assert reused["perplexity"]["initial"] == first["perplexity"]["initial"]


def test_the_cache_key_follows_what_the_numbers_depend_on(run_config) -> None:
    key = evaluation_cache.initial_evaluation_key
    base = key(_loop(run_config))
    assert key(_loop(run_config, "method=lora", "rank=4", "alpha=3")) == base
    assert key(_loop(run_config, "method=head_only")) == base
    assert key(_loop(run_config, "seed=7")) != base  # other initial heads
    assert key(_loop(run_config, "data.append_eos=true")) != base  # other eval inputs
    assert key(_loop(run_config, "callbacks.perplexity.stride=16")) != base
    assert key(_loop(run_config, "method=osf")) is None  # not exactly the base model


def test_a_frozen_backbone_is_measured_once_with_the_same_numbers(
    run_config, monkeypatch, tmp_path: Path
) -> None:
    def config(name: str, *overrides: str):
        cfg = run_config(*SHORT, "method=head_only", *overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / name)
        return cfg

    cached = run(config("cached"))
    monkeypatch.setattr(ContinualLitModule, "backbone_frozen", property(lambda self: False))
    recomputed = run(config("recomputed", "reuse_initial_evaluation=false"))
    assert _numbers(cached) == _numbers(recomputed)
