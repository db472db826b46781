"""How tasks are combined over time: ``Strategy`` hooks and ``build_strategy``.

One file per strategy (``sequential``, ``ewc``, ``replay``, ``lwf``, ``joint``,
``separate``) and one YAML per strategy in ``configs/strategy/`` whose ``_target_`` names
the class, so a new strategy needs no table edited here. See ``curlora.strategies.base``
for the hook contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curlora.registry import available, build
from curlora.strategies.base import Strategy
from curlora.strategies.sequential import Sequential

__all__ = ["Sequential", "Strategy", "available_strategies", "build_strategy"]


def available_strategies() -> list[str]:
    """``_target_`` paths of the Strategy classes defined in this package (for messages)."""
    return available(Strategy, __name__)


def build_strategy(cfg: Mapping[str, Any] | None) -> Strategy:
    """Instantiate the strategy of a ``strategy`` config node (``curlora.registry``).

    None or an empty node gives ``Sequential`` (the paper's protocol). A node without
    ``_target_``, an unknown ``_target_``, a key the class does not accept or a value its
    constructor rejects raises a ValueError naming the key. Nothing heavy happens here, so
    config validation can call it before any model or data is loaded.
    """
    if cfg is None or len(cfg) == 0:
        return Sequential()
    return build(cfg, Strategy, "strategy", __name__)
