"""Which ``_target_``s a config read from a file may name: the one allowlist of the project.

A config the user types (the command line, the YAML files of ``configs/``) is theirs to
run. A config *read back* from a run directory (``run_config.yaml`` on ``resume=``) may come
from someone else, and Hydra's ``instantiate`` calls whatever its ``_target_``s name, with
the arguments beside them: ``pathlib.Path.write_text`` or ``torch.load`` nested inside
``optimizer.weight_decay`` would run, and the run would exit 0 with unchanged numbers.
So such a config is checked here, on its raw tree, before anything is imported or built:

- every ``_target_`` must be one that the shipped configs (``configs/**.yaml``) name (the
  project's methods, strategies, data and model sources, callbacks, Lightning's ``Trainer``
  and ``CSVLogger``, ``torch.optim.AdamW``) or one of the optimizers of ``torch.optim``
  in :data:`LIBRARY_TARGETS`; a new method or strategy (one file + one YAML in
  ``configs/``) is allowed by its YAML;
- targets under a prefix listed in the environment variable ``CURLORA_TRUSTED_TARGETS``
  (comma-separated, e.g. ``mylab.,tests.``) are allowed too: code of one's own that a run
  named on its command line. It is set by whoever runs the command, never by a file;
- no value may hold an interpolation (``${...}``): a run saves its config resolved, and an
  interpolation is evaluated while the config is read (``oc.decode`` can build a new
  ``_target_`` after this check).

Anything else is refused with one line naming the key path (``optimizer.weight_decay._target_``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

TRUST_VARIABLE = "CURLORA_TRUSTED_TARGETS"
LIBRARY_TARGETS = frozenset(
    f"torch.optim.{name}"
    for name in ("SGD", "Adam", "AdamW", "Adagrad", "Adamax", "NAdam", "RAdam", "RMSprop")
)
"""Library classes a run may name on its command line besides those the configs name
(``optimizer._target_=torch.optim.SGD``): constructors that take parameters and numbers."""


class UntrustedTarget(ValueError):
    """A config read from a file names something this project does not run; says where."""


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key path, value)`` for every leaf and every ``_target_`` of a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value  # whatever it holds: a string is the only valid form
            else:
                yield from _walk(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
    else:
        yield path, node


@functools.cache
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` the shipped YAML files name (read as plain YAML: nothing built)."""
    root = resources.files("curlora") / "configs"
    found: set[str] = set()
    for path in Path(str(root)).rglob("*.yaml"):
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        found.update(
            value
            for key, value in _walk(tree)
            if key.rsplit(".", 1)[-1] == "_target_" and isinstance(value, str)
        )
    return frozenset(found)


def trusted_prefixes() -> tuple[str, ...]:
    raw = os.environ.get(TRUST_VARIABLE, "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def is_allowed(target: str) -> bool:
    return (
        target in shipped_targets()
        or target in LIBRARY_TARGETS
        or any(target.startswith(prefix) for prefix in trusted_prefixes())
    )


def check_targets(tree: Any, source: str) -> None:
    """Raise UntrustedTarget for the first ``_target_`` outside the allowlist, or the first
    interpolation, in the raw (unresolved, uninstantiated) ``tree`` read from ``source``."""
    for path, value in _walk(tree):
        if isinstance(value, str) and "${" in value:
            raise UntrustedTarget(
                f"{source}: {path}={value!r} is an interpolation; a saved config holds "
                "resolved values only, so this file was edited: refused"
            )
        if path.rsplit(".", 1)[-1] != "_target_":
            continue
        if not isinstance(value, str) or not is_allowed(value):
            raise UntrustedTarget(
                f"{source}: {path}={value!r} is not a class this project builds from a saved "
                "config (valid: the _target_s of configs/, torch.optim optimizers, or a prefix "
                f"listed in ${TRUST_VARIABLE} for code of your own): refused"
            )
