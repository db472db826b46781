"""The rules a baseline's YAML and class follow (README, "Adding a baseline"), checked for
every YAML in ``configs/method`` and ``configs/strategy``; each failure says what to change.

Why these rules: the YAML is what a user reads and overrides, so it lists every setting
with a comment and the class's defaults; ``method=<file>`` must give runs named ``<file>``
(results, sweeps and reports group by that name); a class no YAML names cannot be run.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from typing import Any

import pytest
from omegaconf import OmegaConf

from curlora.adapters.base import AdapterMethod
from curlora.strategies.base import Strategy
from tests.conftest import REPO_ROOT
from tests.contract import kit

BASES = {
    "method": (AdapterMethod, "curlora.adapters"),
    "strategy": (Strategy, "curlora.strategies"),
}
# What the YAMLs interpolate from the root config (train.yaml's top-level keys).
ROOT = {"rank": 4, "alpha": 2.0, "seed": 7, "tasks": list(kit.TASKS)}


def resolved(kind: str, name: str) -> dict[str, Any]:
    node = OmegaConf.load(kit.CONFIGS / kind / f"{name}.yaml")
    root = OmegaConf.create({**ROOT, kind: node})
    return OmegaConf.to_container(root[kind], resolve=True)


def settings(cls: type) -> dict[str, Any]:
    """The class's settings and their defaults: dataclass init fields or ``__init__``'s."""
    if dataclasses.is_dataclass(cls):
        return {
            f.name: f.default_factory()
            if f.default_factory is not dataclasses.MISSING
            else f.default
            for f in dataclasses.fields(cls)
            if f.init
        }
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in parameters if p.kind in kinds}


BASELINES = [(kind, name) for kind in kit.KINDS for name in kit.discover(kind)]


@pytest.mark.parametrize(("kind", "name"), BASELINES, ids=lambda v: str(v))
def test_the_yaml_names_a_class_of_its_kind(kind: str, name: str) -> None:
    base, package = BASES[kind]
    cls = kit.target_class(kind, name)
    assert inspect.isclass(cls) and issubclass(cls, base), (
        f"configs/{kind}/{name}.yaml: _target_ must name a {base.__name__} subclass "
        f"(one file in src/{package.replace('.', '/')}/), got {cls!r}"
    )


@pytest.mark.parametrize(("kind", "name"), BASELINES, ids=lambda v: str(v))
def test_the_yaml_lists_every_setting_with_a_comment(kind: str, name: str) -> None:
    cls = kit.target_class(kind, name)
    path = kit.CONFIGS / kind / f"{name}.yaml"
    keys = [k for k in OmegaConf.load(path) if k != "_target_"]
    expected = list(settings(cls))
    assert set(keys) == set(expected), (
        f"{path.name}: the keys must be exactly {cls.__name__}'s settings (the YAML documents "
        f"them all); add {sorted(set(expected) - set(keys))}, remove "
        f"{sorted(set(keys) - set(expected))}"
    )
    lines = path.read_text().splitlines()
    for key in keys:
        i = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert i > 0 and lines[i - 1].startswith("#"), (
            f"{path.name}: put a comment line directly above '{key}:' saying what it does "
            "and why the value (the YAML is what users read)"
        )


@pytest.mark.parametrize(("kind", "name"), BASELINES, ids=lambda v: str(v))
def test_the_yaml_builds_with_the_class_defaults_and_its_name(kind: str, name: str) -> None:
    cls = kit.target_class(kind, name)
    raw = OmegaConf.load(kit.CONFIGS / kind / f"{name}.yaml")
    values = resolved(kind, name)
    defaults = settings(cls)
    if kind == "strategy":
        # A strategy's YAML repeats the constructor defaults (interpolated ones aside:
        # seed: ${seed}), so the documented value is the one the code uses.
        for key, value in values.items():
            if key == "_target_" or OmegaConf.is_interpolation(raw, key):
                continue
            assert defaults[key] == value, (
                f"{name}.yaml: {key}: {value!r} but {cls.__name__}.__init__ defaults to "
                f"{defaults[key]!r}; make the two agree"
            )
        built = cls(**{k: v for k, v in values.items() if k != "_target_"})
        label = built.name
    else:
        label = values["name"]
    assert label == name, (
        f"{name}.yaml builds a {kind} named {label!r}; runs are named after it, so set "
        f"{'name: ' + name + ' in the YAML' if kind == 'method' else 'name = ' + repr(name)}"
        f"{'' if kind == 'method' else ' on the class'} (or rename the file)"
    )


@pytest.mark.parametrize("kind", kit.KINDS)
def test_every_class_is_named_by_a_yaml(kind: str) -> None:
    base, package = BASES[kind]
    named = {str(OmegaConf.load(p)._target_) for p in (kit.CONFIGS / kind).glob("*.yaml")}
    root = importlib.import_module(package)
    unreachable = []
    for info in pkgutil.iter_modules(root.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
                path = f"{obj.__module__}.{obj.__qualname__}"
                if obj.__module__ == module.__name__ and path not in named:
                    unreachable.append(path)
    assert not unreachable, (
        f"no configs/{kind}/*.yaml names {unreachable} in _target_: add one YAML per class "
        "(a class without one cannot be run)"
    )


def _overridden_method_hooks() -> set[str]:
    """Public methods of ``AdapterMethod`` that some method in ``curlora.adapters`` overrides:
    the extension points in use, which a newcomer must be able to find."""
    root = importlib.import_module("curlora.adapters")
    for info in pkgutil.iter_modules(root.__path__):
        importlib.import_module(f"curlora.adapters.{info.name}")
    hooks, todo = set(), list(AdapterMethod.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        hooks |= {
            k
            for k in vars(cls)
            if not k.startswith("_")
            and callable(getattr(AdapterMethod, k, None))
            and not inspect.isclass(getattr(AdapterMethod, k))
        }
    return hooks


def test_every_method_hook_in_use_is_documented_where_a_newcomer_looks() -> None:
    hooks = _overridden_method_hooks()
    assert {"inject", "trainable_parameters", "validate"} <= hooks  # the discovery works
    base_doc = importlib.import_module("curlora.adapters.base").__doc__ or ""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### A method", 1)[1].split("\n### ", 1)[0]
    missing_doc = sorted(h for h in hooks if f"``{h}(" not in base_doc)
    missing_readme = sorted(h for h in hooks if f"`{h}" not in section)
    assert not missing_doc, (
        f"methods override {missing_doc} but the docstring of curlora/adapters/base.py does "
        "not list them under 'What a method overrides': add a line for each"
    )
    assert not missing_readme, f"README 'A method' does not name {missing_readme}: add them"


def test_heads_are_told_apart_by_identity_not_by_name() -> None:
    # strategies/base.py's head_param_ids: the contract does not fix how head parameters are
    # named, so nothing (code or the README's examples) filters on a "heads." prefix.
    root = REPO_ROOT
    pattern = re.compile(r"""(startswith\(\s*["']heads\.|["']heads\.["']\s+(not\s+)?in\s)""")
    offenders = [
        str(path.relative_to(root))
        for path in [root / "README.md", *sorted((root / "src" / "curlora").rglob("*.py"))]
        if pattern.search(path.read_text())
    ]
    assert not offenders, (
        f"{offenders} filter parameters by the name prefix 'heads.'; use "
        "curlora.strategies.base.head_param_ids (identity)"
    )


@pytest.mark.parametrize("kind", kit.KINDS)
def test_every_baseline_has_a_row_in_the_readme_table(kind: str) -> None:
    # README "Methods and strategies": one table per kind, one row per YAML (what a user
    # reads to choose), and no row for a baseline that no longer exists.
    section = (REPO_ROOT / "README.md").read_text().split("## Methods and strategies", 1)[1]
    table = section.split(f"| `{kind}` (", 1)[1].split("\n\n", 1)[0]
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M))
    yamls = set(kit.discover(kind))
    assert rows == yamls, (
        f"README's {kind} table: add rows for {sorted(yamls - rows)}, remove {sorted(rows - yamls)}"
    )
