"""The contract every method and every strategy meets, as functions the contract tests call.

Baselines are discovered from their YAMLs (``configs/method/*.yaml``,
``configs/strategy/*.yaml``): no test lists names, so a new baseline (one file + one YAML)
is tested with no other edit. What a baseline needs beyond the defaults comes from its
class's capabilities (``AdapterMethod.needs_calibration``), never from its name.

The contract, for one baseline (the other axis at its default: ``method=curlora`` for a
strategy, ``strategy=sequential`` for a method):

- :func:`tiny_run`: a 3-task tiny run completes, every task scored after every task;
  frozen base weights never move; a backbone with nothing trainable keeps the LM's
  perplexity bit for bit.
- :func:`check_resume`: a run stopped in the middle of task 2 (after a step checkpoint)
  and resumed gives the uninterrupted run's numbers and final state bit for bit.
- :func:`check_reload`: what the run saved restores it: a method's ``adapter/`` (or, when
  ``saves_final_adapter`` is False, the last task checkpoint's adapter state) on a fresh base
  gives the trained model's logits bit for bit; a strategy's checkpointed state loads into
  a fresh strategy and saves back unchanged.
- :func:`check_bad_values`: a bad value for any key of the YAML is refused before anything
  loads, by an error naming the key.

Every check runs under both protocols (``head=linear``, the default, and ``head=words``:
the model answers in label words, ``curlora.models.heads``). A method that trains nothing
in the backbone (``num_trainable == 0``: nothing at all would train under ``words``) is
instead refused under ``words`` by :func:`check_refused_under_words`.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from curlora.adapters import (
    adapter_state_dict,
    apply_adapter,
    load_adapter,
    load_adapter_state_dict,
)
from curlora.checks.config import ConfigError, validate_config
from curlora.loop import TaskLoop
from curlora.models.backbone import load_backbone
from curlora.run.interrupts import InterruptGuard
from curlora.run.report import write_run_report
from curlora.run.state import load_task_checkpoint, task_checkpoint
from curlora.strategies import build_strategy
from curlora.train import run
from tests.conftest import CONFIG_DIR, FAST, compose_run_config, figures_off

KINDS = ("method", "strategy")
CONFIGS = Path(os.environ.get("CURLORA_KIT_CONFIGS") or CONFIG_DIR)
"""The config tree the kit discovers and runs: ``configs/``, or another copy of it (the test
that adds a throwaway baseline points a fresh pytest at one)."""
TASKS = ("pairs", "reviews", "moods")  # data=synthetic's sequence
# 64 examples per task at batch 16: 4 optimizer steps per task, a step checkpoint every 2.
SHORT = [
    "trainer.max_epochs=1",
    *(f"data.task_specs.{task}.train_limit=64" for task in TASKS),
    "checkpoint.every_n_train_steps=2",
]
# A method that calibrates on the LM corpus (needs_calibration) reads the tokens after the
# perplexity's scored prefix; the synthetic corpus (~2,800 tokens) needs shorter ones.
CALIBRATION = [
    "callbacks.perplexity.max_tokens=1024",
    "method.calibration_tokens=512",
    "method.calibration_length=64",
]
CRASH = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: %s, step: %d, marker: '%s'}"
)
NUMBERS = ("accuracy_matrix", "initial_accuracy", "perplexity", "metrics", "head")


def discover(kind: str, config_dir: Path = CONFIGS) -> list[str]:
    """The option names of config group ``kind``: one per YAML file."""
    return sorted(p.stem for p in (config_dir / kind).glob("*.yaml"))


def target_class(kind: str, name: str, config_dir: Path = CONFIGS) -> type:
    """The class a baseline's YAML names in ``_target_``."""
    return hydra.utils.get_object(str(OmegaConf.load(config_dir / kind / f"{name}.yaml")._target_))


def overrides(kind: str, name: str, config_dir: Path = CONFIGS, head: str = "linear") -> list[str]:
    """The tiny run's overrides for one baseline, from its class's capabilities."""
    extra = []
    if kind == "method" and target_class(kind, name, config_dir).needs_calibration:
        extra = CALIBRATION
    return [*FAST, *SHORT, f"{kind}={name}", *extra, f"head={head}"]


def method_num_trainable(name: str, config_dir: Path = CONFIGS) -> int | None:
    """The method's ``num_trainable`` on the tiny model (None: not determined by shapes)."""
    from curlora.adapters import build_method, linear_shapes
    from curlora.models.backbone import load_model_config

    args = overrides("method", name, config_dir)
    cfg = compose_run_config(Path(tempfile.gettempdir()), args, config_dir)
    shapes = linear_shapes(load_model_config(cfg.model, Path(cfg.paths.cache_dir)))
    return build_method(cfg.method).num_trainable(shapes)


