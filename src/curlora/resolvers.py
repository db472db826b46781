"""OmegaConf resolvers the configs use; registered on import of ``curlora``.

- ``${curlora.cwd:}``: the directory the command was started in, as an absolute path.
  ``paths.root_dir`` uses it instead of ``${hydra:runtime.cwd}``, which only resolves inside
  a job: Hydra's sweeper resolves ``hydra.sweep.dir`` (built from ``paths.log_dir``) before
  any job exists, so ``${hydra:...}`` there fails with "HydraConfig was not set".
- ``${curlora.run_tag:${method},${strategy},${seed}}``: a run's name by what defines it:
  ``curlora_r16_s1311``, ``head_only_s1311`` (no rank for methods without one),
  ``lora_r8_ewc_s3`` (the strategy when it is not plain sequential training).
- ``${curlora.run_name:${method},${strategy},${seed},${optimizer.lr},${tasks},${data.tasks}}``:
  the W&B run name, the tag above plus the task order (when it is not the data config's)
  and the learning rate: ``curlora_r16_lr3e-3_s1311``, ``lora_r8_ewc_reversed_lr1e-3_s3``;
  ``${curlora.run_setting:...}`` (same arguments) is it without the seed (the W&B job
  type: runs that differ only by seed), ``${curlora.run_tags:...}`` its parts as tags.
- ``${curlora.mul:a,b}``: a · b, e.g. LoRA's ``lora_alpha = alpha · rank`` so that its update
  scale ``lora_alpha / rank`` is the top-level ``alpha``, as CURLoRA's is.
- ``${curlora.safe_name:<text>}``: ``text`` made safe as one path component (no ``/``, at
  most 120 characters; a longer one keeps a hash of the rest), for names built from
  overrides such as ``model.name_or_path=org/name``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import ListConfig, OmegaConf

MAX_NAME = 120


def strategy_tag(strategy: Mapping[str, Any] | None) -> str | None:
    """``ewc`` for ``curlora.strategies.ewc.EWC``; None for sequential training or none."""
    if not strategy:
        return None
    target = str(strategy.get("_target_", ""))
    parts = target.split(".")
    name = str(strategy.get("name") or (parts[-2] if len(parts) >= 2 else target))
    return None if name in ("", "sequential") else name


def method_parts(method: Mapping[str, Any], strategy: Mapping[str, Any] | None) -> list[str]:
    """``[<method>, r<rank>, <strategy>]``, the rank only for methods that have one and the
    strategy only when it is not plain sequential training."""
    parts = [str(method.get("name") or "method")]
    if method.get("rank") is not None:
        parts.append(f"r{method.get('rank')}")
    tag = strategy_tag(strategy)
    if tag:
        parts.append(tag)
    return parts


def run_tag(method: Mapping[str, Any], strategy: Mapping[str, Any] | None, seed: Any) -> str:
    """``<method>[_r<rank>][_<strategy>]_s<seed>``; see the module docstring."""
    return "_".join([*method_parts(method, strategy), f"s{seed}"])


def order_tag(tasks: Any, default_tasks: Any) -> str | None:
    """None for the data config's own order; ``reversed``, ``rotated`` (configs/order), or
    the first three letters of each task (``dbp-ama-agn-yah``)."""
    order, default = [str(t) for t in tasks or []], [str(t) for t in default_tasks or []]
    if not order or order == default:
        return None
    if order == default[::-1]:
        return "reversed"
    if order == [*default[1:], *default[:1]]:
        return "rotated"
    return "-".join(t[:3] for t in order)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lr_tag(lr: Any) -> str:
    """``lr3e-3`` from 0.003, ``lr2.5e-4`` from 0.00025; ``lr<value>`` for anything else.

    The name is resolved with the rest of the config, before the config checks run: a
    value that is not a finite number (``optimizer.lr=abc``, ``inf``, a list) must not fail
    here, or the error would name ``logger.wandb.name`` instead of ``optimizer.lr``, whose
    own check then refuses it by name."""
    if not _is_number(lr) or not math.isfinite(lr):
        return f"lr{lr}"
    mantissa, exponent = f"{float(lr):.2e}".split("e")
    return f"lr{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def mul(a: Any, b: Any) -> Any:
    """``a · b`` for two numbers; otherwise ``a`` unchanged, for the same reason as in
    :func:`lr_tag`: ``rank=abc`` must be refused as ``rank``, not as the method key this
    feeds (``'abc' * 2.0`` fails while resolving, ``'abc' * 2`` repeats the text)."""
    return a * b if _is_number(a) and _is_number(b) else a


def run_parts(
    method: Mapping[str, Any],
    strategy: Mapping[str, Any] | None,
    seed: Any,
    lr: Any = None,
    tasks: Any = None,
    default_tasks: Any = None,
) -> list[str]:
    """What varies between runs, in name order: method, rank, strategy, order, lr, seed."""
    parts = [
        *method_parts(method, strategy),
        order_tag(tasks, default_tasks),
        lr_tag(lr) if lr is not None else None,
        f"s{seed}",
    ]
    return [p for p in parts if p]


def run_name(*args: Any) -> str:
    """``<method>[_r<rank>][_<strategy>][_<order>]_lr<lr>_s<seed>``; see the docstring."""
    return "_".join(run_parts(*args))


def run_setting(*args: Any) -> str:
    """The run name without the seed (at most 64 characters, W&B's job-type limit)."""
    return "_".join(run_parts(*args)[:-1])[:64]


def safe_name(text: Any) -> str:
    """One path component from ``text``: separators replaced, length capped with a hash."""
    name = re.sub(r"[/\\\s]+", "_", str(text)).strip("._") or "run"
    if len(name) > MAX_NAME:
        digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
        name = f"{name[: MAX_NAME - 9]}-{digest}"
    return name


def register_resolvers() -> None:
    """Register the ``curlora.*`` resolvers (idempotent)."""
    resolvers = {
        "curlora.cwd": lambda: os.getcwd(),
        "curlora.run_tag": run_tag,
        "curlora.run_name": run_name,
        "curlora.run_setting": run_setting,
        "curlora.run_tags": lambda *args: ListConfig(run_parts(*args)),
        "curlora.safe_name": safe_name,
        "curlora.mul": mul,
        # task orders (configs/order): a list reversed, or rotated by one to the left
        "curlora.reversed": lambda items: ListConfig(list(reversed(list(items)))),
        "curlora.rotated": lambda items: ListConfig([*list(items)[1:], *list(items)[:1]]),
    }
    # Lists come back as ListConfig: OmegaConf.resolve (Hydra's `--cfg job --resolve`)
    # cannot put a plain Python list into the node that held the interpolation.
    for name, function in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
