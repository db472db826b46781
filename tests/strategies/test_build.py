"""build_strategy: the default, and every kind of bad config refused with a ValueError that
names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from curlora.strategies import Sequential, Strategy, build_strategy

STRATEGY_DIR = Path(__file__).resolve().parents[2] / "configs" / "strategy"
# Every YAML's keys, defaults and name: tests/contract/test_conventions.py.
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
        build_strategy({"_target_": "curlora.strategies.base.DataLoader"})  # a class, not one
    # Outside the project and the allowlist: refused before its module is imported.
    with pytest.raises(ValueError, match=r"_target_='collections\.OrderedDict' is refused"):
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
        ("si", {"c": -0.5}, r"strategy\.c="),
        ("si", {"xi": 0}, r"strategy\.xi="),
        ("mas", {"samples": 2.5}, r"strategy\.samples="),
    ],
)
def test_bad_values_are_value_errors_naming_the_key(name, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_strategy(load(name, **overrides))


def test_online_ewc_with_decay_builds() -> None:
    strategy = build_strategy(load("ewc", online=True, gamma=0.9))
    assert isinstance(strategy, Strategy) and strategy.online and strategy.gamma == 0.9
