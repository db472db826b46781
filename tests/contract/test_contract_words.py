"""The contract under ``head=words`` (see ``test_contract.py``'s docstring for the tiers).

A file of its own so that ``make test``'s pytest-xdist (``--dist loadfile``) runs it on
another worker than the ``head=linear`` tier: each file's module-scoped tiny runs stay on
one worker, and the two tiers together were the longest file of the suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract import kit
from tests.contract.test_contract import baselines

WORDS = ("words",)


@pytest.fixture(scope="module")
def baseline(request: pytest.FixtureRequest, tmp_path_factory) -> kit.TinyRun:
    """The baseline's tiny run under ``head=words`` (checked by ``kit.tiny_run``)."""
    kind, name, head = request.param
    return kit.tiny_run(tmp_path_factory.mktemp(f"{kind}-{name}-{head}"), kind, name, head=head)


@pytest.mark.parametrize("baseline", baselines(WORDS), indirect=True)
def test_three_tasks_complete(baseline: kit.TinyRun) -> None:
    assert baseline.results["status"] == "completed"


@pytest.mark.parametrize("baseline", baselines(WORDS), indirect=True)
def test_what_the_run_saved_restores_it(baseline: kit.TinyRun) -> None:
    kit.check_reload(baseline)


@pytest.mark.parametrize("baseline", baselines(WORDS), indirect=True)
def test_stop_mid_task_and_resume_is_exact(baseline: kit.TinyRun, tmp_path: Path) -> None:
    kit.check_resume(tmp_path, baseline)


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
