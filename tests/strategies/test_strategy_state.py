"""What a strategy's checkpointed state may hold, checked where it is saved, and the value
checks the strategy base exports for a new strategy's settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from curlora.adapters import apply_adapter
from curlora.adapters.head_only import HeadOnlyMethod
from curlora.models.module import ContinualLitModule
from curlora.models.tiny import load
from curlora.strategies.base import Strategy, check_bool, check_float, check_int, checked_state


class Holding(Strategy):
    """A strategy whose state is whatever it is given."""

    name = "holding"

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


def _module(strategy: Strategy) -> ContinualLitModule:
    backbone, _ = load({}, cache_dir=".")
    apply_adapter(backbone, HeadOnlyMethod())
    return ContinualLitModule(
        backbone, {"a": 2}, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), strategy=strategy
    )


def test_a_numpy_value_in_the_state_fails_when_saved_naming_strategy_and_key() -> None:
    # torch.load(weights_only=True), which a resume uses, refuses numpy arrays: the save
    # must refuse them first, where the cause is.
    module = _module(Holding({"fisher": {"layer": np.zeros(3)}}))
    with pytest.raises(TypeError) as error:
        module.training_state()
    line = str(error.value)
    assert "\n" not in line and "strategy 'holding'" in line and "'fisher.layer'" in line
    assert "numpy.ndarray" in line and "add_safe_globals" not in line


def test_tensors_and_plain_values_pass_unchanged() -> None:
    state = {
        "anchor": {"w": torch.ones(2)},
        "seen": ["a", "b"],
        "steps": 3,
        "scale": 0.5,
        "on": True,
        "last": None,
        "rng": torch.Generator().get_state(),
        1: (torch.float32, torch.device("cpu")),
    }
    assert checked_state("holding", state) is state
    assert _module(Holding(state)).training_state()["strategy_state"] is state


def test_an_object_deep_in_a_list_is_named_by_its_index() -> None:
    with pytest.raises(TypeError, match=r"state 'buffer\[1\]' is a builtins.set"):
        checked_state("replay", {"buffer": [1, {2}]})


def test_the_value_checks_a_strategy_uses_are_exported() -> None:
    # curlora.checks words every refusal "<key>=<value> is not valid; valid: ...".
    assert check_bool("online", False) is False
    with pytest.raises(ValueError, match=r"strategy.online=1 is not valid; valid: true or false"):
        check_bool("online", 1)
    assert check_int("samples", 4, 1) == 4
    assert check_float("weight", 0.5, 0.0) == 0.5
