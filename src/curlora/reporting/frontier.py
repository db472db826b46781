"""The stability–plasticity frontier of a grid: each method over its learning rates,
plasticity (gain over a control right after each task: ``head_only`` paired by seed under
per-task heads, the run's own zero-shot accuracy when the model answers in words) against
stability (perplexity ratio; BWT); the table, the figure and the comparison at equal
plasticity."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curlora.reporting.grid import CONTROLS, GridRun, by_seed, default_sampling
from curlora.reporting.stats import LogSummary, interval_text, summarize, summarize_log
from curlora.reporting.tables import markdown

# A run's control accuracy per task (the diagonal it is compared with), or None without one.
Reference = Callable[[GridRun], Sequence[float | None] | None]


def head_only_reference(runs: Sequence[GridRun]) -> Reference | None:
    """The ``head_only`` run of the same seed as the control (per-task heads: what the
    heads alone learn over a frozen model); None when the grid has no ``head_only`` run."""
    head = by_seed(r for r in runs if r.method == "head_only")
    if not head:
        return None

    def reference(run: GridRun) -> list[float | None] | None:
        probe = head.get(run.seed)
        return None if probe is None else probe.diagonal()

    return reference


def zero_shot_reference(run: GridRun) -> list[float | None]:
    """The run's own evaluation before training as the control (the words protocol: the
    same frozen model answers in words before any task is trained)."""
    return list(run.results["initial_accuracy"])


def frontier_points(
    runs: Sequence[GridRun],
    learned: Sequence[int] | None = None,
    rank: int | None = None,
    reference: Reference | None = None,
) -> list[dict[str, Any]]:
    """Per adapter method and learning rate (at ``rank``, default: the smallest; default
    sampling): plasticity and stability summaries over seeds, plasticity paired with the
    ``reference`` (default: ``head_only`` by seed; no points without one); BWT over all
    tasks and over the ``learned`` task set."""
    reference = reference or head_only_reference(runs)
    if reference is None:
        return []
    points = []
    ranks = [rank] if rank is not None else sorted({r.rank for r in runs if r.rank is not None})
    for method in sorted({r.method for r in runs if r.method not in CONTROLS}):
        for lr in sorted({r.lr for r in runs if r.method == method}):
            chosen = [
                r
                for r in runs
                if r.method == method and r.lr == lr and r.rank == ranks[0] and default_sampling(r)
            ]
            if not chosen:
                continue

            def plasticity(run: GridRun) -> float | None:
                control = reference(run)
                if control is None:
                    return None
                gains = [
                    a - b
                    for a, b in zip(run.diagonal(), control, strict=True)
                    if a is not None and b is not None
                ]
                return sum(gains) / len(gains) if gains else None

            points.append(
                {
                    "method": method,
                    "lr": lr,
                    "plasticity": summarize(plasticity(r) for r in chosen),
                    # Geometric mean and log-scale interval, as everywhere in the report.
                    "ppl_ratio": summarize_log(r.ppl_ratio() for r in chosen),
                    "bwt": summarize(r.results["metrics"]["bwt"] for r in chosen),
                    "bwt_learned": summarize(
                        r.learned_bwt(learned) for r in chosen if learned is not None
                    ),
                    "seeds": sorted(r.seed for r in chosen),
                }
            )
    return points


def pareto(curve: Sequence[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The (plasticity, perplexity ratio, BWT) points no other point of the same method
    beats on both plasticity (higher) and perplexity ratio (lower), by plasticity.

    A learning rate that is both less plastic and less stable than another is never the
    method's best at any plasticity, so it is not part of its frontier."""
    kept = [
        p
        for p in curve
        if not any(q[0] >= p[0] and q[1] <= p[1] and (q[0], q[1]) != (p[0], p[1]) for q in curve)
    ]
    return sorted(kept)


