"""build_strategy and the YAML configs: every config builds its class with its documented
defaults, and every kind of bad config is refused with a ValueError that names the key."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from curlora.strategies import Sequential, Strategy, available_strategies, build_strategy
from curlora.strategies.ewc import EWC
from curlora.strategies.joint import Joint
from curlora.strategies.lwf import LwF
from curlora.strategies.replay import Replay
from curlora.strategies.separate import Separate

STRATEGY_DIR = Path(__file__).resolve().parents[2] / "configs" / "strategy"
CLASSES = {
    "sequential": Sequential,
    "ewc": EWC,
    "replay": Replay,
    "lwf": LwF,
    "joint": Joint,
    "separate": Separate,
}
YAML_SEED = 7


def load(name: str, **overrides: object):
    """The ``strategy`` node of a config whose root holds ``seed`` (as train.yaml does)."""
    root = OmegaConf.create(
        {"seed": YAML_SEED, "strategy": OmegaConf.load(STRATEGY_DIR / f"{name}.yaml")}
    )
    for key, value in overrides.items():
        root.strategy[key] = value
    return root.strategy


def test_missing_config_gives_sequential() -> None:
    assert type(build_strategy(None)) is Sequential
    assert type(build_strategy({})) is Sequential


def test_one_yaml_per_strategy_and_all_are_discoverable() -> None:
    assert {p.stem for p in STRATEGY_DIR.glob("*.yaml")} >= set(CLASSES)
    listed = available_strategies()
    for cls in CLASSES.values():
        assert f"{cls.__module__}.{cls.__qualname__}" in listed


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_yaml_builds_its_class_with_the_constructor_defaults(name: str) -> None:
    cfg = load(name)
    strategy = build_strategy(cfg)
    assert type(strategy) is CLASSES[name]
    assert strategy.name == name
    # Source of the expected values: the constructor signature. The YAML repeats every
    # default so that it documents them; the two must not drift apart.
    signature = inspect.signature(CLASSES[name].__init__).parameters
    for key, value in OmegaConf.to_container(cfg, resolve=True).items():
        if key == "_target_":
            continue
        if key == "seed":
            assert value == YAML_SEED and strategy.seed == YAML_SEED
            continue
        assert signature[key].default == value, f"{name}.yaml: {key}"


def test_sequential_hooks_change_nothing(module, datamodule) -> None:
    strategy = build_strategy(load("sequential"))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    strategy.on_task_start(module, "a", datamodule)
    batch = datamodule.collate(datamodule.train_examples("a")[:4])
    logits = module.task_logits(batch, "a")
    assert strategy.extra_loss(module, "a", batch, logits) is None
    assert strategy.extra_batches(module, "a", batch) == []
    strategy.on_task_end(module, "a", datamodule)
    assert strategy.state_dict() == {}
    for n, p in module.named_parameters():
        assert p.equal(before[n])


def test_unknown_target_is_a_value_error_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"cannot be imported.*curlora\.strategies\.ewc\.EWC"):
        build_strategy({"_target_": "curlora.strategies.nope.Nope"})
    with pytest.raises(ValueError, match="not a Strategy subclass"):
        build_strategy({"_target_": "collections.OrderedDict"})
    with pytest.raises(ValueError, match="no _target_"):
        build_strategy({"ewc_lambda": 1.0})


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("ewc", {"lambda": 1.0}, r"unknown key\(s\) \['lambda'\]"),
        ("ewc", {"ewc_lambda": -1.0}, "ewc_lambda"),
        ("ewc", {"fisher_samples": 0}, "fisher_samples"),
        ("ewc", {"gamma": 0.9}, "only applies to online"),
        ("ewc", {"online": True, "gamma": 0.0}, "gamma"),
        ("ewc", {"seed": "3"}, "seed"),
        ("ewc", {"empirical": "yes"}, "empirical"),
        ("replay", {"buffer_size": 0}, "buffer_size"),
        ("replay", {"replay_batch_size": 2.5}, "replay_batch_size"),
        ("lwf", {"temperature": 0.0}, "temperature"),
        ("lwf", {"weight": float("nan")}, "weight"),
        ("lwf", {"record_batch_size": True}, "record_batch_size"),
    ],
)
def test_bad_values_are_value_errors_naming_the_key(name, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_strategy(load(name, **overrides))


def test_online_ewc_with_decay_builds() -> None:
    strategy = build_strategy(load("ewc", online=True, gamma=0.9))
    assert isinstance(strategy, Strategy) and strategy.online and strategy.gamma == 0.9
