"""Files a user expects beside the code, and pre-commit hooks that need no downloads."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT


def test_licence_and_citation_match_the_package() -> None:
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()
    assert 'license = { text = "Apache-2.0" }' in (REPO_ROOT / "pyproject.toml").read_text()
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert citation["license"] == "Apache-2.0"
    assert "2408.14572" in str(citation["preferred-citation"])


def test_every_pre_commit_hook_runs_an_installed_tool() -> None:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    bin_dir = Path(sys.executable).parent
    for repo in config["repos"]:
        assert repo["repo"] == "local", repo["repo"]  # no hook repository to fetch
        for hook in repo["hooks"]:
            tool = hook["entry"].split()[0]
            assert hook["language"] == "system"
            assert (bin_dir / tool).exists() or shutil.which(tool), (hook["id"], tool)
