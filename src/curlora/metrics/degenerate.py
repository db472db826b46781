"""Guard against degenerate results: heads that predict one class or do no better than it.

A classifier that always predicts one class scores exactly that class's share of the eval
split, so a number near 0.5 on a balanced task, or below the majority-class accuracy, can
look like a result while meaning nothing. The paper's own LoRA numbers are exactly these
signatures: 0.49–0.51 on SST-2 (validation: 428 negative, 444 positive of 872, so a
constant predictor scores 428/872 = 0.491 or 444/872 = 0.509) and 0.32 on MRPC (validation:
129 of 408 "not equivalent", so always predicting that class scores 129/408 = 0.316, below
the 279/408 = 0.684 majority baseline).

For every evaluation in the accuracy matrix the caller records the share of the
most-predicted class; :func:`degenerate_warnings` flags an evaluation when that share is at
least ``top_class_threshold`` (0.95 by default) or when its accuracy is at or below the
split's majority baseline. Pure functions: the caller logs and stores the warnings
(``results.json`` → ``warnings``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

SINGLE_CLASS = "single_class"
AT_OR_BELOW_MAJORITY = "at_or_below_majority"
NON_FINITE_PERPLEXITY = "non_finite_perplexity"
INERT_ADAPTER = "inert_adapter"


class WarningJSON(TypedDict):
    """A warning in ``results.json``: fields a reason does not use are null; ``detail`` says
    in words what happened."""

    task: str | None
    evaluated_after: int | str
    reason: str
    accuracy: float | None
    majority_baseline: float | None
    top_class_share: float | None
    detail: str | None


WARNING_KEYS: tuple[str, ...] = tuple(WarningJSON.__annotations__)
_EPS = 1e-9  # accuracy equal to the baseline (both count ratios) must count as "at"


@dataclass(frozen=True)
class PredictionStats:
    """Summary of one evaluation split's labels and a head's predictions on it.

    ``label_counts`` / ``prediction_counts``: class id -> count. ``majority_baseline``: the
    accuracy of always predicting the most frequent label. ``top_class_share``: the share of
    predictions that go to the most predicted class (1.0 for a constant predictor).
    """

    size: int
    accuracy: float
    majority_baseline: float
    top_class_share: float
    label_counts: dict[int, int]
    prediction_counts: dict[int, int]


def _as_list(values: Any) -> list[int]:
    """Class ids from a tensor (flattened), array or sequence, without importing torch."""
    if hasattr(values, "reshape") and hasattr(values, "tolist"):
        values = values.reshape(-1).tolist()
    return [int(v) for v in values]


def majority_baseline(labels: Any) -> float:
    """Accuracy of always predicting the most frequent label: max_c count(c) / n."""
    counts = Counter(_as_list(labels))
    if not counts:
        raise ValueError("majority baseline of an empty split is undefined")
    return max(counts.values()) / sum(counts.values())


def top_class_share(predictions: Any) -> float:
    """Share of predictions that fall in the most predicted class: max_c count(c) / n."""
    return majority_baseline(predictions)  # the same statistic, over predictions


def prediction_stats(labels: Any, predictions: Any) -> PredictionStats:
    """Accuracy, majority baseline and top-class share of ``predictions`` [n] vs ``labels`` [n].

    Accepts tensors, arrays or sequences of class ids (predictions, not logits).
    """
    y, p = _as_list(labels), _as_list(predictions)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    if not y:
        raise ValueError("prediction stats of an empty split are undefined")
    label_counts, prediction_counts = Counter(y), Counter(p)
    return PredictionStats(
        size=len(y),
        accuracy=sum(a == b for a, b in zip(y, p, strict=True)) / len(y),
        majority_baseline=max(label_counts.values()) / len(y),
        top_class_share=max(prediction_counts.values()) / len(p),
        label_counts=dict(sorted(label_counts.items())),
        prediction_counts=dict(sorted(prediction_counts.items())),
    )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value else None  # NaN -> None


def _head_trained(task: str, evaluated_after: int | str, tasks: Sequence[str]) -> bool:
    """Whether ``task``'s head had been trained at evaluation point ``evaluated_after``
    (a row index, the name of the task just trained, or "initial")."""
    if evaluated_after == "initial":
        return False
    position = evaluated_after if isinstance(evaluated_after, int) else tasks.index(evaluated_after)
    return tasks.index(task) <= position


def degenerate_warnings(
    evaluations: Iterable[Mapping[str, Any]],
    top_class_threshold: float = 0.95,
    tasks: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Warnings for degenerate evaluations, one dict per (evaluation, reason).

    Args:
        evaluations: records with ``task``, ``evaluated_after`` (row index of the accuracy
            matrix, the name of the task just trained, or ``"initial"``), ``accuracy``,
            ``majority_baseline`` and ``top_class_share``. A record whose accuracy is None
            was not evaluated and is skipped; a None baseline or share skips that check.
        top_class_threshold: flag when the most predicted class takes at least this share.
        tasks: the task order. When given, evaluations of heads not trained yet ("initial"
            and tasks after ``evaluated_after``) are skipped: an untrained head is degenerate
            by construction and says nothing about the method. When None, every record is
            checked (the caller filtered).

    Returns:
        dicts with exactly :data:`WARNING_KEYS`; ``reason`` is ``"single_class"`` (share >=
        threshold) or ``"at_or_below_majority"`` (accuracy <= majority baseline). An
        evaluation that is both yields two warnings.
    """
    warnings: list[dict[str, Any]] = []
    for record in evaluations:
        task, point = record["task"], record["evaluated_after"]
        accuracy = _number(record.get("accuracy"))
        if accuracy is None or (tasks is not None and not _head_trained(task, point, tasks)):
            continue
        baseline = _number(record.get("majority_baseline"))
        share = _number(record.get("top_class_share"))
        reasons = []
        if share is not None and share >= top_class_threshold:
            reasons.append(SINGLE_CLASS)
        if baseline is not None and accuracy <= baseline + _EPS:
            reasons.append(AT_OR_BELOW_MAJORITY)
        for reason in reasons:
            record = make_warning(
                reason,
                evaluated_after=point,
                task=task,
                accuracy=accuracy,
                majority_baseline=baseline,
                top_class_share=share,
            )
            warnings.append(record)
    return warnings


