"""Read what W&B would receive: the records of an offline run's ``.wandb`` file.

An offline run keeps everything it would upload (run settings, config, history rows,
summary, metric definitions, artifacts, console output) in ``run-<id>.wandb`` as wandb's
own protobuf ``Record`` messages, framed in LevelDB's log format: a 7-byte file header
(``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte
header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last). wandb ≥ 0.2x writes and
reads the file in its Go core only (the Python ``DataStore`` was removed), so the framing
is read here and every record is decoded with ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a .wandb file"
    index = HEADER
    while index + HEADER <= len(data):
        left = BLOCK - index % BLOCK
        if left < HEADER:  # a block's tail too short for a header is zero padding
            index += left
            continue
        _, length, kind = struct.unpack("<IHB", data[index : index + HEADER])
        if kind == 0:  # zero padding at the end of a block
            index += left
            continue
        yield kind, data[index + HEADER : index + HEADER + length]
        index += HEADER + length


def records(path: Path) -> Iterator[Any]:
    """Every ``Record`` of a ``.wandb`` file, in the order written."""
    pending = b""
    for kind, payload in _chunks(Path(path).read_bytes()):
        if kind in (FULL, FIRST):
            pending = payload
        else:
            pending += payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


@dataclass
class OfflineRun:
    """One offline run directory, parsed: what a ``wandb sync`` of it would upload."""

    directory: Path
    run: Any = None  # RunRecord: id, name, group, job_type, tags, resumed, ...
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # define_metric: name -> MetricRecord
    artifacts: list[Any] = field(default_factory=list)  # ArtifactRecord
    console: str = ""

    @property
    def keys(self) -> set[str]:
        """The history keys (wandb's own ``_step``, ``_runtime``, ``_timestamp`` left out):
        one per chart a workspace draws, a table or an image being one key."""
        return {k for row in self.history for k in row if not k.startswith("_")}

    @property
    def charts(self) -> dict[str, Any]:
        """Custom charts (``wandb.plot.*``): key -> its panel (``panel_config["panelDefId"]``
        names the Vega spec), from the config's ``_wandb/visualize/<key>`` entries."""
        prefix = "_wandb/visualize/"
        return {k[len(prefix) :]: v for k, v in self.config.items() if k.startswith(prefix)}

    def column(self, key: str) -> list[tuple[int, Any]]:
        """``(_step, value)`` of every history row that has ``key``."""
        return [(row["_step"], row[key]) for row in self.history if key in row]


class FakeRun:
    """A stand-in for what ``wandb.init`` returns, for tests that give the W&B logger one:
    records ``log`` calls as (step, row), so the rows it would send are kept without wandb."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, Any]]] = []

    def log(self, row: dict[str, Any], step: int) -> None:
        self.rows.append((step, dict(row)))

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        pass


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _row(items: Any) -> dict[str, Any]:
    """A history row: ``{key: value}``; a media value (a table, an image: written as nested
    keys ``<key>/_type``, ``<key>/path``, ...) becomes one dict under its key."""
    row: dict[str, Any] = {}
    for item in items:
        value = json.loads(item.value_json)
        if item.key:
            row[item.key] = value
        else:
            *head, last = item.nested_key
            node = row
            for part in head:
                node = node.setdefault(part, {})
            node[last] = value
    return row


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts without ``_type`` joined back into slash-separated keys."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and "_type" not in value:
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _finished(path: Path, timeout_s: float) -> None:
    """Wait until wandb's service has written the run's ``exit`` record and the file stopped
    growing: ``wandb.finish`` can return while the service still flushes it."""
    deadline = time.monotonic() + timeout_s
    size = -1
    while time.monotonic() < deadline:
        now = path.stat().st_size
        if now == size and any(r.WhichOneof("record_type") == "exit" for r in records(path)):
            return
        size = now
        time.sleep(0.5)
    raise AssertionError(f"{path} has no exit record after {timeout_s} s")


def read_run(directory: Path, timeout_s: float = 30.0) -> OfflineRun:
    """Parse ``<directory>/run-*.wandb`` (one offline run directory, once finished)."""
    directory = Path(directory)
    (path,) = directory.glob("run-*.wandb")
    _finished(path, timeout_s)
    out = OfflineRun(directory)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.run = record.run
            for item in record.run.config.update:
                out.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            out.history.append(_flatten(_row(record.history.item)))
        elif kind == "summary":
            for item in record.summary.update:
                out.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            out.metrics[record.metric.name or record.metric.glob_name] = record.metric
        elif kind == "artifact":
            out.artifacts.append(record.artifact)
        elif kind == "output_raw":
            out.console += record.output_raw.line
        elif kind == "output":
            out.console += record.output.line
    return out


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run below ``root`` (a run or a sweep directory), oldest first."""
    return [read_run(d) for d in sorted(Path(root).rglob("offline-run-*")) if d.is_dir()]
