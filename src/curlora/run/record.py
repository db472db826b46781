"""What a run has measured so far: the typed record the task loop fills and reporting reads.

An :class:`Evaluation` is one evaluation point: every task's head scored on its eval split
(:class:`TaskScore`) and the language model's perplexity (:class:`PerplexityScore`). The
:class:`RunRecord` holds the one before any training (``initial``) and one per trained task
(``after_task[i]``, None until task i is trained and evaluated), plus the warnings raised
along the way. It is saved in ``progress.json`` and inside every task checkpoint, so a
resumed run continues from exactly what was known, and ``results.json`` is built from it.

A record read back from a file is checked against itself (:func:`score_inconsistency`):
an accuracy and a top-class share are functions of their confusion matrix, and the
per-example outcomes stored beside them must agree with both, so a score edited on its own
(an ``accuracy`` 0.45 made 0.95) is found; so must a retention score's ``acc`` and its
per-row outcomes, where recorded. Perplexity and probe scores have no outcomes to check:
only a checksum of the whole record guards them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from curlora.reporting.results import decode_number, json_safe


@dataclass(frozen=True)
class TaskScore:
    """One head on its task's eval split. ``confusion[t][p]``: examples of true class t
    predicted as p; its total is the split's size."""

    accuracy: float
    top_class_share: float
    confusion: list[list[int]]
    correct: str | None = None
    """Per example, by its row in the split: ``"1"`` scored right, ``"0"`` wrong (None:
    not recorded). Intervals that carry test-sample noise resample these."""
    exact_match: float | None = None
    """head=words: the share of examples whose whole-vocabulary argmax at the answer
    position is the right word's first token (None under head=linear)."""
    exact_correct: str | None = None
    """head=words: per example, by its row, ``"1"`` where the exact match held (None under
    head=linear or not recorded); em intervals resample these as ``correct``'s."""

    @property
    def size(self) -> int:
        return sum(sum(row) for row in self.confusion)

    @classmethod
    def from_confusion(cls, confusion: list[list[int]], correct: str | None = None) -> TaskScore:
        """Accuracy and top-class share from a confusion matrix [true][predicted]."""
        total = sum(sum(row) for row in confusion)
        if total == 0:
            return cls(math.nan, math.nan, confusion, correct)
        right = sum(confusion[c][c] for c in range(len(confusion)))
        predicted = [sum(row[p] for row in confusion) for p in range(len(confusion))]
        return cls(right / total, max(predicted) / total, confusion, correct)


@dataclass(frozen=True)
class PerplexityScore:
    """exp(mean NLL) over ``tokens`` predicted tokens (inf when the model broke down)."""

    ppl: float
    tokens: int


@dataclass(frozen=True)
class RetentionScore:
    """lm-eval's zero-shot accuracy on one general-ability task's first ``n`` rows: ``acc``
    picks the choice of highest log-likelihood, ``acc_norm`` of highest per-character one."""

    acc: float
    acc_norm: float
    n: int
    correct: str | None = None
    """Per row of the subset, in lm-eval's document order: ``"1"`` where ``acc`` picked the
    right choice, ``"0"`` where not (None: not recorded, as in runs made before it was).
    Intervals that carry the suite's row noise resample these, as a task's ``correct``."""


@dataclass(frozen=True)
class Evaluation:
    """Everything measured at one evaluation point: each head on its task's eval split
    (``scores``) and on its validation carve (``validation``; model selection only), and the
    language model's perplexity."""

    scores: dict[str, TaskScore]
    perplexity: PerplexityScore | None = None
    validation: dict[str, TaskScore] = field(default_factory=dict)
    probe: dict[str, float] = field(default_factory=dict)
    """Per task seen so far, a fresh linear probe's accuracy (``curlora.metrics.probe``);
    empty when probing is off."""
    retention: dict[str, RetentionScore] = field(default_factory=dict)
    """Per general-ability task of the retention suite, its score (empty when it is off)."""


