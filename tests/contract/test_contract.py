"""Every method and every strategy in ``configs/`` through the contract (``tests.contract.kit``).

One tiny 3-task run per baseline is shared by its tests (a module-scoped fixture, computed
once: ``make test`` gives a test file to one pytest-xdist worker). The stop-and-resume
check costs about one more run per baseline: the fast tier runs it for the baselines whose
resume is most delicate, picked by what their classes override, not by name
(:func:`resume_is_fast`: today SI, separate, O-LoRA and CorDA); ``-m slow`` runs it for
all. The default pair (``method=curlora``, ``strategy=sequential``) resumes in the fast
tier in ``tests/pipeline/test_reliability.py``.

Every baseline runs under both heads (``head=linear``, ``head=words``; ids end in
``,words`` for the second). A method with nothing to train under ``words`` (head_only) is
checked to be refused there instead. Under ``words`` the fast tier runs a representative
subset (:func:`words_is_fast`: every strategy, since strategies read the head's logits or
loss; the default method; methods whose resume is delicate; methods that train the
embeddings, which ``words`` freezes); ``-m slow`` runs the other methods. Measured with
``pytest -p no:xdist tests/contract/test_contract.py -k words --durations=0`` on a shared
2-core machine: about 4 s per tiny run, so all 24 words runs plus their resumes took about
2 minutes, the fast subset about half of that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from curlora.adapters.base import AdapterMethod
from curlora.strategies.base import Strategy
from tests.contract import kit


def resume_is_fast(kind: str, name: str) -> bool:
    """Whether the fast tier stops and resumes this baseline: when it has state beyond the
    adapter's parameters that a resume must not reset or re-form, read from what its class
    overrides: a strategy's step hook (accumulated every step) or evaluation hooks (adapters
    swapped in and out: ``separate``); a method's per-task changes (``begin_task``:
    O-LoRA) or calibration (a base rebuilt from activations: CorDA)."""
    cls = kit.target_class(kind, name)
    if kind == "strategy":
        return cls.uses_optimizer_step() or cls.on_evaluate_task is not Strategy.on_evaluate_task
    return cls.begin_task is not AdapterMethod.begin_task or cls.needs_calibration


HEADS = ("linear", "words")
DEFAULT_METHOD = next(
    next(iter(d.values()))
    for d in OmegaConf.to_container(OmegaConf.load(kit.CONFIGS / "train.yaml").defaults)
    if isinstance(d, dict) and "method" in d
)


def words_is_fast(kind: str, name: str) -> bool:
    """Whether the fast tier runs this baseline under ``head=words`` (module docstring)."""
    if kind == "strategy" or name == DEFAULT_METHOD or resume_is_fast(kind, name):
        return True
    return kit.method_num_trainable(name) is None  # e.g. every weight (embeddings too)


def baselines(resume: bool = False) -> list:
    params = []
    for head in HEADS:
        for kind in kit.KINDS:
            for name in kit.discover(kind):
                if head == "words" and kit.trains_nothing_under_words(kind, name):
                    continue
                slow = (resume and not resume_is_fast(kind, name)) or (
                    head == "words" and not words_is_fast(kind, name)
                )
                marks = [pytest.mark.slow] if slow else []
                label = f"{kind}={name}" + ("" if head == "linear" else ",words")
                params.append(pytest.param((kind, name, head), id=label, marks=marks))
    return params


@pytest.fixture(scope="module")
def baseline(request: pytest.FixtureRequest, tmp_path_factory) -> kit.TinyRun:
    """The baseline's tiny run (checked by ``kit.tiny_run`` as it finishes)."""
    kind, name, head = request.param
    return kit.tiny_run(tmp_path_factory.mktemp(f"{kind}-{name}-{head}"), kind, name, head=head)


@pytest.mark.parametrize("baseline", baselines(), indirect=True)
def test_three_tasks_complete(baseline: kit.TinyRun) -> None:
    assert baseline.results["status"] == "completed"


@pytest.mark.parametrize("baseline", baselines(), indirect=True)
def test_what_the_run_saved_restores_it(baseline: kit.TinyRun) -> None:
    kit.check_reload(baseline)


@pytest.mark.parametrize("baseline", baselines(resume=True), indirect=True)
def test_stop_mid_task_and_resume_is_exact(baseline: kit.TinyRun, tmp_path: Path) -> None:
    kit.check_resume(tmp_path, baseline)


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind in kit.KINDS for name in kit.discover(kind)],
    ids=lambda v: str(v),
)
def test_a_bad_value_of_any_key_is_refused_by_name(kind: str, name: str, tmp_path: Path) -> None:
    kit.check_bad_values(tmp_path, kind, name)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (kind, name)
        for kind in kit.KINDS
        for name in kit.discover(kind)
        if kit.trains_nothing_under_words(kind, name)
    ],
    ids=lambda v: str(v),
)
def test_a_method_with_nothing_to_train_is_refused_under_words(
    kind: str, name: str, tmp_path: Path
) -> None:
    kit.check_refused_under_words(tmp_path, kind, name)
