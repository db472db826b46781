"""Adapter statistics for loggers: a few aggregates over layers and one row per layer.

``adapter_diagnostics`` gives ``adapter/<layer>/<stat>`` for every adapted layer (180 keys
for CURLoRA on SmolLM2: 30 layers × q/k/v × 2 statistics). A dashboard needs how the
adapter moves as a whole, so loggers get, per evaluation point:

- ``adapter/<stat>_mean`` for every statistic and ``adapter/delta_rel_max`` (the layer
  that moved most): 3 keys for CURLoRA (delta_rel, u_norm), 4 for LoRA (a_norm, b_norm),
  whatever the number of layers;
- the per-layer values as table rows ``[layer, <stat>...]`` (the W&B logger adds the
  evaluation point, ``tasks_trained``, as a first column).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "adapter/"


def by_layer(diagnostics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{layer: {stat: value}}`` from ``{"adapter/<layer>/<stat>": value}``."""
    layers: dict[str, dict[str, float]] = {}
    for key, value in diagnostics.items():
        layer, _, stat = key.removeprefix(PREFIX).rpartition("/")
        layers.setdefault(layer, {})[stat] = float(value)
    return layers


def stats_of(layers: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The statistics present, in first-seen order."""
    return list(dict.fromkeys(stat for values in layers.values() for stat in values))


def aggregate_diagnostics(diagnostics: Mapping[str, float]) -> dict[str, float]:
    """``adapter/<stat>_mean`` over layers, plus ``adapter/delta_rel_max``; {} for none."""
    layers = by_layer(diagnostics)
    out: dict[str, float] = {}
    for stat in stats_of(layers):
        values = [v[stat] for v in layers.values() if stat in v]
        out[f"{PREFIX}{stat}_mean"] = sum(values) / len(values)
        if stat == "delta_rel":
            out[f"{PREFIX}{stat}_max"] = max(values)
    return out


def layer_rows(diagnostics: Mapping[str, float]) -> tuple[list[str], list[list[Any]]]:
    """Columns ``[layer, <stat>...]`` and one row per adapted layer (a missing value: None)."""
    layers = by_layer(diagnostics)
    stats = stats_of(layers)
    rows = [[layer, *(values.get(s) for s in stats)] for layer, values in layers.items()]
    return ["layer", *stats], rows
