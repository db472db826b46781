"""The registry imports a ``_target_``'s module only when it is trusted.

Importing a module runs it, and a config may come from a file someone else wrote (the
README's adapter-loading recipe builds the saved ``model`` node). Each probe module here
writes a marker file when imported, so "nothing ran" is observed, not assumed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from curlora.checks.targets import TRUST_VARIABLE, UntrustedTarget
from curlora.models.backbone import model_source
from curlora.registry import build
from curlora.strategies import Strategy, build_strategy
from curlora.strategies.sequential import Sequential

PROBE = "curlora_registry_probe"


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable module ``PROBE`` (a Strategy subclass inside); yields its marker."""
    marker = tmp_path / "imported"
    (tmp_path / f"{PROBE}.py").write_text(
        "from pathlib import Path\n"
        "from curlora.strategies.sequential import Sequential\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "class Mine(Sequential):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(PROBE, None)
    yield marker
    sys.modules.pop(PROBE, None)


def test_an_untrusted_target_is_refused_before_its_module_is_imported(probe: Path) -> None:
    with pytest.raises(UntrustedTarget, match=rf"strategy _target_='{PROBE}.Mine' is refused"):
        build_strategy({"_target_": f"{PROBE}.Mine"})
    with pytest.raises(ValueError, match=rf"model _target_='{PROBE}.Mine' is refused.*GGUFModel"):
        model_source({"_target_": f"{PROBE}.Mine", "name": "x"})
    assert not probe.exists() and PROBE not in sys.modules


def test_the_zen_of_python_is_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """The reported case: ``model._target_: this.s`` (importing ``this`` prints)."""
    sys.modules.pop("this", None)
    with pytest.raises(UntrustedTarget, match=r"model _target_='this\.s' is refused"):
        model_source({"_target_": "this.s"})
    assert "this" not in sys.modules and "Zen" not in capsys.readouterr().out


def test_a_prefix_the_user_trusts_is_built(probe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUST_VARIABLE, f"{PROBE}.")
    built = build_strategy({"_target_": f"{PROBE}.Mine"})
    assert isinstance(built, Strategy) and type(built).__name__ == "Mine"
    assert probe.read_text() == "ran"


def test_the_project_own_targets_still_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    assert type(build_strategy({"_target_": "curlora.strategies.sequential.Sequential"})) is (
        Sequential
    )
    # A typo inside the kind's own package is project code: the import error is reported.
    with pytest.raises(ValueError, match="cannot be imported"):
        build({"_target_": "curlora.strategies.nope.Nope"}, Strategy, "strategy",
              "curlora.strategies")  # fmt: skip