@dataclass
class RunRecord:
    """The measurements of one run, in task order (see the module docstring)."""

    tasks: list[str]
    initial: Evaluation | None = None
    after_task: list[Evaluation | None] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    elapsed_s: float = 0.0
    """Wall time of the run so far, every session of it (a resumed run adds its own)."""
    fingerprint: dict[str, str] | None = None
    """Which experiment and base model the measurements belong to (sha256 digests, see
    ``curlora.run.state.run_fingerprint``), so a resume refuses files of another one; None
    in files written before it was kept."""

    def __post_init__(self) -> None:
        if not self.after_task:
            self.after_task = [None] * len(self.tasks)
        if len(self.after_task) != len(self.tasks):
            raise ValueError(f"{len(self.after_task)} evaluations for {len(self.tasks)} tasks")

    # ------------------------------------------------------------------ filling
    def add(self, point: int, evaluation: Evaluation) -> None:
        """File ``evaluation`` under ``point``: -1 = before training, i = after task i."""
        if point < 0:
            self.initial = evaluation
        else:
            self.after_task[point] = evaluation

    def inconsistency(self) -> str | None:
        """Why one of the record's scores cannot be what was measured, naming it as in the
        JSON (``initial.scores.pairs: ...``); None when every score agrees with itself."""
        points = [("initial", self.initial)]
        points += [(f"after_task[{i}]", e) for i, e in enumerate(self.after_task)]
        for where, evaluation in points:
            problem = None if evaluation is None else evaluation_inconsistency(evaluation)
            if problem:
                return f"{where}.{problem}"
        return None

    @property
    def completed_tasks(self) -> int:
        """Tasks trained and evaluated, from the first on."""
        done = 0
        while done < len(self.tasks) and self.after_task[done] is not None:
            done += 1
        return done

    # ------------------------------------------------------------------ views
    def _cell(
        self, evaluation: Evaluation | None, task: str, key: str, role: str = "scores"
    ) -> float | None:
        scores = getattr(evaluation, role) if evaluation is not None else {}
        return getattr(scores[task], key) if task in scores else None

    def exact_match_matrix(self) -> list[list[float | None]]:
        """E[i][j]: task j's exact-match rate after task i (head=words; None elsewhere)."""
        return [[self._cell(e, t, "exact_match") for t in self.tasks] for e in self.after_task]

    def initial_exact_match(self) -> list[float | None]:
        return [self._cell(self.initial, t, "exact_match") for t in self.tasks]

    def accuracy_matrix(self, role: str = "scores") -> list[list[float | None]]:
        """R[i][j]: accuracy on task j after training task i (None: not evaluated); on the
        validation carves with ``role="validation"``."""
        return [[self._cell(e, t, "accuracy", role) for t in self.tasks] for e in self.after_task]

    def probe_matrix(self) -> list[list[float | None]] | None:
        """P[i][j]: a fresh probe's accuracy on task j after task i (None: not probed);
        None when no evaluation was probed."""
        if not any(e is not None and e.probe for e in self.after_task):
            return None
        return [
            [None if e is None else e.probe.get(t) for t in self.tasks] for e in self.after_task
        ]

    def has_validation(self) -> bool:
        return any(e is not None and e.validation for e in (self.initial, *self.after_task))

    def top_class_share_matrix(self) -> list[list[float | None]]:
        return [[self._cell(e, t, "top_class_share") for t in self.tasks] for e in self.after_task]

    def initial_accuracy(self) -> list[float | None]:
        return [self._cell(self.initial, t, "accuracy") for t in self.tasks]

    def perplexity(self) -> dict[str, Any]:
        """``{"initial", "after_task", "tokens"}`` as ``results.json`` has it."""

        def ppl(evaluation: Evaluation | None) -> float | None:
            return (
                None
                if evaluation is None or evaluation.perplexity is None
                else (evaluation.perplexity.ppl)
            )

        measured = [e.perplexity for e in (self.initial, *self.after_task) if e and e.perplexity]
        return {
            "initial": ppl(self.initial),
            "after_task": [ppl(e) for e in self.after_task],
            "tokens": measured[-1].tokens if measured else 0,
        }

    def retention(self) -> dict[str, Any] | None:
        """The retention matrix as ``results.json`` has it (None when no point measured it):
        rows = evaluation points, the zero-shot one first (null rows: not evaluated)."""
        points = [self.initial, *self.after_task]
        measured = [e for e in points if e is not None and e.retention]
        if not measured:
            return None
        names = list(measured[0].retention)

        def row(e: Evaluation | None, key: str) -> list[float | None] | None:
            if e is None or not e.retention:
                return None
            return [getattr(e.retention[t], key) if t in e.retention else None for t in names]

        return {
            "tasks": names,
            "n": [measured[0].retention[t].n for t in names],
            "acc": [row(e, "acc") for e in points],
            "acc_norm": [row(e, "acc_norm") for e in points],
        }

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (non-finite numbers as ``"inf"``/``"nan"`` strings)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError/ValueError on a bad shape."""

        def scores(node: Mapping[str, Any]) -> dict[str, TaskScore]:
            return {
                task: TaskScore(
                    accuracy=float(decode_number(s["accuracy"])),
                    top_class_share=float(decode_number(s["top_class_share"])),
                    confusion=[[int(v) for v in row] for row in s["confusion"]],
                    correct=None if s.get("correct") is None else str(s["correct"]),
                    exact_match=None
                    if s.get("exact_match") is None
                    else float(decode_number(s["exact_match"])),
                    exact_correct=None
                    if s.get("exact_correct") is None
                    else str(s["exact_correct"]),
                )
                for task, s in node.items()
            }

        def evaluation(node: Mapping[str, Any] | None) -> Evaluation | None:
            if node is None:
                return None
            p = node.get("perplexity")
            perplexity = (
                None
                if p is None
                else PerplexityScore(float(decode_number(p["ppl"])), int(p["tokens"]))
            )
            return Evaluation(
                scores(node["scores"]),
                perplexity,
                scores(node.get("validation", {})),
                {t: float(decode_number(v)) for t, v in node.get("probe", {}).items()},
                {
                    t: RetentionScore(
                        float(decode_number(r["acc"])),
                        float(decode_number(r["acc_norm"])),
                        int(r["n"]),
                        None if r.get("correct") is None else str(r["correct"]),
                    )
                    for t, r in node.get("retention", {}).items()
                },
            )

        tasks = [str(t) for t in data["tasks"]]
        if not isinstance(data["after_task"], list):
            raise TypeError("after_task must be a list")
        return cls(
            tasks=tasks,
            initial=evaluation(data["initial"]),
            after_task=[evaluation(e) for e in data["after_task"]],
            warnings=[dict(w) for w in data.get("warnings", [])],
            status=str(data.get("status", "running")),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            fingerprint=_fingerprint(data.get("fingerprint")),
        )


def _fingerprint(node: Any) -> dict[str, str] | None:
    """A saved fingerprint: None (written before it was kept) or digests by name; anything
    else is a damaged record (TypeError), never a fingerprint that silently matches."""
    if node is None:
        return None
    if not isinstance(node, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in node.items()
    ):
        raise TypeError(f"fingerprint must map names to digests, not {node!r}")
    return dict(node)


# ---------------------------------------------------------------------------------- consistency
def _same(a: float, b: float) -> bool:
    """Equal, with nan equal to nan (an accuracy over no examples is nan)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _outcome_problem(outcomes: str, size: int, what: str) -> str | None:
    """Why ``outcomes`` cannot be one ``"1"``/``"0"`` per example of a split of ``size``."""
    if set(outcomes) - {"0", "1"}:
        return f"its per-example {what} are not made of 0 and 1"
    if len(outcomes) != size:
        return f"{len(outcomes)} per-example {what} for {size} examples"
    return None


