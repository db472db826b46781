"""``results.json``: the one file a run leaves for analysis, its schema, writer and reader.

Schema (top-level keys, in this order):

- ``method`` (str), ``rank`` (int, or null for methods without one), ``seed`` (int),
  ``tasks`` (list of T task names, the training order); names are printable
  (``curlora.reporting.untrusted.is_safe_name``: a report prints them);
- ``accuracy_matrix``: T rows × T entries, row i = after training task i, entry j = task j's
  accuracy; null where not evaluated (including every row of a task never reached);
- ``initial_accuracy``: T entries, untrained heads before any training (the FWT baseline);
- ``perplexity``: ``{"initial": float|null, "after_task": [T × float|null], "tokens": int}``
  (``tokens`` = predicted tokens per measurement; 0 and nulls when no corpus was measured);
- ``metrics``: exactly ``curlora.metrics.continual.METRIC_KEYS`` (float or null);
- ``majority_baseline``: T entries, majority-class accuracy of each task's eval split;
- ``trainable_params`` (int), ``status`` (``"completed"`` or what stopped the run),
  ``config`` (the resolved config);
- ``warnings``: what makes a number suspect, dicts with
  ``curlora.metrics.degenerate.WARNING_KEYS`` (empty list when none): degenerate heads,
  a perplexity that went non-finite, an adapter that did not move;
- ``label_balance``: task -> split -> size, label counts, dropped and truncated rows
  (free-form below the task level; empty dict when not recorded);
- ``validation``: the heads on the validation carves (null when not scored);
- ``probe``: ``{"accuracy_matrix": T × T, "bwt": float|null}``, fresh linear probes on the
  frozen features after each task (``curlora.metrics.probe``; null when probing is off);
- ``head``: null under ``head=linear``; under ``head=words`` ``{"name", "prompts": {task:
  {"template", "label_words"}}, "exact_match_matrix": T × T, "initial_exact_match": T,
  "exact_match_bwt"}``: ``accuracy_matrix`` then holds rank classification over each task's
  words (acc), and these the whole-vocabulary exact match (em); ``initial_*`` is the
  zero-shot row.
- ``retention``: ``{"tasks": [K names], "n": [K subset sizes], "acc": (T+1) × K,
  "acc_norm": (T+1) × K}``, lm-eval's zero-shot accuracy on the general-ability suite at
  each evaluation point, the one before training first (a row is null where the point was
  not evaluated; ``curlora.retention``); null when the suite is off.

``warnings`` and ``label_balance`` are always present, so readers never branch on their
absence. The schema is closed: :func:`validate_results` rejects any other key, so a typo
cannot silently add one.

Per-task lists are aligned with ``tasks`` (index j ↔ ``tasks[j]``), like the matrix columns.

Missing versus non-finite. ``null`` means "never measured" (a task the run did not reach).
A measurement that came out non-finite is a result, not a gap (a language model whose
perplexity overflowed is exactly the failure the CURLoRA paper reports for LoRA), so it is
written as one of the strings ``"inf"``, ``"-inf"``, ``"nan"``: JSON has no such numbers,
and these strings keep the file strict JSON that any reader parses. :func:`load_results`
turns them back into floats. Writes are atomic (``curlora.run.atomic``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from curlora.metrics.continual import METRIC_KEYS, backward_transfer, summarize, trained_rows
from curlora.metrics.degenerate import WARNING_KEYS, WarningJSON
from curlora.reporting.regular_file import read_text
from curlora.reporting.untrusted import is_safe_name, shown
from curlora.run.atomic import atomic_write_text

Number = float | str | None
"""A measurement: a float, a non-finite marker (``"inf"``, ``"nan"``) or null (not measured)."""


class PerplexityJSON(TypedDict):
    initial: Number
    after_task: list[Number]
    tokens: int


class ValidationJSON(TypedDict):
    """Each head on its task's validation carve (from the training split; for choosing
    learning rates, never for reporting): the same layout as the eval split's numbers."""

    accuracy_matrix: list[list[Number]]
    majority_baseline: list[Number]


