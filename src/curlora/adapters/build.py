"""Build a method object from its config (``curlora.registry``: ``_target_`` is the registry)."""

from __future__ import annotations

from typing import Any

from curlora.adapters.base import AdapterMethod
from curlora.registry import build


def build_method(method_cfg: Any) -> AdapterMethod:
    """An ``AdapterMethod`` from a DictConfig/dict with ``_target_``, or the object itself.

    The target must be an ``AdapterMethod`` subclass (checked before anything is called, so
    a config file cannot make this run arbitrary code), and every key must be one of its
    fields. Raises ValueError naming the offending key otherwise. Cheap: no model, no weights.
    """
    return build(method_cfg, AdapterMethod, "method", "curlora.adapters")
