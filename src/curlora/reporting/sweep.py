"""Sweep report: every ``results.json`` below a directory as one table.

    python -m curlora.reporting.sweep logs/multiruns/2026-01-01_12-00-00 [--out DIR] [--pool tasks]

One row per run: its directory, method, strategy (when the config names one), rank, the
trainable-parameter count (methods are compared at matched counts: settings are grouped by
it), seed, status, the number of degenerate-result warnings, each metric of
``results["metrics"]``, the linear probes' BWT when the run probed (``probe=linear``), and
for every task its final accuracy next to its majority baseline (a score is only
meaningful against the share of its largest class). Writes ``sweep_summary.csv`` (full
precision) and ``sweep_summary.md`` (rounded; with a mean ± std table over seeds when a
setting ran more than once) and prints the markdown. Files that do not follow the schema
are skipped and listed, so one crashed job does not hide the others.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curlora.metrics.continual import METRIC_KEYS
from curlora.reporting.named_entries import entries_named
from curlora.reporting.results import ResultsError, final_accuracies, load_results
from curlora.reporting.untrusted import shown
from curlora.run.atomic import OutputError, atomic_write_text

log = logging.getLogger(__name__)
SETTING_COLUMNS = ("method", "strategy", "rank", "trainable_params")
EXIT_OUTPUT = 5  # as for a run: an output could not be written


@dataclass
class SweepSummary:
    """The table (``columns`` and ``rows`` of column -> value), its markdown, what was
    written, and the files skipped with the reason."""

    columns: list[str]
    rows: list[dict[str, Any]]
    markdown: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    csv_path: Path | None = None
    markdown_path: Path | None = None


def strategy_name(config: Mapping[str, Any]) -> str | None:
    """The strategy a resolved config names: ``strategy.name``, else the module of its
    ``_target_`` (``curlora.strategies.ewc.EWC`` -> ``ewc``), else a plain string; None if
    the config has no strategy."""
    strategy = config.get("strategy")
    if strategy is None or isinstance(strategy, str):
        return strategy
    if isinstance(strategy, Mapping):
        if strategy.get("name"):
            return str(strategy["name"])
        target = str(strategy.get("_target_", ""))
        parts = target.split(".")
        return parts[-2] if len(parts) >= 2 else (target or None)
    return str(strategy)


def run_row(results: Mapping[str, Any], run: str) -> dict[str, Any]:
    """One table row from one validated results dict."""
    row: dict[str, Any] = {
        "run": run,
        "method": results["method"],
        "strategy": strategy_name(results["config"]),
        "rank": results["rank"],
        "trainable_params": results["trainable_params"],
        "seed": results["seed"],
        "status": results["status"],
        "warnings": len(results["warnings"]),
    }
    row.update({key: results["metrics"][key] for key in METRIC_KEYS})
    probe = results.get("probe")
    row["probe_bwt"] = None if probe is None else probe["bwt"]
    finals = final_accuracies(results)
    for task, final, majority in zip(
        results["tasks"], finals, results["majority_baseline"], strict=True
    ):
        row[f"{task}/acc"] = final
        row[f"{task}/majority"] = majority
    return row


# Config keys that differ between runs without making them different settings.
_NOT_SETTINGS = ("paths.", "logger.", "hydra.", "callbacks.fault")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node if not isinstance(node, list) else tuple(node)}


def varying_config_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys (dotted) whose value differs between runs, other than seeds and paths.

    These are what a sweep varied beyond method/strategy/rank (e.g. ``strategy.ewc_lambda``),
    so runs that differ in them are different settings, never pooled as repeats.
    """
    flat = [_flatten(config) for config in configs]
    keys = sorted({k for f in flat for k in f})
    varying = []
    for key in keys:
        if (
            key in {"seed", "resume", "rank"}
            or key.endswith(".seed")
            or key.startswith(_NOT_SETTINGS)
        ):
            continue
        if key in {
            "method.name",
            "method._target_",
            "strategy._target_",
            "strategy.name",
            "method.rank",
        }:
            continue
        if len({repr(f.get(key)) for f in flat}) > 1:
            varying.append(key)
    return varying


def _sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    def missing_last(value: Any) -> tuple[bool, Any]:
        return (value is None, value if value is not None else 0)

    return tuple(missing_last(row.get(key)) for key in (*SETTING_COLUMNS, "seed", "run"))


