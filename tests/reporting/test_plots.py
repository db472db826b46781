"""forgetting.png and curves.png: written, valid PNGs, robust to partial matrices, and no
global pyplot state left behind."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import pytest

from curlora.reporting.plots import plot_curves, plot_forgetting

TASKS = ["mrpc", "sst2", "sentiment140"]
FULL = [[0.80, 0.95, 0.40], [0.85, 0.90, 0.45], [0.60, 0.85, 0.75]]
PARTIAL = [[0.80, None, None], [0.70, 0.90, None]]  # stopped before task 3; cells not evaluated
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # PNG spec, section 5.2


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, channels = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100 and channels in (3, 4)


@pytest.mark.parametrize("matrix", [FULL, PARTIAL, []], ids=["full", "partial", "empty"])
@pytest.mark.parametrize("majority", [None, [0.684, 0.509, None]], ids=["no-majority", "majority"])
def test_plots_are_written(tmp_path: Path, matrix, majority) -> None:
    figures_before = plt.get_fignums()
    backend_before = matplotlib.get_backend()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a missing glyph or an all-NaN reduction
        forgetting = plot_forgetting(
            matrix, TASKS, tmp_path / "sub" / "forgetting.png", majority=majority
        )
        curves = plot_curves(
            matrix,
            [0.5, None, 0.35],
            TASKS,
            10.0,
            [11.0, 12.5][: len(matrix)],
            tmp_path / "curves.png",
            majority=majority,
        )
    assert_png(forgetting)
    assert_png(curves)
    assert plt.get_fignums() == figures_before  # nothing registered with pyplot
    assert matplotlib.get_backend() == backend_before


def test_curves_without_perplexity(tmp_path: Path) -> None:
    path = plot_curves([[0.9]], [0.5], ["only"], None, [None], tmp_path / "curves.png")
    assert_png(path)
