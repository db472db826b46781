"""How tasks are combined over time: ``Strategy`` hooks and ``build_strategy``.

One file per strategy (``sequential``, ``ewc``, ``replay``, ``lwf``) and one YAML per
strategy in ``configs/strategy/`` whose ``_target_`` names the class, so a new strategy
needs no table edited here. See ``curlora.strategies.base`` for the hook contract.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any

from curlora.strategies.base import Strategy
from curlora.strategies.sequential import Sequential

__all__ = ["Sequential", "Strategy", "available_strategies", "build_strategy"]


def available_strategies() -> list[str]:
    """``_target_`` paths of the Strategy classes defined in this package (for messages)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(mod).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Strategy)
                and obj.__module__ == mod.__name__
            ):
                found.append(f"{obj.__module__}.{obj.__qualname__}")
    return sorted(found)


def _locate(target: Any) -> type[Strategy]:
    """The class named by ``_target_``; ValueError naming the valid targets otherwise.

    Resolved here (module path + attribute) rather than by Hydra so that a typo yields one
    clear line instead of Hydra's logged traceback.
    """
    hint = f"valid strategy targets: {available_strategies()}"
    module_path, _, attr = target.rpartition(".") if isinstance(target, str) else ("", "", "")
    if not module_path or not attr:
        raise ValueError(f"strategy._target_={target!r} is not a 'module.Class' path; {hint}")
    try:
        cls = getattr(importlib.import_module(module_path), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"strategy._target_='{target}' cannot be imported ({err}); {hint}"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise ValueError(f"strategy._target_='{target}' is not a Strategy subclass; {hint}")
    return cls


def build_strategy(cfg: Mapping[str, Any] | None) -> Strategy:
    """Instantiate the strategy of a ``strategy`` config node (Hydra ``_target_``).

    None or an empty node gives ``Sequential`` (the paper's protocol). A node without
    ``_target_``, an unknown ``_target_``, a key the class does not accept or a value its
    constructor rejects raises a ValueError naming the key. Nothing heavy happens here, so
    config validation can call it before any model or data is loaded.
    """
    if cfg is None or len(cfg) == 0:
        return Sequential()
    if "_target_" not in cfg:
        raise ValueError(
            f"the strategy config has no _target_ (keys: {sorted(cfg)}); "
            f"valid strategy targets: {available_strategies()}"
        )
    cls = _locate(cfg["_target_"])
    params = inspect.signature(cls.__init__).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = {n for n, p in params.items() if n != "self" and p.kind in kinds}
    given = {k for k in cfg if not str(k).startswith("_")}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else sorted(given - accepted)
    if unknown:
        raise ValueError(
            f"strategy {cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(accepted)}"
        )
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        strategy = instantiate(cfg)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, TypeError)):
            message = str(cause)
            if not message.startswith("strategy."):
                message = f"strategy {cls.__name__}: {message}"
            raise ValueError(message) from None
        raise
    return strategy