def build_table(
    found: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and sorted rows for ``(run name, results)`` pairs. Task columns follow the
    order in which tasks first appear; the strategy column only when some run has one."""
    varying = varying_config_keys([results["config"] for _, results in found])
    rows = []
    for run, results in found:
        row = run_row(results, run)
        flat = _flatten(results["config"])
        row.update({key: flat.get(key) for key in varying})
        rows.append(row)
    rows.sort(key=lambda row: (_sort_key(row), tuple(repr(row[k]) for k in varying)))
    tasks = list(dict.fromkeys(task for _, results in found for task in results["tasks"]))
    has_strategy = any(row["strategy"] is not None for row in rows)
    columns = ["run", "method", *(["strategy"] if has_strategy else []), "rank"]
    columns += ["trainable_params", *varying, "seed", "status", "warnings", *METRIC_KEYS]
    columns += ["probe_bwt"] if any(row["probe_bwt"] is not None for row in rows) else []
    columns += [f"{task}/{kind}" for task in tasks for kind in ("acc", "majority")]
    return columns, rows


def _cell(value: Any) -> str:
    """A markdown cell; text (a status, a config value or key, a directory: all from files
    someone else may have made) in one line that cannot drive a terminal."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return shown(str(value).replace("|", "\\|").replace("\n", " "))


def to_markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured markdown table; floats to 4 decimals, missing values blank."""
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def aggregate(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], pool: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, Any]]]:
    """Mean ± sample std over the runs of each setting (method, strategy, rank), as strings.

    Numeric columns only; None values are left out of a cell's statistics. ``pool``: varied
    config keys to average over as well as seeds (e.g. ``tasks``: over task orders; the
    per-task columns are named by task, so they pool across orders)."""
    # A setting is method/strategy/rank plus every config key the sweep varied (the columns
    # between "rank" and "seed") that is not pooled; seeds are always pooled.
    settings = [c for c in SETTING_COLUMNS if c in columns]
    start = max((columns.index(c) for c in settings), default=len(columns) - 1) + 1
    varied = list(columns[start : columns.index("seed")]) if "seed" in columns else []
    varied = [key for key in varied if key not in pool]
    keys = settings + varied
    numeric = [c for c in columns if c in ("warnings", "probe_bwt") or c in METRIC_KEYS or "/" in c]
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for setting, members in groups.items():
        agg: dict[str, Any] = dict(zip(keys, setting, strict=True))
        agg["runs"] = len(members)
        for column in numeric:
            values = [float(m[column]) for m in members if m.get(column) is not None]
            if len(values) > 1:
                agg[column] = f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
            elif values:
                agg[column] = f"{values[0]:.4f}"
        out.append(agg)
    return [*keys, "runs", *numeric], out


def _csv_value(value: Any) -> Any:
    """A CSV field: missing -> empty, numbers as they are (full precision), text escaped
    (a file's string is data: ``cat`` of the CSV must not run its escape sequences)."""
    if value is None:
        return ""
    return value if isinstance(value, (int, float)) else shown(value)


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """CSV with a header row; missing values empty, floats at full precision. Written
    atomically, like every output (a failure is one OutputError naming the file)."""
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow([shown(c) for c in columns])
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in columns])
    return atomic_write_text(path, handle.getvalue())


def summarize_sweep(
    root: str | Path,
    out_dir: str | Path | None = None,
    write: bool = True,
    pool: Sequence[str] = (),
) -> SweepSummary:
    """Collect every results.json below ``root``; write the CSV and markdown into ``out_dir``
    (default ``root``) unless ``write`` is False. ``pool``: see :func:`aggregate`."""
    root = Path(root)
    found: list[tuple[str, dict[str, Any]]] = []
    skipped: list[tuple[Path, str]] = []
    # every entry so named, a dangling link too: load_results names what it will not open
    for path in entries_named(root, "results.json"):
        try:
            found.append((str(path.parent.relative_to(root)), load_results(path)))
        except (ResultsError, OSError) as error:
            # the message's own lines kept (its path is shown() already), each made safe
            lines = "\n".join(shown(line) for line in str(error).splitlines())
            log.warning("skipping %s: %s", shown(path), lines)
            skipped.append((path, str(error).splitlines()[0]))
    columns, rows = build_table(found)
    parts = [f"## Sweep: {len(rows)} runs under {shown(root)}", "", to_markdown(columns, rows)]
    group_columns, groups = aggregate(columns, rows, pool)
    if any(group["runs"] > 1 for group in groups):
        pooled = "".join(f", pooling {key}" for key in pool)
        parts += [
            "",
            f"## Mean ± std over runs of each setting (seeds{pooled})",
            "",
            to_markdown(group_columns, groups),
        ]
    if skipped:
        parts += [
            "",
            "Skipped (not valid results.json):",
            *(f"- {shown(p)}: {shown(why)}" for p, why in skipped),
        ]
    summary = SweepSummary(columns, rows, "\n".join(parts) + "\n", skipped)
    if write:
        out = Path(out_dir) if out_dir is not None else root
        summary.csv_path = write_csv(out / "sweep_summary.csv", columns, rows)
        summary.markdown_path = atomic_write_text(out / "sweep_summary.md", summary.markdown)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m curlora.reporting.sweep",
        description="Tabulate every results.json below a (multirun) directory.",
    )
    parser.add_argument("root", type=Path, help="directory searched recursively for results.json")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: root)")
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="KEY",
        help="a varied config key to average over besides seeds, e.g. --pool tasks (orders)",
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {shown(args.root)} is not a directory", file=sys.stderr)
        return 2
    try:
        summary = summarize_sweep(args.root, args.out, pool=args.pool)
    except OutputError as error:
        print(f"error: {shown(error)}", file=sys.stderr)
        return EXIT_OUTPUT
    print(summary.markdown, end="")
    if not summary.rows:
        print(f"error: no valid results.json below {shown(args.root)}", file=sys.stderr)
        return 1
    print(f"\nwrote {summary.csv_path} and {summary.markdown_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
