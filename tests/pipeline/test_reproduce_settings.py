"""The machine settings of a grid (README "Reproduction": ``reproduce.workers=2``, where
the results and the report go) are accepted for every grid in ``configs/reproduce``."""

from __future__ import annotations

import pytest

from curlora.grid.guard import check_grid
from curlora.reproduce import MACHINE_KEYS, compose
from tests.conftest import CONFIG_DIR

GRIDS = sorted(p.stem for p in (CONFIG_DIR / "reproduce").glob("*.yaml"))
VALUES = {
    "dir": "/tmp/g",
    "results_dir": "/tmp/g/r",
    "report_dir": "/tmp/g/p",
    "readme": "/tmp/g/README.md",
    "workers": 2,
}


def test_every_machine_key_has_a_value_here() -> None:
    assert set(VALUES) == set(MACHINE_KEYS)


@pytest.mark.parametrize("grid", GRIDS)
def test_every_grid_takes_every_machine_setting(grid: str) -> None:
    cfg = compose([f"reproduce={grid}", *(f"reproduce.{k}={v}" for k, v in VALUES.items())])
    assert {k: cfg.reproduce[k] for k in MACHINE_KEYS} == VALUES
    # Every key of every shipped grid passes the grid's checks (curlora.grid.settings), as
    # shipped and with these settings: the checks refuse only what could not run.
    check_grid(cfg)
    check_grid(compose([f"reproduce={grid}"]))


def test_a_typo_in_a_grid_setting_lists_the_grids_keys() -> None:
    from curlora.grid.guard import GridRefused

    with pytest.raises(GridRefused, match=r"'wokers' is not a key of reproduce; valid keys: "):
        compose(["reproduce=tiny", "reproduce.wokers=2"])
