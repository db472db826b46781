"""``python train.py <args>`` in a fresh interpreter that then lists the heavy libraries
(torch, Lightning, datasets, transformers) it imported: what the tests of "refused before
the training stack loads" read."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from tests.conftest import REPO_ROOT

_PROBE = """
import runpy, sys
sys.argv = ["train.py", *sys.argv[1:]]
try:
    runpy.run_path("train.py", run_name="__main__")
except SystemExit as end:
    print("exit", end.code)
heavy = ("torch", "lightning", "datasets", "transformers")
print("heavy:", sorted(m for m in heavy if m in sys.modules))
"""


def probe_train(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Its stdout holds ``exit <code>`` and ``heavy: [<imported>]``; stderr what it said."""
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