def make_warning(
    reason: str,
    evaluated_after: int | str,
    task: str | None = None,
    accuracy: float | None = None,
    majority_baseline: float | None = None,
    top_class_share: float | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """One warning record with exactly :data:`WARNING_KEYS` (``detail`` from
    :func:`describe` when not given)."""
    record: dict[str, Any] = {
        "task": task,
        "evaluated_after": evaluated_after,
        "reason": reason,
        "accuracy": accuracy,
        "majority_baseline": majority_baseline,
        "top_class_share": top_class_share,
        "detail": detail,
    }
    if detail is None:
        record["detail"] = describe(record)
    return record


def describe(warning: Mapping[str, Any]) -> str:
    """One log line for a warning, e.g. for ``logging.warning``."""
    if warning.get("detail"):
        return str(warning["detail"])
    what = {
        SINGLE_CLASS: "predicts one class for most of the split",
        AT_OR_BELOW_MAJORITY: "scores at or below the majority baseline",
    }.get(warning["reason"], warning["reason"])
    return (
        f"degenerate result: task {warning['task']} after {warning['evaluated_after']} {what} "
        f"(accuracy {warning['accuracy']}, majority baseline {warning['majority_baseline']}, "
        f"top-class share {warning['top_class_share']})"
    )


def perplexity_warnings(
    initial: float | None, after_task: Sequence[float | None], tasks: Sequence[str]
) -> list[dict[str, Any]]:
    """One warning per perplexity that was measured and came out non-finite (inf or NaN):
    the language model broke at that point. Unmeasured (None) entries are not warned about."""
    points: list[tuple[int | str, str, float | None]] = [("initial", "before training", initial)]
    points += [
        (task, f"after training {task}", v) for task, v in zip(tasks, after_task, strict=False)
    ]
    out = []
    for point, when, value in points:
        if value is not None and not math.isfinite(value):
            out.append(
                make_warning(
                    NON_FINITE_PERPLEXITY,
                    evaluated_after=point,
                    detail=f"language-model perplexity is {value} {when}: the model's "
                    "predictions broke down (overflowing or NaN logits)",
                )
            )
    return out
