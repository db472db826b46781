"""The method extension point: what is trainable in the backbone and how it is parameterised.

A method is a small dataclass built by Hydra from ``configs/method/<name>.yaml`` (its
``_target_`` is the registry: adding a method is one file here plus one YAML). Its fields are
the YAML's fields; constructing it is cheap (no model, no weights), so the same object
validates a config against layer shapes before anything heavy loads.

What a method overrides (everything else has a working default):

- ``validate(shapes)``: raise ValueError naming the config key, the value and what is valid.
- ``inject(model)``: replace modules in place (no freezing: ``apply_adapter`` freezes).
- ``trainable_parameters(model)``: (name, parameter) pairs that train; ``apply_adapter``
  freezes every other backbone parameter. Default: the adapter layers' own parameters
  (not their ``base_layer``'s); e.g. ``full``, TinyLoRA and O-LoRA override it.
- ``num_trainable(shapes)``: the trainable-parameter count implied by the Linear shapes.
- ``delta_factors(layer)``: (P, Q) with ΔW = P Q for one adapter layer (diagnostics).
- ``begin_task(model, task)`` / ``extra_loss(model)``: for methods that change with the
  task (O-LoRA: a new adapter per task and a penalty between them); no-ops by default.
- ``prepare_task(model, task, data)``: for methods that read the task's data before it
  trains (InfLoRA: a frozen factor from the task's input subspace); a no-op by default.
- ``starts_at_base()``: True only when the adapted model computes the base model's outputs
  bit for bit until it trains (runs then share the evaluation before training).
- ``state_dict(model)`` / ``after_load(model)``: what a checkpoint holds of the adapter and
  what to rebuild after loading it (``full``: the whole backbone; CorDA: its base).
- ``use_calibration(token_ids)``: LM-corpus tokens before ``inject``, for a method whose
  initialisation reads activations (with ``needs_calibration = True``: CorDA).
- ``fingerprint(model)`` / ``layer_fingerprint_tensors(layer)``: what identifies the base
  weights a saved adapter belongs to (``load_adapter`` refuses another base).
- ``layer_norms(layer)``: extra per-layer scalars for the diagnostics (``{"u_norm": ...}``).

Adapter layers are the modules holding a ``base_layer`` (ours and PEFT's tuner layers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from curlora import checks

Shapes = Mapping[str, tuple[int, int]]
"""Module name -> (out_features, in_features) of every ``nn.Linear`` in a model."""

PAPER_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
"""The paper's adapted matrices (CURLoRA §4: attention query, key and value projections)."""

METHOD_ATTR = "_curlora_adapter_method"
"""Attribute under which ``apply_adapter`` records the applied method on the model."""


def module_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(out, in) of every ``nn.Linear`` in ``model``, by module name (meta tensors work)."""
    return {n: tuple(m.weight.shape) for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def matches(name: str, targets: Iterable[str]) -> bool:
    """PEFT's rule for a list of target names: equal, or ends with ``"." + target``."""
    return any(name == t or name.endswith("." + t) for t in targets)


def describe_linears(shapes: Shapes) -> str:
    """A short listing of the Linear modules that exist, for error messages."""
    if not shapes:
        return "the model has no nn.Linear modules"
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in shapes})
    return f"nn.Linear modules by name suffix: {', '.join(suffixes)} (e.g. {next(iter(shapes))})"


def check_targets(method: str, target_modules: Any, shapes: Shapes) -> list[str]:
    """The Linear module names matched by ``target_modules`` (every entry must match one).

    Stricter than PEFT, which only fails when nothing matches: a typo in one entry would
    otherwise silently leave those matrices unadapted.
    """
    if (
        isinstance(target_modules, str)
        or not isinstance(target_modules, Sequence)
        or not target_modules
        or not all(isinstance(t, str) and t for t in target_modules)
    ):
        raise ValueError(
            f"method '{method}': target_modules={target_modules!r} must be a non-empty list of "
            "module-name suffixes, e.g. [q_proj, k_proj, v_proj]"
        )
    for t in target_modules:
        if not any(matches(n, [t]) for n in shapes):
            raise ValueError(
                f"method '{method}': target_modules entry '{t}' matches no nn.Linear module; "
                f"{describe_linears(shapes)}"
            )
    return [n for n in shapes if matches(n, target_modules)]


