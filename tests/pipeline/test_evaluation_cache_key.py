"""The shared evaluation cache's key covers everything the evaluation before training reads.

A cache is shared (a cluster-wide directory; the receiver's own, when a received run is
resumed), so two bases whose keys collide share one base's numbers. The bases here are the
tiny test model saved as local Hugging Face folders: as it is, copied to another folder,
and with one change that alters the forward pass but not what a strided sample of the
weights shows (one config number; one weight value between two sampled ones).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from curlora.loop import TaskLoop
from curlora.models import tiny
from curlora.run.evaluation_cache import initial_evaluation_key
from curlora.run.interrupts import InterruptGuard
from tests.conftest import TINY, compose_run_config

RUN = [*TINY, "logger=none"]
# A weight the default method does not adapt: [intermediate 128, hidden 64], 8192 values.
WEIGHT = "model.layers.0.mlp.up_proj.weight"
OLD_SAMPLE_STRIDE = 8192 // 4096  # the old key read every 2nd value of such a tensor


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local model folders: ``base``; ``copy``, the same files elsewhere; ``eps``, its
    config.json's ``rms_norm_eps`` 1e-6 -> 0.5; ``weight``, one value of :data:`WEIGHT`
    changed at an index the old sample skipped."""
    root = tmp_path_factory.mktemp("bases")
    model, tokenizer = tiny.load({}, root)
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    for name in ("copy", "eps", "weight"):
        shutil.copytree(root / "base", root / name)
    config = json.loads((root / "eps" / "config.json").read_text())
    assert config["rms_norm_eps"] == 1e-6
    (root / "eps" / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 0.5}))
    index = 1
    assert index % OLD_SAMPLE_STRIDE != 0  # between two sampled values
    with torch.no_grad():
        model.get_parameter(WEIGHT).view(-1)[index] += 0.5
    model.save_pretrained(root / "weight")
    return {name: root / name for name in ("base", "copy", "eps", "weight")}


def _loop(tmp_path: Path, folder: Path, *overrides: str) -> TaskLoop:
    hub = ["model=hub", f"model.name_or_path={folder}", "model.dtype=float32"]
    cfg = compose_run_config(tmp_path, [*RUN, *hub, *overrides])
    return TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())


def _key(tmp_path: Path, folder: Path, *overrides: str) -> str | None:
    return initial_evaluation_key(_loop(tmp_path, folder, *overrides))


def test_one_config_number_gives_another_key(bases: dict[str, Path], tmp_path: Path) -> None:
    """rms_norm_eps changes every hidden state, not one weight: the old key, a sample of
    the weights only, let a received run with this base write the numbers a genuine run
    on the other then reused."""
    base = _key(tmp_path, bases["base"])
    assert base is not None
    # The same base again, and the same files in another folder: the same key (where a
    # model came from is not part of it).
    assert _key(tmp_path, bases["base"]) == base == _key(tmp_path, bases["copy"])
    assert _key(tmp_path, bases["eps"]) != base


def test_one_weight_value_outside_the_old_sample_gives_another_key(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    assert _key(tmp_path, bases["weight"]) != _key(tmp_path, bases["base"])


def test_the_attention_implementation_gives_another_key(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    """Kept outside config.to_dict(): eager and sdpa attention round differently."""
    sdpa = _key(tmp_path, bases["base"], "model.attn_implementation=sdpa")
    assert _key(tmp_path, bases["base"], "model.attn_implementation=eager") != sdpa


def test_the_precision_and_the_padding_give_another_key(tmp_path: Path) -> None:
    """Autocast (trainer.precision) and which side batches are padded on change the
    forward pass of the same base on the same examples."""
    cfg = compose_run_config(tmp_path, RUN)
    loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    base = initial_evaluation_key(loop)
    cfg = compose_run_config(tmp_path, [*RUN, "trainer.precision=bf16-mixed"])
    mixed = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    assert initial_evaluation_key(mixed) != base
    loop.tokenizer.padding_side = "left" if loop.tokenizer.padding_side == "right" else "right"
    assert initial_evaluation_key(loop) != base