def bwt_shown(points: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The BWT the frontier shows, as (point key, name): over the learned tasks where every
    point has a learned-task BWT, else over all tasks."""
    if all(p.get("bwt_learned") is not None and p["bwt_learned"].n for p in points):
        return "bwt_learned", "learned tasks"
    return "bwt", "all tasks"


def frontier_table(points: Sequence[dict[str, Any]], covered: str) -> str:
    """The frontier's points as a markdown table; ``covered`` names the learned tasks. A
    perplexity ratio's interval is written by :func:`interval_text` (none below
    :data:`~curlora.reporting.stats.MIN_SEEDS` seeds)."""
    return markdown(
        [
            "method",
            "lr",
            "seeds",
            "plasticity",
            "BWT (all tasks)",
            f"BWT (learned tasks: {covered})",
            "perplexity ratio (geometric mean, 95 % CI)",
        ],
        [
            [
                p["method"],
                f"{p['lr']:g}",
                ",".join(str(s) for s in p["seeds"]),
                str(p["plasticity"]),
                str(p["bwt"]),
                str(p["bwt_learned"]),
                f"{p['ppl_ratio']} {interval_text(p['ppl_ratio'])}",
            ]
            for p in points
        ],
    )


# The sentence before the equal-plasticity lines, in every report that gives them.
EQUAL_PLASTICITY = (
    "At equal plasticity (interpolated along each method's frontier; perplexity ratios are "
    "geometric means over seeds, as in the table)"
)


def short_of_seeds(points: Sequence[dict[str, Any]], min_seeds: int) -> list[str]:
    """The methods with a rate of fewer than ``min_seeds`` seeds, sorted."""
    return sorted({p["method"] for p in points if p["plasticity"].n < min_seeds})


def equal_plasticity(
    points: Sequence[dict[str, Any]], control: str = "head_only", min_seeds: int = 1
) -> list[str]:
    """Where two methods' frontiers overlap in plasticity: their stability at the middle of
    the overlap (the overlap named: a narrow one rests on few points), interpolated
    linearly along each method's frontier (:func:`pareto`).
    Stability is the geometric mean perplexity ratio over seeds (as in the table) and BWT
    on the learned tasks where every point has a learned-task BWT (as in the figure), else
    over all. Methods :func:`short_of_seeds` are left out: a frontier through one seed's
    points is that seed's noise."""
    bwt_key, bwt_name = bwt_shown(points)
    short = set(short_of_seeds(points, min_seeds))
    curves: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for p in points:
        if p["method"] in short:
            continue
        if p["plasticity"].n and math.isfinite(p["plasticity"].mean):
            ratio = p["ppl_ratio"].geometric_mean
            curves[p["method"]].append((p["plasticity"].mean, ratio, p[bwt_key].mean))
    lines = []
    methods = sorted(curves)
    for a_index, a in enumerate(methods):
        for b in methods[a_index + 1 :]:
            ca, cb = pareto(curves[a]), pareto(curves[b])
            low, high = max(ca[0][0], cb[0][0]), min(ca[-1][0], cb[-1][0])
            if low > high:
                lines.append(f"- {a} and {b}: their plasticity ranges do not overlap.")
                continue
            x = (low + high) / 2
            va, vb = _interpolate(ca, x), _interpolate(cb, x)
            lines.append(
                f"- at plasticity {x:+.3f} (over {control}; the middle of the overlap "
                f"[{low:+.3f}, {high:+.3f}]): {a} perplexity ratio {va[0]:.3f}, "
                f"BWT ({bwt_name}) {va[1]:+.3f}; {b} perplexity ratio {vb[0]:.3f}, "
                f"BWT ({bwt_name}) {vb[1]:+.3f}"
            )
    return lines


def _interpolate(curve: Sequence[tuple[float, float, float]], x: float) -> tuple[float, float]:
    if len(curve) == 1:
        return curve[0][1], curve[0][2]
    for (x0, p0, b0), (x1, p1, b1) in itertools.pairwise(curve):
        if x0 <= x <= x1:
            w = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return p0 + w * (p1 - p0), b0 + w * (b1 - b0)
    return curve[-1][1], curve[-1][2]


def plot_frontier(
    points: Sequence[dict[str, Any]], path: Path, control: str = "head_only"
) -> Path | None:
    if not points:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"].colors
    bwt_key, bwt_name = bwt_shown(points)  # one BWT for every method on the axis
    for k, method in enumerate(sorted({p["method"] for p in points})):
        mine = sorted((p for p in points if p["method"] == method), key=lambda p: p["lr"])
        xs = [p["plasticity"].mean for p in mine]
        xerr = [p["plasticity"].std or 0 for p in mine]
        for ax, key in zip(axes, ("ppl_ratio", bwt_key), strict=True):
            ys, yerr = _centre_and_spread([p[key] for p in mine])
            ax.errorbar(
                xs,
                ys,
                xerr=xerr,
                yerr=yerr,
                marker="o",
                color=colors[k % 10],
                label=method,
                capsize=3,
            )
            for p, x, y in zip(mine, xs, ys, strict=True):
                ax.annotate(
                    f"{p['lr']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    axes[0].set_ylabel("perplexity ratio (final / initial), log scale")
    axes[0].set_yscale("log")  # ratios span 1.0 to blow-ups of 10× and more
    axes[1].set_ylabel(f"BWT ({bwt_name})")
    for ax in axes:
        ax.set_xlabel(f"plasticity: mean gain over {control} right after each task")
        ax.legend(fontsize="small")
    axes[0].set_title("Stability (language model) vs plasticity")
    axes[1].set_title("Stability (earlier tasks) vs plasticity")
    from curlora.reporting.plots import save_figure

    return save_figure(fig, path)  # atomic, like every output


def _centre_and_spread(summaries: Sequence[Any]) -> tuple[list[float], Any]:
    """Means and ± std bars; for a ratio (:class:`LogSummary`) the geometric mean and the
    asymmetric bars exp(mean_log ± std_log), so the figure shows what the table shows."""
    if not all(isinstance(s, LogSummary) for s in summaries):
        return [s.mean for s in summaries], [s.std or 0 for s in summaries]
    ys = [s.geometric_mean for s in summaries]
    low = [y - math.exp(s.log.mean - (s.log.std or 0)) for y, s in zip(ys, summaries, strict=True)]
    high = [math.exp(s.log.mean + (s.log.std or 0)) - y for y, s in zip(ys, summaries, strict=True)]
    return ys, [low, high]
