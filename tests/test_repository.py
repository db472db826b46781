"""Files a user expects beside the code, and pre-commit hooks that need no downloads."""

from __future__ import annotations

import yaml

from tests.conftest import REPO_ROOT


def test_licence_and_citation_match_the_package() -> None:
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()
    assert 'license = { text = "Apache-2.0" }' in (REPO_ROOT / "pyproject.toml").read_text()
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert citation["license"] == "Apache-2.0"
    assert "2408.14572" in str(citation["preferred-citation"])


def test_pre_commit_hooks_need_no_hook_repository_and_match_the_dev_pins() -> None:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    for repo in config["repos"]:
        assert repo["repo"] == "local", repo["repo"]  # nothing to clone from GitHub
        for hook in repo["hooks"]:
            assert hook["language"] == "python", hook["id"]
            for requirement in hook["additional_dependencies"]:
                assert "==" in requirement and f'"{requirement}"' in pyproject, requirement