def check_int(method: str, key: str, value: Any, low: int, high: int | None = None) -> None:
    """``value`` must be an int (not a bool) in ``low..high``."""
    checks.check_int(key, value, low, high, context=f"method '{method}': ")


def check_rank(method: str, rank: Any, names: Sequence[str], shapes: Shapes) -> None:
    """1 ≤ rank ≤ min(out, in) for every adapted matrix (k distinct columns and rows)."""
    check_int(method, "rank", rank, 1)
    if not names:
        return
    tightest = min(names, key=lambda n: min(shapes[n]))  # the binding constraint
    limit = min(shapes[tightest])
    if rank > limit:
        raise ValueError(
            f"method '{method}': rank={rank} exceeds min(out, in)={limit} of {tightest}; "
            f"valid: 1..{limit}"
        )


def check_float(
    method: str, key: str, value: Any, low: float, high: float, high_open: bool = False
) -> None:
    """``value`` must be a finite real number in [low, high] (or [low, high))."""
    bounds = [None if math.isinf(b) else b for b in (low, high)]
    checks.check_real(key, value, *bounds, high_open=high_open, context=f"method '{method}': ")


def check_seed(method: str, seed: Any) -> None:
    """``seed`` must be a non-negative int or None (None means 0)."""
    checks.check_int("seed", seed, 0, allow_none=True, context=f"method '{method}': ")


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` at dotted path ``name`` inside ``model`` (in place)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def lowrank_fro_norm(p: torch.Tensor, q: torch.Tensor) -> float:
    """‖P Q‖_F for P (out × m), Q (m × in) without forming out × in when m is small.

    ‖P Q‖_F² = tr(Qᵀ PᵀP Q) = Σ (PᵀP) ∘ (Q Qᵀ): two m × m Gram matrices, in float64.
    """
    p64, q64 = p.detach().double(), q.detach().double()
    if p64.shape[1] > 256:  # large m (e.g. OSF): the direct product is no more expensive
        return float(torch.linalg.matrix_norm(p64 @ q64))
    sq = ((p64.T @ p64) * (q64 @ q64.T)).sum().clamp_min(0.0)
    return float(sq.sqrt())


@dataclasses.dataclass
class AdapterMethod:
    """Base of every method (one level deep). ``name`` is the YAML's ``name``; ``lr`` is
    the method's default learning rate (the optimizer's ``lr`` follows it unless set):
    methods move at different speeds per step, so each has its own, chosen on a validation
    carve of the training data (the README's reproduction section)."""

    name: str = ""
    lr: float | None = None

    # -- configuration ----------------------------------------------------------------
    def validate(self, shapes: Shapes) -> None:
        """Raise ValueError when this config cannot be applied to a model with ``shapes``."""

    def num_trainable(self, shapes: Shapes) -> int | None:
        """Trainable backbone parameters after ``apply_adapter``; None if Linear shapes
        alone do not determine it."""
        return None

    def starts_at_base(self) -> bool:
        """True when the adapted model computes *exactly* what the base model computes until
        it trains (a zero-initialised U or B adds exact zeros). Runs of such methods share
        their evaluation before training (``curlora.run.evaluation_cache``). False by default:
        only say True when it is bit-for-bit so."""
        return False

    def to_config(self) -> dict[str, Any]:
        """The resolved config, ``_target_`` first: ``hydra.utils.instantiate`` rebuilds it."""
        cls = type(self)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **dataclasses.asdict(self)}

    # -- model surgery ----------------------------------------------------------------
    def inject(self, model: nn.Module) -> None:
        """Insert the adapter layers into ``model`` in place (default: nothing)."""

    def adapter_layers(self, model: nn.Module) -> dict[str, nn.Module]:
        """Adapter layers by module name: the modules that wrap a ``base_layer``."""
        return {
            n: m
            for n, m in model.named_modules()
            if isinstance(getattr(m, "base_layer", None), nn.Module)
        }

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """Parameters that train: the adapter layers' own (not their base layer's)."""
        return [
            (f"{n}.{pn}", p)
            for n, layer in self.adapter_layers(model).items()
            for pn, p in layer.named_parameters()
            if not pn.startswith("base_layer.")
        ]

    # -- capabilities (class attributes: nothing lists methods by name) ----------------
    needs_calibration: ClassVar[bool] = False
    """True for methods whose initialisation reads activations (``use_calibration``)."""

    supports_quantization: ClassVar[bool] = False
    """True when the adapter only reads the adapted layer's output, so it can sit on a
    bitsandbytes-quantised base (``model.quantization``); False when it is built from W
    itself, which bitsandbytes stores packed. A subclass whose answer depends on its
    fields overrides it with a property (``LoRAVariantMethod``)."""

    saves_final_adapter: ClassVar[bool] = True
    """True when a finished run saves the trained adapter as ``adapter/`` (``save_adapter``;
    ``load_adapter`` reads it back). False when it would only duplicate what the last task
    checkpoint already holds (``full``: the whole backbone)."""

    # -- data-dependent initialisation ------------------------------------------------

    def use_calibration(self, token_ids: torch.Tensor) -> None:
        """Token ids [N] of calibration text, given before :meth:`inject` (the task loop
        passes LM-corpus text the perplexity does not score). Default: not needed."""

    def after_load(self, model: nn.Module) -> None:
        """Called after ``load_adapter_state_dict`` copied a saved state in: a method whose
        base weights depend on saved tensors rebuilds them here. Default: nothing."""

    # -- the task sequence ------------------------------------------------------------
    def begin_task(self, model: nn.Module, task: str) -> None:
        """Called before ``task`` trains (and again when a run resumes inside it), before
        the optimizer is built: a method may change which of its parameters train (their
        ``requires_grad``). Default: nothing changes between tasks."""

    def prepare_task(self, model: nn.Module, task: str, data: Any) -> None:
        """Called when ``task``'s training starts (after :meth:`begin_task`, the optimizer
        and the strategy's ``on_task_start``, which may reset the adapter to its initial
        state, as ``separate`` and ``merge`` do; before the first batch),
        with the data: anything with ``train_examples(task)`` and ``collate(examples)``
        (the ``TaskSequenceDataModule``; None when the module runs without a trainer). A
        method may set the values of parameters that do not train from the data here
        (InfLoRA). Called again when a run resumes inside ``task``, after the adapter state
        was restored: a method must then keep what it restored, and whatever it must carry
        between tasks belongs in its adapter state (buffers of its adapter layers), the
        only method state a checkpoint holds. Default: nothing."""

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A scalar the method adds to every training batch's loss (e.g. a penalty tying
        the current task's adapter to earlier ones), or None."""
        return None

    # -- state --------------------------------------------------------------------------
    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What restores the adapted state on top of the same base model: each adapter
        layer's parameters and buffers (non-persistent ones too: e.g. OSF's frozen SVD
        factors), without the base layer. Tensors alias the live ones (like
        ``nn.Module.state_dict``)."""
        state: dict[str, torch.Tensor] = {}
        for n, layer in self.adapter_layers(model).items():
            own = [*layer.named_parameters(), *layer.named_buffers()]
            state.update(
                {f"{n}.{k}": t.detach() for k, t in own if not k.startswith("base_layer.")}
            )
        return state

    # -- identity of the base ------------------------------------------------------------
    def layer_fingerprint_tensors(self, layer: nn.Module) -> list[torch.Tensor]:
        """What this adapter layer's meaning depends on in the base: by default its weight
        (a strided sample of at most ~64k entries: enough to tell two models apart)."""
        weight = layer.base_layer.weight.detach()
        step = max(1, weight.numel() // 65_536)
        return [weight.reshape(-1)[::step]]

    def fingerprint(self, model: nn.Module) -> dict[str, dict[str, Any]]:
        """Per adapter layer: the base weight's shape and dtype and a sha256 of
        :meth:`layer_fingerprint_tensors`. ``save_adapter`` stores it; ``load_adapter``
        refuses a base whose fingerprint differs (another model, another dtype)."""
        return {
            name: weight_fingerprint(layer.base_layer.weight, self.layer_fingerprint_tensors(layer))
            for name, layer in self.adapter_layers(model).items()
        }

    # -- diagnostics --------------------------------------------------------------------
    def delta_factors(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(P: out × m, Q: m × in) with ΔW = P Q for one adapter layer, or None."""
        return None

    def layer_norms(self, layer: nn.Module) -> dict[str, float]:
        """Extra per-layer scalars for logging, e.g. ``{"u_norm": ‖U‖_F}``."""
        return {}

    def diagnostics(self, model: nn.Module) -> dict[str, float]:
        """``adapter/<layer>/delta_rel`` = ‖ΔW‖_F / ‖W‖_F and the ``layer_norms`` per layer."""
        out: dict[str, float] = {}
        for n, layer in self.adapter_layers(model).items():
            factors = self.delta_factors(layer)
            if factors is not None:
                w_norm = float(torch.linalg.matrix_norm(layer.base_layer.weight.detach().double()))
                out[f"adapter/{n}/delta_rel"] = lowrank_fro_norm(*factors) / max(w_norm, 1e-30)
            out.update({f"adapter/{n}/{k}": v for k, v in self.layer_norms(layer).items()})
        return out


def weight_fingerprint(
    weight: torch.Tensor, tensors: Sequence[torch.Tensor] | None = None
) -> dict[str, Any]:
    """Shape, dtype and sha256 of ``tensors`` (default: a strided sample of ``weight``)."""
    if tensors is None:
        step = max(1, weight.numel() // 65_536)
        tensors = [weight.detach().reshape(-1)[::step]]
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    return {
        "shape": list(weight.shape),
        "dtype": str(weight.dtype).removeprefix("torch."),
        "sha256": digest.hexdigest(),
    }


def applied_method(model: nn.Module) -> AdapterMethod | None:
    """The method ``apply_adapter`` applied to ``model``, or None."""
    return model.__dict__.get(METHOD_ATTR)


def require_method(model: nn.Module) -> AdapterMethod:
    """The applied method; ValueError when ``apply_adapter`` was never called on ``model``."""
    method = applied_method(model)
    if method is None:
        raise ValueError(
            f"{type(model).__name__} has no adapter method applied; call apply_adapter(model, "
            "method_cfg) first (pass the backbone itself, not a wrapper around it)"
        )
    return method


def validate_lowrank(method: Any, shapes: Shapes) -> None:
    """Checks shared by the A·B methods (lora, lora_paper): targets, rank, α, dropout, seed."""
    check_targets(method.name, method.target_modules, shapes)
    check_int(method.name, "rank", method.rank, 1)
    check_float(method.name, "alpha", method.alpha, float("-inf"), float("inf"))
    check_float(method.name, "dropout", method.dropout, 0.0, 1.0, high_open=True)
    check_seed(method.name, method.seed)


def lowrank_trainable(method: Any, shapes: Shapes) -> int:
    """r · (out + in) per adapted matrix: A is r × in, B is out × r."""
    names = check_targets(method.name, method.target_modules, shapes)
    return sum(method.rank * (shapes[n][0] + shapes[n][1]) for n in names)
