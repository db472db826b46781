"""Linear probes: the fit itself, and the probe matrix of a run (results.json ``probe``)."""

from __future__ import annotations

import pytest
import torch

from curlora.checks.config import ConfigError, validate_config
from curlora.metrics.probe import probe_accuracy
from curlora.train import run


def _clusters(seed: int, n: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian clusters in 8-d, means ±shift on the first axis, labels 0/1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g, dtype=torch.float64)
    x[:, 0] += shift * (2 * y - 1)
    return x, y


def test_separable_classes_are_probed_perfectly_and_noise_at_chance() -> None:
    # Means 20 standard deviations apart: a linear probe separates every test point.
    assert probe_accuracy(_clusters(0, 200, 10.0), _clusters(1, 200, 10.0), 2, 1e-3, 200) == 1.0
    # No signal (shift 0): accuracy on fresh points is chance, within 4 binomial std (n=2000).
    acc = probe_accuracy(_clusters(2, 400, 0.0), _clusters(3, 2000, 0.0), 2, 1e-3, 200)
    assert abs(acc - 0.5) < 4 * (0.25 / 2000) ** 0.5


def test_probe_is_deterministic() -> None:
    train, test = _clusters(4, 100, 1.0), _clusters(5, 100, 1.0)
    assert probe_accuracy(train, test, 2, 1e-2, 50) == probe_accuracy(train, test, 2, 1e-2, 50)


@pytest.mark.parametrize("strategy", ["sequential", "separate"])
def test_a_frozen_backbone_or_its_own_adapter_keeps_its_probe_matrix(run_config, strategy):
    # head_only: the features never change, so each task's probe scores the same after
    # every later task (probe BWT exactly 0). separate: each task is probed through its own
    # adapter, restored bit for bit, so the same holds for a trained adapter.
    method = "head_only" if strategy == "sequential" else "lora"
    results = run(run_config("probe=linear", f"method={method}", f"strategy={strategy}"))
    probe = results["probe"]
    matrix = probe["accuracy_matrix"]
    for i in range(3):
        assert all(matrix[i][j] is None for j in range(i + 1, 3))  # not seen yet
        assert all(matrix[i][j] == matrix[j][j] for j in range(i + 1))
    assert probe["bwt"] == 0.0


def test_probing_is_off_by_default_and_checked(run_config) -> None:
    assert "probe" not in run_config()
    with pytest.raises(ConfigError, match=r"probe\.max_iter"):
        validate_config(run_config("probe=linear", "probe.max_iter=0"), check_model=False)
    with pytest.raises(ConfigError, match=r"probe\.l2"):
        validate_config(run_config("probe=linear", "probe.l2=-1"), check_model=False)


def test_results_schema_checks_the_probe_node(run_config) -> None:
    from curlora.reporting.results import validate_results

    results = run(run_config("probe=linear", "method=head_only"))
    assert validate_results(results) == []
    broken = {**results, "probe": {"accuracy_matrix": [[0.5]], "bwt": 0.0}}
    assert any("probe.accuracy_matrix" in p for p in validate_results(broken))
