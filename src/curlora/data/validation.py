"""Checks on loaded splits, run before anything trains: bad data fails early and by name."""

from __future__ import annotations

from typing import Any

from curlora.data.tasks import TaskSpec


class DataError(ValueError):
    """A task's data is unusable; the message names the task, split and field."""


def check_split(spec: TaskSpec, split: str, data: Any) -> None:
    """Raise ``DataError`` for an empty split or a missing text/label column."""
    where = f"task '{spec.name}', split '{split}'"
    if len(data) == 0:
        raise DataError(f"{where}: the split is empty")
    columns = list(data.column_names)
    for key in ("text_field", "text_pair_field", "label_field"):
        column = getattr(spec, key)
        if column is not None and column not in columns:
            raise DataError(f"{where}: {key}='{column}' is not a column; columns are {columns}")


def map_labels(
    spec: TaskSpec, split: str, data: Any
) -> tuple[list[str], list[str] | None, list[int], int]:
    """Texts, pair texts, class ids and the number of rows dropped by ``label_map``.

    Rows whose raw label is not a key of ``label_map`` are dropped (and counted, so results
    can report it: Sentiment140's neutral tweets are never folded into a class silently).
    """
    where = f"task '{spec.name}', split '{split}'"
    raw_texts = data[spec.text_field]
    raw_pairs = data[spec.text_pair_field] if spec.text_pair_field else None
    raw_labels = data[spec.label_field]
    texts: list[str] = []
    pairs: list[str] | None = [] if raw_pairs is not None else None
    labels: list[int] = []
    dropped = 0
    label_map = spec.label_map
    for row, raw in enumerate(raw_labels):
        if label_map is not None:
            key = raw if raw in label_map else str(raw)
            if key not in label_map:
                dropped += 1
                continue
            label = label_map[key]
        else:
            label = raw
        if isinstance(label, float) and label.is_integer():
            label = int(label)  # CSV and JSON files often write class ids as 0.0 / 1.0
        if not isinstance(label, int) or isinstance(label, bool):
            raise DataError(
                f"{where}, field '{spec.label_field}': row {row} has label {raw!r}, which is "
                f"not a class id (an integer 0..{spec.num_classes - 1}); map raw labels to "
                "class ids with the task's label_map"
            )
        if not 0 <= label < spec.num_classes:
            raise DataError(
                f"{where}, field '{spec.label_field}': row {row} has label {raw!r}, outside "
                f"0..{spec.num_classes - 1} (num_classes={spec.num_classes})"
            )
        for field_name, values, out in (
            (spec.text_field, raw_texts, texts),
            (spec.text_pair_field, raw_pairs, pairs),
        ):
            if values is None or out is None:
                continue
            text = values[row]
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}, field '{field_name}': row {row} is empty or not text")
            out.append(text)
        labels.append(label)
    if not labels:
        raise DataError(f"{where}: no rows left after label_map {dict(label_map or {})}")
    return texts, pairs, labels, dropped