def score_inconsistency(score: TaskScore) -> str | None:
    """Why ``score`` cannot be what was measured (None: it agrees with itself).

    The accuracy and the top-class share must be what :meth:`TaskScore.from_confusion`
    computes from the confusion matrix (bit for bit: that is how they were computed); the
    per-example outcomes, where recorded, one per example with as many right as the
    matrix's diagonal; the exact-match rate the share of its own outcomes."""
    confusion = score.confusion
    if any(len(row) != len(confusion) or min(row, default=0) < 0 for row in confusion):
        return "its confusion matrix is not square with counts >= 0"
    expected = TaskScore.from_confusion(confusion)
    if not _same(score.accuracy, expected.accuracy):
        return f"accuracy {score.accuracy} disagrees with its confusion matrix"
    if not _same(score.top_class_share, expected.top_class_share):
        return f"top-class share {score.top_class_share} disagrees with its confusion matrix"
    size = score.size
    if score.correct is not None:
        problem = _outcome_problem(score.correct, size, "outcomes")
        if problem:
            return f"accuracy {score.accuracy}: {problem}"
        diagonal = sum(confusion[c][c] for c in range(len(confusion)))
        if score.correct.count("1") != diagonal:
            return f"accuracy {score.accuracy} disagrees with its outcomes"
    exact = score.exact_correct
    if exact is not None:
        problem = _outcome_problem(exact, size, "exact matches")
        if problem:
            return f"exact match {score.exact_match}: {problem}"
        rate = exact.count("1") / size if size else math.nan
        if score.exact_match is None or not _same(score.exact_match, rate):
            return f"exact match {score.exact_match} disagrees with its outcomes"
    return None


def retention_inconsistency(score: RetentionScore) -> str | None:
    """Why a retention score cannot be what was measured: its per-row outcomes, where
    recorded, are not one per row of its subset with ``acc`` their share of ``"1"`` (lm-eval
    averages the rows' 0/1 scores, the same division); None when it agrees with itself."""
    if score.correct is None:
        return None
    problem = _outcome_problem(score.correct, score.n, "outcomes")
    if problem:
        return f"acc {score.acc}: {problem}"
    rate = score.correct.count("1") / score.n if score.n else math.nan
    if not _same(score.acc, rate):
        return f"acc {score.acc} disagrees with its outcomes"
    return None


def evaluation_inconsistency(evaluation: Evaluation) -> str | None:
    """The first score of ``evaluation`` that disagrees with itself, named by where it sits
    (``scores.pairs: accuracy 0.95 disagrees with ...``); None when all agree."""
    for role in ("scores", "validation"):
        for task, score in getattr(evaluation, role).items():
            problem = score_inconsistency(score)
            if problem:
                return f"{role}.{task}: {problem}"
    for task, retained in evaluation.retention.items():
        problem = retention_inconsistency(retained)
        if problem:
            return f"retention.{task}: {problem}"
    return None
