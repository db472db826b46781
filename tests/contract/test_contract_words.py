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


# The tiny run of every baseline and its three checks (kit.run_checks).
globals().update(kit.run_checks(baselines(WORDS)))


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
