"""A run config read back from a file may come from someone else: what it may not hold.

:mod:`curlora.run.guard` reads ``run_config.yaml`` (on ``resume=``, a run continued in place,
and the README's reload recipe) and treats it as data. Two checks of that file live here:

- **Its YAML, before it is parsed** (:func:`screen_saved_yaml`). A saved config is written
  by ``OmegaConf.to_yaml`` from a plain container: a few KiB, five levels deep, and never
  an anchor (``&a``) or alias (``*a``), since every node is a fresh object. An alias
  expands while the file is read: eight nested levels of ten aliases each turn a 4.6 KB
  file into 10^8 nodes, and the resume hangs. So a file over :data:`MAX_CONFIG_BYTES`,
  one with an anchor or alias, or one nested deeper than :data:`MAX_CONFIG_DEPTH` is
  refused by name before YAML builds anything.
- **No place on the receiver's disk** (:func:`refuse_local_paths`). The data and model
  sources read what their config names; a received config naming
  ``/home/you/private.csv`` would train and evaluate on the receiver's file and write its
  per-example correctness into ``outcomes.json`` and the logger, which the receiver may
  send back. Refused, one line naming the key, its value and the file:

  - ``data_files`` (a data source's local files: a path, a list, or a mapping of them) and
    ``gguf_path`` (a local GGUF file) whenever set: they only ever name local files;
  - ``path`` (a ``datasets`` dataset) and ``name_or_path`` (a ``transformers`` model) that
    are not a Hub id: absolute, starting with ``~`` or ``.``, holding ``..``, or naming
    something that exists relative to the working directory (both libraries load an
    existing file or folder as local, whatever it is called);
  - a ``path`` naming one of ``datasets``' packaged builders (``csv``, ``json``,
    ``parquet``, ...): without ``data_files`` it reads the data files it finds in the
    working directory.

  Hub ids (``nyu-mll/glue``, ``glue``, ``mistralai/Mistral-7B-v0.3``) pass, and so do the
  offline sources, which read the project's cache by package name and version, never by a
  path. Whoever runs the command may allow such values with ``CURLORA_TRUST_RECEIVED_PATHS=1``
  (a run of their own whose files they chose), never a file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from curlora.checks.config import ConfigError

# The opt-in to the local files and folders a received config names; set by whoever runs
# the command, never by a file (as CURLORA_TRUST_REMOTE_CODE for a model's code).
PATHS_VARIABLE = "CURLORA_TRUST_RECEIVED_PATHS"
# A saved config is a few KiB (the largest shipped data config, data=standard_cl, saves
# under 10 KiB): anything larger is not one, and is refused before it is read whole.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_TEXT = "1 MiB"
# A saved config nests five levels (data.task_specs.<task>.source.data_files); the cap only
# keeps a hostile file from reaching the recursive YAML composer.
MAX_CONFIG_DEPTH = 32
# Keys that name local files whenever they are set (the data sources' data_files, the GGUF
# model's gguf_path) and keys that name a Hub id or, when it looks like one, a local place.
FILE_KEYS = ("data_files", "gguf_path")
NAME_KEYS = ("path", "name_or_path")

_OPENS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSES = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def screen_saved_yaml(raw: bytes, path: Path) -> str:
    """The text of the saved config ``raw`` (read from ``path``, at most one byte more than
    :data:`MAX_CONFIG_BYTES`), after the checks of the module docstring; ConfigError naming
    ``path`` otherwise (also when its root is not a mapping). Parsing events builds
    nothing, so an alias is never expanded."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path} is refused: it is larger than {MAX_CONFIG_TEXT}; a saved run config is a "
            "few KiB, so this is not one"
        )
    text = raw.decode("utf-8")  # UnicodeDecodeError: the caller's "cannot be read"
    depth = 0
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
    for index, event in enumerate(yaml.parse(text, Loader=loader)):
        if index == 2 and not isinstance(event, yaml.MappingStartEvent | yaml.StreamEndEvent):
            # stream start, document start, then the root: a saved config is a mapping
            raise ConfigError(f"{path} is not a run config of this project")
        if getattr(event, "anchor", None) is not None:
            raise ConfigError(
                f"{path} is refused: line {event.start_mark.line + 1} holds a YAML anchor or "
                "alias, which a saved run config never has (an alias is expanded while the "
                "file is read: a small file can become an enormous config)"
            )
        depth += isinstance(event, _OPENS) - isinstance(event, _CLOSES)
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{path} is refused: line {event.start_mark.line + 1} nests deeper than "
                f"{MAX_CONFIG_DEPTH} levels; a saved run config nests five"
            )
    return text


def _leaves(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf under ``node`` (list items as ``key[i]``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, f"{where}[{index}]")
    else:
        yield where, node


@functools.cache
def _packaged_builders() -> frozenset[str]:
    """``datasets``' own builders (``csv``, ``json``, ...): a ``path`` naming one reads local
    files. The table is private to ``datasets``; its names of today back it up."""
    try:
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

        return frozenset(_PACKAGED_DATASETS_MODULES)
    except ImportError:  # pragma: no cover - a datasets that moved its table
        return frozenset(("arrow", "csv", "json", "pandas", "parquet", "text", "xml"))


def local_place(key: str, value: Any) -> bool:
    """Whether ``value`` of a :data:`NAME_KEYS` key (its last part: ``path``) is read from
    this machine's disk rather than fetched by Hub id (see the module docstring)."""
    if value is None or isinstance(value, dict | list):
        return False
    text = str(value)
    if not text:
        return False  # the source itself refuses an empty id
    if text.startswith(("/", "~", ".")) or ".." in text or os.path.isabs(text):
        return True
    if key == "path" and text in _packaged_builders():
        return True
    try:
        return os.path.lexists(text)
    except (OSError, ValueError):  # a NUL byte, a name too long: no Hub id either
        return True


def _local_values(node: Any, where: str, skip: Collection[str]) -> Iterator[tuple[str, Any, str]]:
    """``(dotted key, value, what is valid there)`` for each value under ``node`` that names
    a local place."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _local_values(item, f"{where}[{index}]", skip)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        inner = f"{where}.{key}" if where else str(key)
        if not where and key in skip:
            continue  # taken from the command, never from the file
        if key in FILE_KEYS and value not in (None, "", {}, []):
            yield (*next(iter(_leaves(value, inner)), (inner, value)), "null")
        elif key in NAME_KEYS and local_place(str(key), value):
            yield inner, value, "a Hugging Face Hub id"
        else:
            yield from _local_values(value, inner, skip)


def refuse_local_paths(saved: DictConfig, path: Path, skip: Collection[str] = ()) -> None:
    """ConfigError naming the first key of ``saved`` (read from ``path``) whose value names a
    file or folder on this machine (see the module docstring), unless
    ``CURLORA_TRUST_RECEIVED_PATHS=1``. Top-level keys in ``skip`` are not looked at: they
    come from the command (``curlora.run.guard.NOT_EXPERIMENT``)."""
    if os.environ.get(PATHS_VARIABLE) == "1":
        return
    tree = OmegaConf.to_container(saved, resolve=False)  # checked: no interpolation in it
    for key, value, valid in _local_values(tree, "", skip):
        raise ConfigError(
            f"{key}={value!r} in {path} is refused: it names a file or folder on this machine, "
            f"and a received run must not read your files (valid: {valid}); if you chose it, "
            f"set {PATHS_VARIABLE}=1 where you run the command"
        )