class ProbeJSON(TypedDict):
    """A fresh linear probe per task seen so far, after each task: the head matrix's layout
    (null for tasks not seen yet) and its backward transfer."""

    accuracy_matrix: list[list[Number]]
    bwt: Number


class HeadJSON(TypedDict):
    """Under ``head=words``: what each task was asked and answered, and its exact match."""

    name: str
    prompts: dict[str, dict[str, Any]]
    exact_match_matrix: list[list[Number]]
    initial_exact_match: list[Number]
    exact_match_bwt: Number


class RetentionJSON(TypedDict):
    """The retention matrix: rows = evaluation points (before training, then after each
    task), columns = the suite's tasks, each scored on its first ``n`` rows."""

    tasks: list[str]
    n: list[int]
    acc: list[list[Number] | None]
    acc_norm: list[list[Number] | None]


class ResultsJSON(TypedDict):
    """``results.json``: the schema is this class (keys in file order; see the module doc)."""

    method: str
    rank: int | None
    seed: int
    tasks: list[str]
    accuracy_matrix: list[list[Number]]
    initial_accuracy: list[Number]
    perplexity: PerplexityJSON
    metrics: dict[str, Number]
    majority_baseline: list[Number]
    trainable_params: int
    status: str
    config: dict[str, Any]
    warnings: list[WarningJSON]
    label_balance: dict[str, Any]
    validation: ValidationJSON | None
    probe: ProbeJSON | None
    head: HeadJSON | None
    retention: RetentionJSON | None


RESULT_KEYS: tuple[str, ...] = tuple(ResultsJSON.__annotations__)
# absent in files written before them: read as null
OPTIONAL_KEYS = ("validation", "probe", "head", "retention")
PERPLEXITY_KEYS: tuple[str, ...] = tuple(PerplexityJSON.__annotations__)


class ResultsError(ValueError):
    """A results dict or file that does not follow the schema; the message lists every problem."""


NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
"""How a non-finite measurement is written in JSON (see the module docstring)."""


