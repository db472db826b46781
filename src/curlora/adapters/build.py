"""Build a method object from its config: ``_target_`` is the registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import hydra.utils
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from curlora.adapters.base import AdapterMethod


def build_method(method_cfg: Any) -> AdapterMethod:
    """An ``AdapterMethod`` from a DictConfig/dict with ``_target_``, or the object itself.

    The target must be an ``AdapterMethod`` subclass (checked before anything is called, so
    a config file cannot make this run arbitrary code), and every key must be one of its
    fields. Raises ValueError naming the offending key otherwise. Cheap: no model, no weights.
    """
    if isinstance(method_cfg, AdapterMethod):
        return method_cfg
    if isinstance(method_cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(method_cfg, resolve=True)
        except OmegaConfBaseException as e:
            raise ValueError(f"method config cannot be resolved: {e}") from e
    elif isinstance(method_cfg, Mapping):
        cfg = dict(method_cfg)
    else:
        raise TypeError(f"method_cfg must be a mapping or an AdapterMethod, got {type(method_cfg)}")
    target = cfg.get("_target_")
    if not isinstance(target, str):
        raise ValueError(
            "method config has no _target_; e.g. _target_: curlora.adapters.curlora.CURLoRAMethod"
        )
    try:
        cls = hydra.utils.get_object(target)
    except Exception as e:  # hydra raises ImportError or ValueError, wrapped differently by version
        raise ValueError(f"method _target_='{target}' cannot be imported: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, AdapterMethod)):
        raise ValueError(f"method _target_='{target}' is not an AdapterMethod subclass")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - fields - {"_target_"})
    if unknown:
        raise ValueError(
            f"method '{cfg.get('name', target)}': unknown key(s) {unknown}; valid keys: "
            f"{sorted(fields)}"
        )
    return hydra.utils.instantiate(cfg, _convert_="all")
