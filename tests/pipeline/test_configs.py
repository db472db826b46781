"""Every option of every config group composes and resolves."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONFIG_DIR, compose_run_config

GROUPS = [
    "method",
    "head",
    "model",
    "data",
    "strategy",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "experiment",
    "debug",
    "order",
    "probe",
    "retention",
]


def _options() -> list[tuple[str, str]]:
    return [
        (group, path.stem)
        for group in GROUPS
        for path in sorted((CONFIG_DIR / group).glob("*.yaml"))
    ]


@pytest.mark.parametrize(("group", "option"), _options(), ids=lambda v: str(v))
def test_option_composes_and_resolves(group: str, option: str, tmp_path: Path) -> None:
    base = [] if group in {"experiment", "debug"} else ["model=tiny_llama", "data=synthetic"]
    cfg = compose_run_config(tmp_path, [*base, f"{group}={option}"])
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["tasks"], "a composed config always names its task sequence"
    assert isinstance(container["rank"], int)


def test_all_groups_have_options() -> None:
    for group in GROUPS:
        if group in {"experiment", "debug"}:
            continue
        assert list((CONFIG_DIR / group).glob("*.yaml")), group