def encode_number(value: float) -> float | str:
    """A finite float as is; inf, -inf, NaN as ``"inf"``, ``"-inf"``, ``"nan"``."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def decode_number(value: Any) -> Any:
    """The inverse of :func:`encode_number` (other values pass through)."""
    return NON_FINITE[value] if isinstance(value, str) and value in NON_FINITE else value


def json_safe(value: Any, where: str = "results") -> Any:
    """A copy of ``value`` made of JSON types only: non-finite floats -> ``"inf"``/``"nan"``
    strings, tuples -> lists, mapping keys -> str, numpy/torch scalars -> Python numbers,
    paths -> str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return encode_number(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalar
        return json_safe(value.item(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def _per_task(values: Sequence[Any] | Mapping[str, Any] | None, tasks: Sequence[str]) -> list[Any]:
    """A list aligned with ``tasks`` from a list (padded with None) or a task -> value mapping."""
    if values is None:
        return [None] * len(tasks)
    if isinstance(values, Mapping):
        return [values.get(task) for task in tasks]
    values = list(values)
    if len(values) > len(tasks):
        raise ResultsError(f"{len(values)} per-task values for {len(tasks)} tasks")
    return values + [None] * (len(tasks) - len(values))


def build_results(
    *,
    method: str,
    rank: int | None,
    seed: int,
    tasks: Sequence[str],
    accuracy_matrix: Sequence[Sequence[float | None]],
    initial_accuracy: Sequence[float | None] | Mapping[str, float | None],
    perplexity: Mapping[str, Any],
    majority_baseline: Sequence[float | None] | Mapping[str, float | None],
    trainable_params: int,
    status: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, float | None] | None = None,
    warnings: Sequence[Mapping[str, Any]] = (),
    label_balance: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    probe_matrix: Sequence[Sequence[float | None]] | None = None,
    head: Mapping[str, Any] | None = None,
    retention: Mapping[str, Any] | None = None,
) -> ResultsJSON:
    """Assemble and validate a results dict (see the module docstring for the schema).

    ``accuracy_matrix`` may have fewer than T rows (a stopped run); it is padded with null
    rows. ``perplexity`` is ``{"initial", "after_task", "tokens"}``; ``after_task`` is padded
    to T and a missing ``tokens`` becomes 0. ``metrics`` defaults to
    ``summarize(accuracy_matrix, initial_accuracy, ...)``; pass it only to reuse a computed
    one. Raises ResultsError on any schema violation.
    """
    tasks = list(tasks)
    rows = [list(row) for row in accuracy_matrix]
    if len(rows) > len(tasks) or any(len(row) != len(tasks) for row in rows):
        shape = [len(row) for row in rows]
        raise ResultsError(f"accuracy_matrix: row lengths {shape} do not fit {len(tasks)} tasks")
    rows += [[None] * len(tasks) for _ in range(len(tasks) - len(rows))]
    initial = _per_task(initial_accuracy, tasks)
    after_task = _per_task(perplexity.get("after_task"), tasks)
    if metrics is None:
        metrics = summarize(rows, initial, perplexity.get("initial"), after_task)
    results = {
        "method": method,
        "rank": rank,
        "seed": seed,
        "tasks": tasks,
        "accuracy_matrix": rows,
        "initial_accuracy": initial,
        "perplexity": {
            "initial": perplexity.get("initial"),
            "after_task": after_task,
            "tokens": perplexity.get("tokens") or 0,
        },
        "metrics": dict(metrics),
        "majority_baseline": _per_task(majority_baseline, tasks),
        "trainable_params": trainable_params,
        "status": status,
        "config": dict(config),
        "warnings": [dict(w) for w in warnings],
        "label_balance": dict(label_balance or {}),
        "validation": None
        if validation is None
        else {
            "accuracy_matrix": [list(row) for row in validation["accuracy_matrix"]],
            "majority_baseline": _per_task(validation.get("majority_baseline"), tasks),
        },
        "probe": None
        if probe_matrix is None
        else {
            "accuracy_matrix": [list(row) for row in probe_matrix],
            "bwt": backward_transfer([list(row) for row in probe_matrix]),
        },
        "head": None if head is None else _head_json(head, tasks),
        "retention": None if retention is None else dict(retention),
    }
    results = json_safe(results)
    _raise_if_invalid(results)
    return results


def _head_json(head: Mapping[str, Any], tasks: list[str]) -> dict[str, Any]:
    """``head`` as written: ``{name, prompts, exact_match_matrix, initial_exact_match}`` in,
    the exact match's BWT added, the matrix padded to T rows."""
    em = [list(row) for row in head["exact_match_matrix"]]
    em += [[None] * len(tasks) for _ in range(len(tasks) - len(em))]
    return {
        "name": str(head["name"]),
        "prompts": {t: dict(head["prompts"][t]) for t in tasks},
        "exact_match_matrix": em,
        "initial_exact_match": _per_task(head["initial_exact_match"], tasks),
        "exact_match_bwt": backward_transfer(em),
    }


PPL_NON_FINITE = ("inf", "nan")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(
    x: Any,
    low: float = -math.inf,
    high: float = math.inf,
    nullable: bool = True,
    non_finite: tuple[str, ...] = ("nan",),
) -> bool:
    """A number in [low, high], null (when ``nullable``) or one of the allowed non-finite
    markers (a measurement that came out NaN is a result; +inf only where it can occur)."""
    if x is None:
        return nullable
    if isinstance(x, str):
        return x in non_finite
    if isinstance(x, float) and not math.isfinite(x):
        return encode_number(x) in non_finite
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    value = _as_float(x)
    return value is not None and low <= value <= high


def _as_float(x: int | float) -> float | None:
    """``x`` as a finite float, None when it has none: JSON ints have any size, and one past
    1.8e308 (``10**400``) would make every reader's ``float``/``math.isfinite`` raise."""
    try:
        value = float(x)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _check_names(name: str, names: Any, problems: list[str]) -> bool:
    """A non-empty list of safe names (printed as table headers and labels: a name with an
    escape sequence could redraw the terminal); False after a problem."""
    if not (isinstance(names, list) and names and all(is_safe_name(t) for t in names)):
        problems.append(
            f"{name}: expected a non-empty list of names of printable characters, got {names!r}"
        )
        return False
    return True


def _check_list(name: str, values: Any, n: int, ok: Any, problems: list[str]) -> None:
    if not isinstance(values, list) or len(values) != n:
        problems.append(f"{name}: expected a list of {n} entries, got {values!r}")
    elif not all(ok(v) for v in values):
        problems.append(f"{name}: invalid entries in {values!r}")


def _check_matrix(name: str, matrix: Any, T: int, problems: list[str]) -> None:
    """A T × T accuracy matrix: T rows of T accuracies in [0, 1] or null."""
    if not isinstance(matrix, list) or len(matrix) != T:
        problems.append(f"{name}: expected {T} rows")
        return
    for i, row in enumerate(matrix):
        _check_list(f"{name}[{i}]", row, T, lambda v: _is_num(v, 0, 1), problems)


def _is_fraction(x: Any) -> bool:
    return _is_num(x, 0, 1)


def _check_retention(retention: Any, T: int, problems: list[str]) -> None:
    """null, or T + 1 rows (null or K accuracies in [0, 1]) per metric over K named tasks."""
    if retention is None:
        return
    if not isinstance(retention, Mapping) or set(retention) != set(RetentionJSON.__annotations__):
        problems.append(f"retention: expected null or {list(RetentionJSON.__annotations__)}")
        return
    names, sizes = retention["tasks"], retention["n"]
    if not _check_names("retention.tasks", names, problems):
        return
    _check_list("retention.n", sizes, len(names), lambda v: _is_int(v) and v >= 0, problems)
    for key in ("acc", "acc_norm"):
        rows = retention[key]
        if not isinstance(rows, list) or len(rows) != T + 1:
            problems.append(f"retention.{key}: expected {T + 1} rows (null or a list)")
            continue
        for i, row in enumerate(rows):
            if row is not None:
                _check_list(f"retention.{key}[{i}]", row, len(names), _is_fraction, problems)


def validate_results(results: Any) -> list[str]:
    """Every way ``results`` departs from the schema, as messages (empty list = valid)."""
    if not isinstance(results, Mapping):
        return [f"results must be a JSON object, got {type(results).__name__}"]
    problems: list[str] = []
    missing = [k for k in RESULT_KEYS if k not in results and k not in OPTIONAL_KEYS]
    extra = [k for k in results if k not in RESULT_KEYS]
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unknown keys {extra}; the schema allows exactly {list(RESULT_KEYS)}")
    if missing:
        return problems
    r = results
    tasks = r["tasks"]
    if not _check_names("tasks", tasks, problems):
        return problems
    if len(set(tasks)) != len(tasks):
        problems.append(f"tasks: duplicate names in {tasks}")
    T = len(tasks)
    if not is_safe_name(r["method"]):
        problems.append(f"method: expected a name of printable characters, got {r['method']!r}")
    if not (r["rank"] is None or _is_int(r["rank"])):
        problems.append(f"rank: expected an int or null, got {r['rank']!r}")
    if not _is_int(r["seed"]):
        problems.append(f"seed: expected an int, got {r['seed']!r}")
    matrix = r["accuracy_matrix"]
    if not isinstance(matrix, list) or len(matrix) != T:
        problems.append(f"accuracy_matrix: expected {T} rows, got {matrix!r}")
    else:
        for i, row in enumerate(matrix):
            _check_list(f"accuracy_matrix[{i}]", row, T, lambda v: _is_num(v, 0, 1), problems)
    for key in ("initial_accuracy", "majority_baseline"):
        _check_list(key, r[key], T, lambda v: _is_num(v, 0, 1), problems)
    ppl = r["perplexity"]
    if not isinstance(ppl, Mapping) or set(ppl) != set(PERPLEXITY_KEYS):
        problems.append(f"perplexity: expected keys {list(PERPLEXITY_KEYS)}, got {ppl!r}")
    else:
        if not _is_num(ppl["initial"], 0, non_finite=PPL_NON_FINITE):
            problems.append(
                f"perplexity.initial: expected a positive number, got {ppl['initial']!r}"
            )
        _check_list(
            "perplexity.after_task",
            ppl["after_task"],
            T,
            lambda v: _is_num(v, 0, non_finite=PPL_NON_FINITE),
            problems,
        )
        if not (_is_int(ppl["tokens"]) and ppl["tokens"] >= 0):
            problems.append(f"perplexity.tokens: expected an int >= 0, got {ppl['tokens']!r}")
    metrics = r["metrics"]
    if not isinstance(metrics, Mapping) or set(metrics) != set(METRIC_KEYS):
        problems.append(f"metrics: expected exactly {list(METRIC_KEYS)}, got {metrics!r}")
    elif not all(_is_num(v, non_finite=tuple(NON_FINITE)) for v in metrics.values()):
        problems.append(f"metrics: values must be numbers or null, got {metrics!r}")
    if not (_is_int(r["trainable_params"]) and r["trainable_params"] >= 0):
        problems.append(f"trainable_params: expected an int >= 0, got {r['trainable_params']!r}")
    if not (isinstance(r["status"], str) and r["status"]):
        problems.append(f"status: expected a non-empty string, got {r['status']!r}")
    if not isinstance(r["config"], Mapping):
        problems.append("config: expected an object")
    warnings = r["warnings"]
    if not isinstance(warnings, list) or not all(
        isinstance(w, Mapping) and set(w) == set(WARNING_KEYS) for w in warnings
    ):
        problems.append(f"warnings: expected a list of objects with keys {list(WARNING_KEYS)}")
    validation = r.get("validation")
    if validation is not None:
        if not isinstance(validation, Mapping) or set(validation) != {
            "accuracy_matrix",
            "majority_baseline",
        }:
            problems.append("validation: expected null or {accuracy_matrix, majority_baseline}")
        else:
            _check_matrix("validation.accuracy_matrix", validation["accuracy_matrix"], T, problems)
            majority = validation["majority_baseline"]
            _check_list("validation.majority_baseline", majority, T, _is_fraction, problems)
    probe = r.get("probe")
    if probe is not None:
        if not isinstance(probe, Mapping) or set(probe) != {"accuracy_matrix", "bwt"}:
            problems.append("probe: expected null or {accuracy_matrix, bwt}")
        else:
            _check_matrix("probe.accuracy_matrix", probe["accuracy_matrix"], T, problems)
            if not _is_num(probe["bwt"], non_finite=tuple(NON_FINITE)):
                problems.append(f"probe.bwt: expected a number or null, got {probe['bwt']!r}")
    head = r.get("head")
    if head is not None:
        if not isinstance(head, Mapping) or set(head) != set(HeadJSON.__annotations__):
            problems.append(f"head: expected null or {list(HeadJSON.__annotations__)}")
        else:
            _check_matrix("head.exact_match_matrix", head["exact_match_matrix"], T, problems)
            ok = lambda v: _is_num(v, 0, 1)  # noqa: E731
            _check_list("head.initial_exact_match", head["initial_exact_match"], T, ok, problems)
            if not _is_num(head["exact_match_bwt"], non_finite=tuple(NON_FINITE)):
                bwt = head["exact_match_bwt"]
                problems.append(f"head.exact_match_bwt: expected a number or null, got {bwt!r}")
    _check_retention(r.get("retention"), T, problems)
    balance = r["label_balance"]
    if not isinstance(balance, Mapping):
        problems.append("label_balance: expected an object keyed by task")
    elif set(balance) - set(tasks):
        problems.append(f"label_balance: unknown tasks {sorted(set(balance) - set(tasks))}")
    return problems


def _raise_if_invalid(results: Any, source: str = "results") -> None:
    problems = validate_results(results)
    if problems:
        raise ResultsError(
            f"{source} does not follow the results.json schema:\n- " + "\n- ".join(problems)
        )


def write_results(path: str | os.PathLike[str], results: Mapping[str, Any]) -> Path:
    """Validate and write ``results`` as JSON atomically; returns the path written.

    Non-finite floats become ``"inf"``/``"nan"`` strings (``allow_nan=False`` guarantees
    strict JSON). Written atomically (``curlora.run.atomic``): readers see the old file or the
    new one, never a partial one.
    """
    path = Path(path)
    safe = json_safe(dict(results))
    _raise_if_invalid(safe, str(path))
    return atomic_write_text(path, json.dumps(safe, indent=2, allow_nan=False) + "\n")


def _decode_matrix(rows: Sequence[Sequence[Any]]) -> list[list[float | None]]:
    return [[decode_number(v) for v in row] for row in rows]


def decode_results(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the non-finite markers of its numeric fields turned back into floats."""
    out = dict(results)
    out["accuracy_matrix"] = _decode_matrix(results["accuracy_matrix"])
    for key in ("initial_accuracy", "majority_baseline"):
        out[key] = [decode_number(v) for v in results[key]]
    ppl = results["perplexity"]
    out["perplexity"] = {
        **ppl,
        "initial": decode_number(ppl["initial"]),
        "after_task": [decode_number(v) for v in ppl["after_task"]],
    }
    out["metrics"] = {k: decode_number(v) for k, v in results["metrics"].items()}
    validation = results.get("validation")
    out["validation"] = (
        None
        if validation is None
        else {
            "accuracy_matrix": _decode_matrix(validation["accuracy_matrix"]),
            "majority_baseline": [decode_number(v) for v in validation["majority_baseline"]],
        }
    )
    probe = results.get("probe")
    out["probe"] = (
        None
        if probe is None
        else {
            "accuracy_matrix": _decode_matrix(probe["accuracy_matrix"]),
            "bwt": decode_number(probe["bwt"]),
        }
    )
    head = results.get("head")
    out["head"] = (
        None
        if head is None
        else {
            **head,
            "exact_match_matrix": _decode_matrix(head["exact_match_matrix"]),
            "initial_exact_match": [decode_number(v) for v in head["initial_exact_match"]],
            "exact_match_bwt": decode_number(head["exact_match_bwt"]),
        }
    )
    retention = results.get("retention")
    out["retention"] = (
        None
        if retention is None
        else {
            **retention,
            **{
                k: [None if row is None else [decode_number(v) for v in row] for row in rows]
                for k, rows in retention.items()
                if k in ("acc", "acc_norm")
            },
        }
    )
    return out


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results.json and validate it; raises ResultsError naming the file and problems
    (also for a file that cannot be read, is not UTF-8 or not JSON: callers skip it).

    Non-finite measurements come back as floats (``inf``, ``nan``; see the module docstring).
    A symbolic link or anything but a regular file (a FIFO would hang the reader) cannot
    be read (``curlora.reporting.regular_file``).
    """
    path = Path(path)
    name = shown(path)  # a received directory's name is data too: printed in one line
    try:
        results = json.loads(read_text(path))
    except OSError as error:  # unreadable (permissions, a link, a FIFO, an I/O error)
        raise ResultsError(f"{name} cannot be read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:  # a flipped byte: the file is not UTF-8 text
        raise ResultsError(f"{name} is not UTF-8 text (byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise ResultsError(f"{name} is not valid JSON: {error}") from error
    except (ValueError, RecursionError) as error:  # past what a reader can hold: see below
        raise ResultsError(f"{name} is not readable JSON: {_unreadable(error)}") from error
    _raise_if_invalid(results, name)
    return decode_results(results)


def _unreadable(error: ValueError | RecursionError) -> str:
    """Why valid JSON could not be parsed: an integer past Python's digit limit (ValueError,
    before any schema check could see it) or nesting deeper than the recursion limit."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error).split(";")[0]  # the limit's message, not its advice on raising it


def final_accuracies(results: Mapping[str, Any]) -> list[float | None]:
    """Each task's accuracy in the last row that was evaluated (T entries; None if none)."""
    rows = trained_rows(results["accuracy_matrix"])
    return list(rows[-1]) if rows else [None] * len(results["tasks"])
