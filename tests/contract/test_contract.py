"""Every method and every strategy in ``configs/`` through the contract (``tests.contract.kit``).

One tiny 3-task run per baseline is shared by its tests (a module-scoped fixture, computed
once: ``make test`` gives a test file to one pytest-xdist worker). The stop-and-resume
check runs for every baseline in the fast tier: a newcomer's ``make test`` is what tells
them that their baseline resumes bit for bit. It costs about one more tiny run per
baseline (measured 2026-12-05, 2 shared CPU cores: about 5 s each, ``--durations``).

Every baseline also runs under ``head=words`` (the model answers in label words; ids end in
``,words``); a method with nothing to train there (head_only) is checked to be refused
instead. Under ``words`` the fast tier runs a representative subset (:func:`words_is_fast`,
read from the classes, not from names: every strategy, since strategies read the head's
logits or loss; the default method; methods with per-task or calibrated state; methods
that train the embeddings, which ``words`` freezes); ``-m slow`` runs the other methods.
Measured with ``pytest -p no:xdist tests/contract/test_contract.py -k words --durations=0``
on the shared 2-core machine: about 4 s per tiny run, all words runs with their resumes
about 2 minutes, the fast subset about half of that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from curlora.adapters.base import AdapterMethod
from tests.contract import kit

HEADS = ("linear", "words")
DEFAULT_METHOD = next(
    next(iter(d.values()))
    for d in OmegaConf.to_container(OmegaConf.load(kit.CONFIGS / "train.yaml").defaults)
    if isinstance(d, dict) and "method" in d
)


def words_is_fast(kind: str, name: str) -> bool:
    """Whether the fast tier runs this baseline under ``head=words`` (module docstring)."""
    if kind == "strategy" or name == DEFAULT_METHOD:
        return True
    cls = kit.target_class(kind, name)
    if cls.begin_task is not AdapterMethod.begin_task or cls.needs_calibration:
        return True
    return kit.method_num_trainable(name) is None  # e.g. every weight (embeddings too)


def baselines(heads: tuple[str, ...] = HEADS) -> list:
    """``(kind, name, head)`` params of every baseline under ``heads`` (ids end in ``,words``
    under words). The words tier lives in ``test_contract_words.py``: a file of its own, so
    pytest-xdist (``--dist loadfile``) gives the two tiers to two workers."""
    params = []
    for head in heads:
        for kind in kit.KINDS:
            for name in kit.discover(kind):
                if head == "words" and kit.trains_nothing_under_words(kind, name):
                    continue
                slow = head == "words" and not words_is_fast(kind, name)
                label = f"{kind}={name}" + ("" if head == "linear" else ",words")
                marks = [pytest.mark.slow] if slow else []
                params.append(pytest.param((kind, name, head), id=label, marks=marks))
    return params


LINEAR = ("linear",)


# The tiny run of every baseline and its three checks (kit.run_checks).
globals().update(kit.run_checks(baselines(LINEAR)))


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind in kit.KINDS for name in kit.discover(kind)],
    ids=lambda v: str(v),
)
def test_a_bad_value_of_any_key_is_refused_by_name(kind: str, name: str, tmp_path: Path) -> None:
    kit.check_bad_values(tmp_path, kind, name)
