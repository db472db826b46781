"""One rule for finding an implementation from a config: its ``_target_``.

Methods (``configs/method``), strategies (``configs/strategy``), model sources
(``configs/model``) and data sources (inside ``configs/data``) are all built the same way:
the node's ``_target_`` names a class, the class must derive from the kind's base class,
every other key must be one of its constructor's arguments, and building it runs its own
checks (``__post_init__``/``__init__``), so a bad value fails here, by name, before any
model or data loads. Adding an implementation is one class and one YAML; no table to edit.
The target's module is imported only when it is trusted (:func:`may_import`): importing a
module runs it, and a config may come from a file someone else wrote.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any, TypeVar

import hydra.utils
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from curlora.checks.targets import TRUST_VARIABLE, UntrustedTarget, is_allowed

T = TypeVar("T")


def may_import(target: str, package: str) -> bool:
    """Whether importing ``target``'s module runs only code this project trusts.

    Trusted: a module of the kind's own package (project code), a ``_target_`` the shipped
    configs name or a ``torch.optim`` optimizer, or a prefix listed in
    ``$CURLORA_TRUSTED_TARGETS`` (``curlora.checks.targets``). A config can come from a file
    someone else wrote (a run directory, an adapter's run), and importing a module runs it.
    """
    return target.startswith(f"{package}.") or is_allowed(target)


def available(base: type, package: str) -> list[str]:
    """``_target_`` paths of the ``base`` subclasses defined in ``package`` (for messages)."""
    found = []
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(getattr(root, "__path__", [])):
        module = importlib.import_module(f"{package}.{info.name}")
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, base)
                and obj is not base
                and obj.__module__ == module.__name__
            ):
                found.append(f"{obj.__module__}.{obj.__qualname__}")
    return sorted(found)


def accepted_keys(cls: type) -> set[str] | None:
    """The keys ``cls`` can be built with (None: it takes any keyword)."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init}
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n for n, p in parameters.items() if n != "self" and p.kind in kinds}


def build(cfg: Any, base: type[T], kind: str, package: str, **extra: Any) -> T:
    """Build the ``base`` subclass that ``cfg["_target_"]`` names (see the module docstring).

    ``cfg``: a DictConfig or mapping, or an already built object (returned as is).
    ``extra``: arguments the caller supplies (not in the config). Raises ValueError naming
    the kind, the key and what is valid; nothing is imported beyond the target's module,
    and that only when :func:`may_import` allows it (UntrustedTarget, a ValueError, if not).
    """
    if isinstance(cfg, base):
        return cfg
    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as error:
            raise ValueError(f"{kind} config cannot be resolved: {error}") from None
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{kind} config must be a mapping, got {type(cfg).__name__}")
    cfg = dict(cfg)
    target = cfg.pop("_target_", None)
    hint = f"valid {kind} targets: {available(base, package)}"
    if not isinstance(target, str) or "." not in target:
        raise ValueError(
            f"the {kind} config has no _target_ 'module.Class' (keys: {sorted(cfg)}); {hint}"
        )
    if not may_import(target, package):  # checked first: the import itself runs code
        raise UntrustedTarget(
            f"{kind} _target_='{target}' is refused: it is not a class of {package}, not one "
            f"that configs/ names, and not under a prefix listed in ${TRUST_VARIABLE} (code of "
            f"your own); {hint}"
        )
    try:
        cls = hydra.utils.get_object(target)
    except Exception as error:  # ImportError or AttributeError, wrapped by Hydra
        cause = error.__cause__ or error
        raise ValueError(
            f"{kind} _target_='{target}' cannot be imported ({cause}); {hint}"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        article = "an" if base.__name__[0] in "AEIOU" else "a"
        raise ValueError(
            f"{kind} _target_='{target}' is not {article} {base.__name__} subclass; {hint}"
        )
    accepted = accepted_keys(cls)
    unknown = sorted(set(cfg) - accepted) if accepted is not None else []
    if unknown:
        label = cfg.get("name", cls.__name__)
        raise ValueError(
            f"{kind} '{label}': unknown key(s) {unknown}; valid keys: {sorted(accepted or [])}"
        )
    try:
        return cls(**cfg, **extra)
    except (TypeError, ValueError) as error:
        message = str(error)
        if not message.startswith((f"{kind} ", f"{kind}.", "method ")):
            message = f"{kind} {cls.__name__}: {message}"
        raise ValueError(message) from None