def trains_nothing_under_words(kind: str, name: str, config_dir: Path = CONFIGS) -> bool:
    """Whether the baseline is a method that trains no backbone parameter of the tiny
    model (``num_trainable == 0``), which ``head=words`` (no head trains) must refuse."""
    return kind == "method" and method_num_trainable(name, config_dir) == 0


def check_refused_under_words(tmp: Path, kind: str, name: str) -> None:
    """A method with nothing to train under ``head=words`` is refused by ``validate_config``
    (before anything loads), naming ``method=``."""
    cfg = compose_run_config(tmp, overrides(kind, name, head="words"))
    try:
        validate_config(cfg)
    except ConfigError as error:
        assert "method=" in str(error) and "head=words" in str(error), str(error)
    else:
        raise AssertionError(f"{kind}={name} trains nothing under head=words, yet was accepted")


@dataclasses.dataclass
class TinyRun:
    """A finished 3-task tiny run of one baseline, with the live objects."""

    kind: str
    name: str
    cfg: DictConfig
    loop: TaskLoop
    results: dict[str, Any]
    config_dir: Path
    head: str = "linear"


def tiny_run(
    tmp: Path, kind: str, name: str, config_dir: Path = CONFIGS, head: str = "linear"
) -> TinyRun:
    """Run the baseline's 3 tasks and check what every run must give (module docstring)."""
    cfg = compose_run_config(tmp, overrides(kind, name, config_dir, head), config_dir)
    loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
    saved = set(adapter_state_dict(loop.backbone))  # the method's own tensors may change
    base = {
        n: p.detach().clone()
        for n, p in loop.backbone.named_parameters()
        if not p.requires_grad and n not in saved
    }
    trains = any(p.requires_grad for p in loop.backbone.parameters())
    loop.run()
    results = write_run_report(cfg, loop.run_dir, loop.record, loop.context(), "completed")
    label = f"{kind}={name} head={head}"
    assert results["status"] == "completed", f"{label}: the run did not complete"
    matrices = [results["accuracy_matrix"]]
    if head == "words":  # the exact match is scored beside the rank classification
        matrices.append(results["head"]["exact_match_matrix"])
    for matrix in matrices:
        assert all(v is not None for row in matrix for v in row), (
            f"{label}: every task must be scored after every task; got {matrix}"
        )
    now = dict(loop.backbone.named_parameters())
    moved = [n for n, before in base.items() if not torch.equal(before, now[n])]
    assert not moved, (
        f"{label}: frozen base weights changed during training: {moved[:3]}; only what the "
        "method lists as trainable (or saves in its adapter state) may change"
    )
    ppl = results["perplexity"]
    assert all(math.isfinite(p) for p in [ppl["initial"], *ppl["after_task"]]), ppl
    if not trains:
        assert ppl["after_task"] == [ppl["initial"]] * len(TASKS), (
            f"{label}: nothing in the backbone trains, so the LM perplexity must not change"
        )
    return TinyRun(kind, name, cfg, loop, results, config_dir, head)


