"""Adapter statistics for loggers: aggregates over layers and one row per layer."""

from __future__ import annotations

import pytest

from curlora.reporting.adapter_stats import aggregate_diagnostics, layer_rows

# Two CURLoRA layers, as adapter_diagnostics names them.
DIAGNOSTICS = {
    "adapter/model.layers.0.self_attn.q_proj/delta_rel": 0.01,
    "adapter/model.layers.0.self_attn.q_proj/u_norm": 0.2,
    "adapter/model.layers.1.self_attn.q_proj/delta_rel": 0.03,
    "adapter/model.layers.1.self_attn.q_proj/u_norm": 0.4,
}


def test_aggregates_do_not_depend_on_the_number_of_layers() -> None:
    assert aggregate_diagnostics(DIAGNOSTICS) == {
        "adapter/delta_rel_mean": pytest.approx(0.02),
        "adapter/delta_rel_max": 0.03,
        "adapter/u_norm_mean": pytest.approx(0.3),
    }
    thirty = {
        f"adapter/model.layers.{i}.self_attn.{m}/{s}": 0.1
        for i in range(30)
        for m in ("q_proj", "k_proj", "v_proj")
        for s in ("delta_rel", "u_norm")
    }
    assert len(thirty) == 180 and len(aggregate_diagnostics(thirty)) == 3
    assert aggregate_diagnostics({}) == {}


def test_layer_rows() -> None:
    columns, rows = layer_rows(DIAGNOSTICS)
    assert columns == ["layer", "delta_rel", "u_norm"]
    assert rows == [
        ["model.layers.0.self_attn.q_proj", 0.01, 0.2],
        ["model.layers.1.self_attn.q_proj", 0.03, 0.4],
    ]
