"""Which ``_target_``s a config read from a file may name, and where: the one allowlist.

A config the user types (the command line, the YAML files of ``configs/``) is theirs to
run. A config *read back* from a run directory (``run_config.yaml`` on ``resume=``) may come
from someone else, and Hydra's ``instantiate`` calls whatever its ``_target_``s name, with
the arguments beside them, at any depth of the nodes it builds (``data``, ``optimizer``,
``scheduler``, ``trainer``, every ``callbacks.*``): ``pathlib.Path.write_text`` or
``torch.load`` nested inside ``optimizer.weight_decay`` would run, and so would one of the
project's own classes nested where nothing builds it on purpose (a logger inside a data
source's arguments, writing wherever its ``run_dir`` says). So such a config is checked
here, on its raw tree, before anything is imported or built:

- every ``_target_`` must stand at a key path where the shipped configs
  (``configs/**.yaml``) name it: their place is the config group's directory (or its
  ``# @package`` directive) plus the key inside the YAML, with the names a user chooses
  read as any name (:data:`NAME_SLOTS`: ``data.task_specs.<task>.source``,
  ``callbacks.<callback>``, ``logger.<logger>``). So ``curlora.loggers.WandbLogger`` is
  allowed at ``logger.<logger>`` and nowhere else, a method class at ``method``, a data
  source at ``data.task_specs.<task>.source``. A new method or strategy (one file + one
  YAML in ``configs/``) is allowed by its YAML, at the place its YAML puts it;
- the optimizers of ``torch.optim`` in :data:`LIBRARY_TARGETS` may stand where the shipped
  configs name one (``optimizer``);
- targets under a prefix listed in the environment variable ``CURLORA_TRUSTED_TARGETS``
  (comma-separated, e.g. ``mylab.,tests.``) are allowed at any place where the shipped
  configs name a ``_target_``: code of one's own standing in for a method, strategy,
  callback, ... that a run named on its command line. It is set by whoever runs the
  command, never by a file;
- no value may hold an interpolation (``${...}``): a run saves its config resolved, and an
  interpolation is evaluated while the config is read (``oc.decode`` can build a new
  ``_target_`` after this check).

Anything else is refused with one line naming the key path
(``optimizer.weight_decay._target_``) and where that target may stand.

:func:`is_allowed` asks only whether a name is allowed anywhere: ``curlora.registry`` uses
it before importing a target's module, wherever the config came from.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping
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
NAME_SLOTS: Mapping[tuple[str, ...], str] = {
    ("data", "task_specs"): "<task>",
    ("callbacks",): "<callback>",
    ("logger",): "<logger>",
    ("hydra", "callbacks"): "<callback>",
}
"""Maps whose keys are names a user chooses (a task, a callback, a logger): a class the
shipped configs place under one name (``callbacks.forgetting``) may stand under any
(``callbacks.mine``), and the key path's segment is shown as the label."""
ITEM = 0
"""A list position in a place (any index: a place never depends on which item it is). Dict
keys are always strings here, so an item never reads as a key."""

Key = str | int
Place = tuple[Key, ...]


class UntrustedTarget(ValueError):
    """A config read from a file names something this project does not run; says where."""


class ShippedTargets(frozenset[str]):
    """Every ``_target_`` the shipped configs name (a set of names, as :func:`is_allowed`
    asks), with ``places``: for each place (a key path of a composed config, chosen names
    as :data:`NAME_SLOTS` labels), the targets the shipped configs name there."""

    places: Mapping[Place, frozenset[str]]

    def __new__(cls, places: Mapping[Place, frozenset[str]]) -> ShippedTargets:
        made = super().__new__(cls, (t for targets in places.values() for t in targets))
        made.places = places
        return made


def _walk(node: Any, path: Place = ()) -> Iterator[tuple[Place, Any]]:
    """``(key path, value)`` for every leaf and every ``_target_`` of a YAML tree; keys as
    strings, list positions as ints (so a key that looks like a path, ``"a.b"``, stays one
    key and cannot pass for a nested place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = (*path, str(key))
            if key == "_target_":
                yield where, value  # whatever it holds: a string is the only valid form
            else:
                yield from _walk(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))
    else:
        yield path, node


def dotted(path: Place) -> str:
    """``optimizer.weight_decay._target_``, ``tasks[3]._target_``: a key path as shown."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def place_of(path: Place) -> Place:
    """The place of a node's key path: chosen names (:data:`NAME_SLOTS`) as their label and
    list positions as :data:`ITEM`, so that places compare by equality."""
    place: list[Key] = []
    for key in path:
        label = NAME_SLOTS.get(tuple(place)) if isinstance(key, str) else None
        place.append(ITEM if isinstance(key, int) else (label or key))
    return tuple(place)


