"""The run's two figures: ``forgetting.png`` (accuracy matrix heatmap) and ``curves.png``.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas
directly, never through ``pyplot``: nothing is registered in pyplot's global figure list,
the process-wide backend is not touched, and a figure is freed when it goes out of scope,
so calling these in a long run or a test suite leaks no state. Partial matrices (a stopped
run: fewer rows, or null cells) draw blank cells and gaps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from curlora.run.atomic import atomic_write

Matrix = Sequence[Sequence[float | None]]


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _square(R: Matrix, T: int) -> np.ndarray:
    """[T, T] float array, NaN where not evaluated; missing rows are NaN rows."""
    out = np.full((T, T), np.nan)
    for i, row in enumerate(list(R)[:T]):
        for j, value in enumerate(list(row)[:T]):
            out[i, j] = _nan(value)
    return out


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``fig`` as a PNG at ``path`` through the atomic writer (a failure is one
    OutputError naming the file; a killed write never leaves half an image)."""
    FigureCanvasAgg(fig)  # attaches the Agg canvas; no pyplot, no global backend
    # format: the temporary file's name ends in .tmp, so matplotlib cannot infer it.
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


def plot_forgetting(
    R: Matrix,
    tasks: Sequence[str],
    path: str | os.PathLike[str],
    majority: Sequence[float | None] | None = None,
) -> Path:
    """Annotated heatmap of the accuracy matrix: row i "after training <task i>", column j
    "<task j>" (with its majority baseline when given). Cells at or below the baseline are
    starred, since a head there does no better than predicting one class. Returns the path."""
    T = len(tasks)
    values = _square(R, T)
    fig = Figure(figsize=(2.5 + 1.5 * T, 1.5 + 1.0 * T), layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0)
    starred = False
    for i in range(T):
        for j in range(T):
            if np.isnan(values[i, j]):
                continue
            base = None if majority is None else majority[j]
            star = base is not None and values[i, j] <= base
            starred |= star
            color = "white" if values[i, j] < 0.6 else "black"  # readable on viridis
            ax.text(
                j,
                i,
                f"{values[i, j]:.3f}{'*' if star else ''}",
                ha="center",
                va="center",
                color=color,
            )
    columns = [
        name if majority is None or majority[j] is None else f"{name}\n(majority {majority[j]:.3f})"
        for j, name in enumerate(tasks)
    ]
    ax.set_xticks(range(T), columns)
    ax.set_yticks(range(T), [f"after training {name}" for name in tasks])
    ax.set_xlabel("evaluated task" + ("   (* at or below majority baseline)" if starred else ""))
    ax.set_title("Accuracy after each task")
    fig.colorbar(image, ax=ax, label="accuracy")
    return save_figure(fig, path)


def plot_curves(
    R: Matrix,
    initial: Sequence[float | None],
    tasks: Sequence[str],
    ppl_initial: float | None,
    ppl_after: Sequence[float | None],
    path: str | os.PathLike[str],
    majority: Sequence[float | None] | None = None,
) -> Path:
    """Left: each task's accuracy against tasks trained (x = 0 before training, k after k
    tasks), its majority baseline dashed in the same colour, a larger marker where it was
    trained. Right: perplexity against tasks trained. Returns the path."""
    T = len(tasks)
    values = _square(R, T)
    x = np.arange(T + 1)
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    acc_ax, ppl_ax = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"].colors
    for j, name in enumerate(tasks):
        color = colors[j % len(colors)]
        y = np.concatenate([[_nan(initial[j] if j < len(initial) else None)], values[:, j]])
        acc_ax.plot(x, y, marker="o", color=color, label=name)
        if not np.isnan(y[j + 1]):
            acc_ax.plot([j + 1], [y[j + 1]], marker="*", markersize=14, color=color)
        if majority is not None and majority[j] is not None:
            acc_ax.axhline(majority[j], linestyle="--", linewidth=1, color=color)
    ticks = ["before\ntraining", *(f"after\n{name}" for name in tasks)]
    acc_ax.set_xticks(x, ticks)
    acc_ax.set_ylim(0.0, 1.02)
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_title("Accuracy per task (dashed: majority baseline; star: just trained)")
    acc_ax.legend(loc="lower left", fontsize="small")

    ppl = np.array([_nan(ppl_initial), *(_nan(v) for v in list(ppl_after)[:T])], dtype=float)
    ppl = np.concatenate([ppl, np.full(T + 1 - len(ppl), np.nan)])
    if np.isnan(ppl).all():
        ppl_ax.text(
            0.5, 0.5, "no perplexity measured", ha="center", va="center", transform=ppl_ax.transAxes
        )
    else:
        ppl_ax.plot(x, ppl, marker="o", color="black")
    ppl_ax.set_xticks(x, ticks)
    ppl_ax.set_ylabel("perplexity")
    ppl_ax.set_title("Language-model perplexity")
    return save_figure(fig, path)