def assert_same(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` equal, tensors bit for bit, through nested dicts, lists and tuples."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        assert torch.is_tensor(a) and torch.is_tensor(b), f"{where}: tensor vs {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{list(a.shape)}"
        assert torch.equal(a.cpu(), b.cpu()), f"{where}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check_resume(tmp: Path, reference: TinyRun) -> None:
    """Stop the baseline's run at step 3 of task 2 (its last step checkpoint is step 2),
    resume it, and compare with the uninterrupted ``reference`` bit for bit."""
    from tests.pipeline.faults import SimulatedCrash

    args = overrides(reference.kind, reference.name, reference.config_dir, reference.head)
    crash = CRASH % (TASKS[1], 3, tmp / "crashed")
    cfg = compose_run_config(tmp, [*args, crash], reference.config_dir)
    label = f"{reference.kind}={reference.name} head={reference.head}"
    try:
        run(cfg)
    except SimulatedCrash:
        pass
    else:
        raise AssertionError(f"{label}: the injected stop in task 2 did not happen")
    run_dir = Path(cfg.paths.output_dir)
    resumed = run(compose_run_config(tmp, [*args, f"resume={run_dir}"], reference.config_dir))
    assert resumed["status"] == "completed", f"{label}: the resumed run did not complete"
    for key in NUMBERS:
        assert resumed[key] == reference.results[key], (
            f"{label}: after a stop mid-task and a resume, {key} differs from the "
            "uninterrupted run; everything a strategy or method needs to continue must be in "
            "its checkpointed state (on_save_checkpoint / adapter state)"
        )
    final = load_task_checkpoint(task_checkpoint(run_dir, len(TASKS) - 1))["training_state"]
    assert_same(final, reference.loop.module.training_state(), f"{label}: final state")


def round_trip(state: Any) -> Any:
    """What a resumed run reads back: ``torch.save`` then ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_reload(done: TinyRun) -> None:
    """What the run saved restores it (see the module docstring)."""
    label = f"{done.kind}={done.name} head={done.head}"
    loop = done.loop
    if done.kind == "strategy":
        last = load_task_checkpoint(task_checkpoint(loop.run_dir, len(TASKS) - 1))
        saved = last["training_state"]["strategy_state"]
        fresh = build_strategy(done.cfg.strategy)
        fresh.on_load_checkpoint(loop.module, round_trip(saved))
        assert_same(fresh.on_save_checkpoint(loop.module), saved, f"{label}: reloaded state")
        return
    model, _ = load_backbone(done.cfg.model, Path(done.cfg.paths.cache_dir))
    adapter = loop.run_dir / "adapter"
    if adapter.exists():
        load_adapter(model, adapter)
    else:  # no adapter/ (full: the backbone is in the last task checkpoint)
        last = load_task_checkpoint(task_checkpoint(loop.run_dir, len(TASKS) - 1))
        apply_adapter(model, done.cfg.method)
        load_adapter_state_dict(model, last["training_state"]["adapter_state"])
    ids = torch.randint(3, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    model.eval()
    loop.backbone.eval()
    with torch.no_grad():
        want, got = loop.backbone(ids).logits, model(ids).logits
    assert torch.equal(got, want), (
        f"{label}: the saved adapter on a fresh base does not give the trained model's logits "
        f"(max difference {(got - want).abs().max().item():.3g}); the adapter state must hold "
        "everything the adapted layers compute with (AdapterMethod.state_dict / after_load)"
    )


def bad_value(value: Any) -> Any:
    """A value no field of that kind accepts: a mapping for a string field, else a string."""
    return {"not": "valid"} if isinstance(value, str) else "not-a-valid-value"


def check_bad_values(tmp: Path, kind: str, name: str, config_dir: Path = CONFIGS) -> None:
    """A bad value for every key of the baseline's YAML is refused by ``validate_config``
    (what ``python train.py`` runs before loading anything), naming the key."""
    cfg = compose_run_config(tmp, overrides(kind, name, config_dir), config_dir)
    resolved = OmegaConf.to_container(cfg[kind], resolve=True)
    for key, value in resolved.items():
        if key == "_target_":
            continue
        bad = copy.deepcopy(cfg)
        with open_dict(bad):
            bad[kind][key] = bad_value(value)
        try:
            validate_config(bad)
        except ConfigError as error:
            assert f"{key}=" in str(error), (
                f"{kind}={name}: {kind}.{key}={bad_value(value)!r} was refused, but the "
                f"message does not name the key as '{key}=...': {error}"
            )
        else:
            raise AssertionError(
                f"{kind}={name}: {kind}.{key}={bad_value(value)!r} was accepted; check it "
                "where the object is built (__init__ / __post_init__ / validate) and raise "
                f"ValueError('{key}=<value> is not valid; valid: ...')"
            )


def run_checks(params: list) -> dict[str, Any]:
    """One tier of the contract for a test module's namespace (``globals().update(...)``):
    the module-scoped ``baseline`` fixture (one tiny run per ``(kind, name, head)`` param,
    checked by :func:`tiny_run` as it finishes) and the three checks every run gets. Each
    tier lives in its own file so pytest-xdist (``--dist loadfile``) gives the tiers to
    different workers."""
    import pytest

    @pytest.fixture(scope="module", autouse=True)
    def no_plots() -> Iterator[None]:
        """The contract's tiny runs draw no figures: no check here reads them."""
        with figures_off():
            yield

    @pytest.fixture(scope="module")
    def baseline(request: pytest.FixtureRequest, tmp_path_factory, no_plots) -> TinyRun:
        kind, name, head = request.param
        return tiny_run(tmp_path_factory.mktemp(f"{kind}-{name}-{head}"), kind, name, head=head)

    @pytest.mark.parametrize("baseline", params, indirect=True)
    def test_three_tasks_complete(baseline: TinyRun) -> None:
        assert baseline.results["status"] == "completed"

    @pytest.mark.parametrize("baseline", params, indirect=True)
    def test_what_the_run_saved_restores_it(baseline: TinyRun) -> None:
        check_reload(baseline)

    @pytest.mark.parametrize("baseline", params, indirect=True)
    def test_stop_mid_task_and_resume_is_exact(baseline: TinyRun, tmp_path: Path) -> None:
        check_resume(tmp_path, baseline)

    return {
        "no_plots": no_plots,
        "baseline": baseline,
        "test_three_tasks_complete": test_three_tasks_complete,
        "test_what_the_run_saved_restores_it": test_what_the_run_saved_restores_it,
        "test_stop_mid_task_and_resume_is_exact": test_stop_mid_task_and_resume_is_exact,
    }