def shown(place: Place) -> str:
    """``data.task_specs.<task>.source``, ``trainer.plugins[]``: a place as a refusal names
    it (``the top`` for the config itself)."""
    text = ""
    for key in place:
        text += "[]" if isinstance(key, int) else (f".{key}" if text else key)
    return text or "the top"


def package_of(relative: Path, text: str) -> tuple[str, ...]:
    """Where a shipped YAML lands in the composed config: its ``# @package`` directive
    (``_global_``: the top; ``_group_``/``_here_``: its group) or, without one, its config
    group (the directory below ``configs/``; the top for ``train.yaml``)."""
    group = tuple(relative.parent.parts)
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break  # Hydra reads the directive from the comment block at the top only
        match = re.fullmatch(r"#\s*@package\s+(\S+)", stripped)
        if match:
            head, *rest = match.group(1).split(".")
            base = {"_global_": (), "_group_": group, "_here_": group}.get(head, (head,))
            return (*base, *rest)
    return group


@functools.cache
def shipped_targets() -> ShippedTargets:
    """Every ``_target_`` the shipped YAML files name, and where (read as plain YAML:
    nothing built)."""
    root = Path(str(resources.files("curlora") / "configs"))
    places: dict[Place, set[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        package = package_of(path.relative_to(root), text)
        for key_path, value in _walk(yaml.safe_load(text)):
            if key_path and key_path[-1] == "_target_" and isinstance(value, str):
                node = place_of((*package, *key_path[:-1]))
                places.setdefault(node, set()).add(value)
    return ShippedTargets({place: frozenset(targets) for place, targets in places.items()})


def trusted_prefixes() -> tuple[str, ...]:
    raw = os.environ.get(TRUST_VARIABLE, "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def is_trusted(target: str) -> bool:
    return any(target.startswith(prefix) for prefix in trusted_prefixes())


def is_allowed(target: str) -> bool:
    """Whether ``target`` may be built at some place (:func:`allowed_places`)."""
    return target in shipped_targets() or target in LIBRARY_TARGETS or is_trusted(target)


def allowed_places(target: str) -> list[Place]:
    """The places where a config read from a file may name ``target`` (module docstring)."""
    places = shipped_targets().places
    if is_trusted(target):
        return list(places)
    library = target in LIBRARY_TARGETS
    return [
        place
        for place, names in places.items()
        if target in names or (library and not names.isdisjoint(LIBRARY_TARGETS))
    ]


def _refusal(source: str, path: Place, node: Place, target: Any) -> str:
    """The one line that refuses ``target`` at ``path`` (whose node is at place ``node``):
    where it may stand, if anywhere."""
    where = f"{source}: {dotted(path)}={target!r}"
    places = allowed_places(target) if isinstance(target, str) else []
    if not places:
        return (
            f"{where} is not a class this project builds from a saved config (valid: the "
            "_target_s of configs/, torch.optim optimizers, or a prefix listed in "
            f"${TRUST_VARIABLE} for code of your own): refused"
        )
    listed = ", ".join(sorted(shown(p) for p in places))
    return (
        f"{where} is refused at {shown(node)}: a saved config may "
        f"name it only where configs/ does ({listed})"
    )


def check_targets(tree: Any, source: str) -> None:
    """Raise UntrustedTarget for the first ``_target_`` outside the allowlist or at a place
    where the shipped configs do not name it, or the first interpolation, in the raw
    (unresolved, uninstantiated) ``tree`` read from ``source``.

    A tree with a ``_target_`` of its own is one object's config, an adapter's
    ``adapter_config.json``: its method's, checked as the ``method`` node (its only place);
    a run config has none at its top."""
    at: Place = ("method",) if isinstance(tree, dict) and "_target_" in tree else ()
    places = shipped_targets().places
    for path, value in _walk(tree):
        if isinstance(value, str) and "${" in value:
            raise UntrustedTarget(
                f"{source}: {dotted(path)}={value!r} is an interpolation; a saved config holds "
                "resolved values only, so this file was edited: refused"
            )
        if not path or path[-1] != "_target_":
            continue
        node = place_of((*at, *path[:-1]))
        if not (isinstance(value, str) and node in places and node in allowed_places(value)):
            raise UntrustedTarget(_refusal(source, path, node, value))
