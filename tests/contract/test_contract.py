"""Every method and every strategy in ``configs/`` through the contract (``tests.contract.kit``).

One tiny 3-task run per baseline is shared by its tests (a module-scoped fixture, computed
once: ``make test`` gives a test file to one pytest-xdist worker). The stop-and-resume
check runs for every baseline in the fast tier: a newcomer's ``make test`` is what tells
them that their baseline resumes bit for bit. It costs about one more tiny run per
baseline (measured 2026-12-05, 2 shared CPU cores: about 5 s each, ``--durations``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract import kit


def baselines() -> list:
    return [
        pytest.param((kind, name), id=f"{kind}={name}")
        for kind in kit.KINDS
        for name in kit.discover(kind)
    ]


@pytest.fixture(scope="module")
def baseline(request: pytest.FixtureRequest, tmp_path_factory) -> kit.TinyRun:
    """The baseline's tiny run (checked by ``kit.tiny_run`` as it finishes)."""
    kind, name = request.param
    return kit.tiny_run(tmp_path_factory.mktemp(f"{kind}-{name}"), kind, name)


@pytest.mark.parametrize("baseline", baselines(), indirect=True)
def test_three_tasks_complete(baseline: kit.TinyRun) -> None:
    assert baseline.results["status"] == "completed"


@pytest.mark.parametrize("baseline", baselines(), indirect=True)
def test_what_the_run_saved_restores_it(baseline: kit.TinyRun) -> None:
    kit.check_reload(baseline)


@pytest.mark.parametrize("baseline", baselines(), indirect=True)
def test_stop_mid_task_and_resume_is_exact(baseline: kit.TinyRun, tmp_path: Path) -> None:
    kit.check_resume(tmp_path, baseline)


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind in kit.KINDS for name in kit.discover(kind)],
    ids=lambda v: str(v),
)
def test_a_bad_value_of_any_key_is_refused_by_name(kind: str, name: str, tmp_path: Path) -> None:
    kit.check_bad_values(tmp_path, kind, name)
