"""Fail-fast validation of a composed run config, before any model or data is loaded.

Every problem is reported as a ``ConfigError`` whose message names the config key, the
value it has and what would be valid. Ranks and target modules are checked against the
model's *architecture config* (layer shapes built on the meta device: no weights, no
memory). Hydra itself already rejects unknown group options (``method=foo``) with the list
of valid ones; the checks here cover everything inside the groups. The checks of plain
values run first (no torch, no Lightning: a typo is refused in about a second). One
refusal is not a ``ConfigError``: lm-eval's standard tasks under offline mode, their data
not cached, raise the ``HubUnreachableError`` the run would raise later (exit 3).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from curlora import checks

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed_everything bound
KNOWN_TOP_LEVEL = frozenset(
    {
        "method", "model", "data", "strategy", "trainer", "logger", "callbacks", "paths",
        "rank", "alpha", "seed", "tasks", "resume", "deterministic", "optimizer", "head_lr",
        "scheduler", "checkpoint", "reproduce", "reuse_initial_evaluation", "objective", "probe",
        "head",
        "retention",
    }
)  # fmt: skip
"""The top-level keys a run config may have (a ``+typo=1`` override adds another)."""


class ConfigError(ValueError):
    """The configuration cannot run; the message says which key, which value, what is valid."""


def _one_line(error: BaseException) -> str:
    """OmegaConf's messages span lines (``full_key: rank``): one line, key included."""
    return " ".join(str(error).split())


def _require(condition: bool, key: str, value: Any, valid: str, why: str | None = None) -> None:
    """Refuse ``key=value`` unless ``condition``, in one sentence: ``<key>=<value> is not
    valid[ since <why>]; valid: <valid>``. ``valid`` says what would be accepted, never why
    the value is refused (that is ``why``): the message then has one "valid:"."""
    if not condition:
        because = f" since {why}" if why else ""
        raise ConfigError(f"{key}={value!r} is not valid{because}; valid: {valid}")


@contextlib.contextmanager
def _as_config_error() -> Iterator[None]:
    """The shared checks (``curlora.checks``) raise ValueError; here it is a ConfigError."""
    try:
        yield
    except ValueError as error:
        raise ConfigError(str(error)) from None


# Sizes and counts go to torch and itertools, which take C integers: a larger one passes an
# "integer >= 1" check and fails mid-run (islice: "must be ... <= sys.maxsize").
MAX_COUNT = 2**31 - 1


def _positive_int(cfg: Mapping[str, Any], key: str, path: str, allow_none: bool = False) -> None:
    with _as_config_error():
        checks.check_int(path, cfg.get(key), 1, MAX_COUNT, allow_none=allow_none)


# Adapters, heads and optimizer states are float32: a larger factor passes a finite check
# here and becomes inf at the first step (alpha=1e39, optimizer.lr=1e300).
FLOAT32_MAX = 3.4028234663852886e38


def _positive_number(value: Any, path: str) -> None:
    with _as_config_error():
        checks.check_real(path, value, 0, low_open=True)
    _require(
        value <= FLOAT32_MAX,
        path,
        value,
        f"a positive number up to {FLOAT32_MAX:.4g} (it scales float32 tensors: larger is inf)",
    )


def _check_top_level(cfg: Mapping[str, Any]) -> None:
    unknown = sorted(set(cfg) - KNOWN_TOP_LEVEL)
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"{name}={cfg.get(name)!r} is not valid since '{name}' is not a setting of this "
            f"project (a typo?); valid top-level settings: {sorted(KNOWN_TOP_LEVEL)}"
        )
    _positive_int(cfg, "rank", "rank")
    with _as_config_error():
        checks.check_int("seed", cfg.get("seed"), 0, MAX_SEED)
    if cfg.get("alpha") is not None:
        _positive_number(cfg.get("alpha"), "alpha")
    # The update is multiplied by the method's alpha (CURLoRA's α, LoRA's lora_alpha/r): 0
    # gives a run that trains for hours and learns nothing. Negative only flips a sign.
    method_alpha = (cfg.get("method") or {}).get("alpha")
    _require(
        not (isinstance(method_alpha, (int, float)) and method_alpha == 0),
        "method.alpha",
        method_alpha,
        "a non-zero number (the adapter's update is scaled by it: 0 learns nothing)",
    )
    _require(
        not (isinstance(method_alpha, (int, float)) and abs(method_alpha) > FLOAT32_MAX),
        "method.alpha",
        method_alpha,
        f"a number of magnitude up to {FLOAT32_MAX:.4g} (it scales float32 tensors)",
    )
    _positive_number(cfg["optimizer"].get("lr"), "optimizer.lr")
    if cfg.get("head_lr") is not None:
        _positive_number(cfg.get("head_lr"), "head_lr")
    scheduler = cfg.get("scheduler") or {}
    if scheduler:
        steps, ratio = scheduler.get("warmup_steps"), scheduler.get("warmup_ratio")
        _require(
            (steps is None) != (ratio is None),
            "scheduler.warmup_steps",
            steps,
            "exactly one of scheduler.warmup_steps and scheduler.warmup_ratio set",
            why="scheduler.warmup_ratio is " + ("not set either" if ratio is None else "set too"),
        )
        if steps is not None:
            with _as_config_error():
                checks.check_int("scheduler.warmup_steps", steps, 0)
        if ratio is not None:
            with _as_config_error():
                checks.check_real("scheduler.warmup_ratio", ratio, 0, 1)
    _positive_int(cfg["trainer"], "max_epochs", "trainer.max_epochs")
    _positive_int(cfg["trainer"], "accumulate_grad_batches", "trainer.accumulate_grad_batches")
    limit = cfg["trainer"].get("limit_train_batches")
    _require(
        limit is None
        or (isinstance(limit, float) and 0 < limit <= 1)
        or (checks.is_int(limit) and limit >= 1),
        "trainer.limit_train_batches",
        limit,
        "null (all batches), a fraction in (0, 1] or an integer >= 1 (0 trains nothing)",
    )
    every = (cfg.get("checkpoint") or {}).get("every_n_train_steps", 0)
    with _as_config_error():
        checks.check_int("checkpoint.every_n_train_steps", every, 0)  # 0: task boundaries only


def check_settings(cfg: Mapping[str, Any]) -> None:
    """The top-level settings alone (rank, alpha, seed, optimizer, trainer counts): what a
    command that starts many runs (``curlora-reproduce``) checks before the first."""
    _check_top_level(cfg)


def _check_task_list(cfg: Mapping[str, Any]) -> None:
    """``tasks`` and the data module's counts: plain values, no import."""
    data = cfg["data"]
    specs = data.get("task_specs") or {}
    tasks = cfg.get("tasks")
    valid = f"a non-empty list of tasks from {sorted(specs)}"
    _require(isinstance(tasks, list) and len(tasks) > 0, "tasks", tasks, valid)
    for task in tasks:
        # a list inside the list is unhashable: `in specs` itself would raise
        known = isinstance(task, str) and task in specs
        why = f"{task!r} is not a task of this data config"
        _require(known, "tasks", tasks, valid, why=why)
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    why = f"{repeated[0]!r} appears more than once" if repeated else None
    _require(not repeated, "tasks", tasks, "each task at most once", why=why)
    for key in ("max_length", "batch_size", "eval_batch_size"):
        _positive_int(data, key, f"data.{key}")
    with _as_config_error():
        checks.check_int("data.num_workers", data.get("num_workers", 0), 0)


def _check_task_specs(cfg: Mapping[str, Any]) -> None:
    """Each task's spec; building its source imports the source's module (``datasets`` for
    a Hub task), so it comes after the plain checks."""
    from curlora.data.tasks import TaskSpec

    specs = cfg["data"].get("task_specs") or {}
    for task in cfg["tasks"]:
        spec_cfg = specs[task]
        try:
            spec = TaskSpec.from_config(task, spec_cfg)
        except TypeError as error:
            raise ConfigError(f"data.task_specs.{task}: {error}") from None
        prefix = f"data.task_specs.{task}"
        _positive_int(spec_cfg, "num_classes", f"{prefix}.num_classes")
        _require(
            spec.num_classes >= 2,
            f"{prefix}.num_classes",
            spec.num_classes,
            "an integer >= 2 (a classifier needs two classes at least)",
        )
        _positive_int(spec_cfg, "train_limit", f"{prefix}.train_limit", allow_none=True)
        _positive_int(spec_cfg, "eval_limit", f"{prefix}.eval_limit", allow_none=True)
        names = spec.class_names
        if names is not None:
            _require(
                isinstance(names, list)
                and len(names) == spec.num_classes
                and all(isinstance(n, str) and n for n in names)
                and len(set(names)) == len(names),
                f"{prefix}.class_names",
                names,
                f"null or a list of {spec.num_classes} distinct non-empty names (num_classes)",
            )
        for class_id in (spec.label_map or {}).values():
            _require(
                checks.is_int(class_id) and 0 <= class_id < spec.num_classes,
                f"{prefix}.label_map",
                dict(spec.label_map or {}),
                f"class ids in 0..{spec.num_classes - 1} (num_classes={spec.num_classes})",
                why=f"class id {class_id!r} is out of range",
            )


def _check_head(cfg: Mapping[str, Any]) -> None:
    """The ``head`` group; under ``head=words`` every task of the run needs a sound
    template and one non-empty word per class (distinct first tokens are checked once the
    tokenizer loads: ``curlora.models.heads.words.label_token_ids``)."""
    from curlora.data.templates import label_words_problem, template_problem
    from curlora.models.heads import build_head

    try:
        head = build_head(cfg.get("head"))
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None
    specs = cfg["data"].get("task_specs") or {}
    for task in cfg["tasks"]:
        spec, prefix = specs[task], f"data.task_specs.{task}"
        template, words = spec.get("template"), spec.get("label_words")
        # Checked whenever set (a broken template is a mistake under either head), and
        # required under words.
        if template is not None or head.answers_in_words:
            problem = template_problem(template, spec.get("text_pair_field") is not None)
            _require(problem is None, f"{prefix}.template", template, f"{problem}")
        if words is not None or head.answers_in_words:
            problem = label_words_problem(words, int(spec["num_classes"]))
            _require(problem is None, f"{prefix}.label_words", words, f"{problem}")


def _check_perplexity(cfg: Mapping[str, Any]) -> None:
    for name, callback in (cfg.get("callbacks") or {}).items():
        if not callback or not str(callback.get("_target_", "")).endswith("PerplexityCallback"):
            continue
        prefix = f"callbacks.{name}"
        for key in ("max_length", "stride", "batch_size"):
            _positive_int(callback, key, f"{prefix}.{key}")
        _positive_int(callback, "max_tokens", f"{prefix}.max_tokens", allow_none=True)
        _require(
            callback["stride"] <= callback["max_length"],
            f"{prefix}.stride",
            callback["stride"],
            f"at most {prefix}.max_length={callback['max_length']} "
            "(tokens between windows would go unscored)",
        )


def _check_calibration(cfg: Mapping[str, Any]) -> None:
    """A method that calibrates on the LM corpus (CorDA) needs one, and a scored prefix to
    skip (the perplexity must not be measured on the calibration text)."""
    from curlora.adapters import build_method

    try:
        needs = build_method(cfg["method"]).needs_calibration
    except (ValueError, TypeError):
        return  # the method check reports a bad method config
    if not needs:
        return
    perplexity = (cfg.get("callbacks") or {}).get("perplexity") or {}
    _require(
        cfg["data"].get("corpus") is not None and perplexity.get("max_tokens") is not None,
        "callbacks.perplexity.max_tokens",
        perplexity.get("max_tokens"),
        "a number of tokens, with data.corpus set",
        why=f"method={cfg['method'].get('name')} calibrates on the LM corpus after the tokens "
        "the perplexity scores",
    )


def _check_probe(cfg: Mapping[str, Any]) -> None:
    probe = cfg.get("probe")
    if probe is None:
        return
    _require(
        isinstance(probe, Mapping) and set(probe) == {"l2", "max_iter"},
        "probe",
        probe,
        "null, or probe=linear ({l2, max_iter})",
    )
    with _as_config_error():
        checks.check_real("probe.l2", probe["l2"], 0)
    _positive_int(probe, "max_iter", "probe.max_iter")


def _check_method(cfg: Mapping[str, Any], cache_dir: Path) -> None:
    from huggingface_hub.errors import StrictDataclassClassValidationError

    from curlora.adapters import linear_shapes, validate_method
    from curlora.models.backbone import load_model_config

    try:
        architecture = load_model_config(cfg["model"], cache_dir)
    except (ValueError, StrictDataclassClassValidationError) as error:
        # transformers' own architecture checks (model.hidden_size=7 with 4 heads) raise
        # the latter, whose message spans lines.
        raise ConfigError(f"model: {_one_line(error)}") from None
    shapes = linear_shapes(architecture)
    try:
        validate_method(cfg["method"], shapes)
    except ValueError as error:
        raise ConfigError(f"method ({cfg['method'].get('name')}): {error}") from None
    _check_method_under_head(cfg, shapes)


def _check_method_under_head(cfg: Mapping[str, Any], shapes: Any) -> None:
    """Under ``head=words`` no head trains: a method that trains nothing in the backbone
    (``head_only``) would train nothing at all; the zero-shot row is that control."""
    from curlora.adapters import build_method
    from curlora.models.heads import build_head

    if not build_head(cfg.get("head")).answers_in_words:
        return
    method = build_method(cfg["method"])
    _require(
        method.num_trainable(shapes) != 0,
        "method",
        method.name,
        "a method that trains part of the backbone: under head=words the LM head is frozen "
        "and no head trains, so this method would train nothing (its control is the "
        "zero-shot row, the evaluation before training); or head=linear",
    )


def _check_resume(cfg: Mapping[str, Any]) -> None:
    resume = cfg.get("resume")
    if resume is None:
        return
    valid = "a run directory of this project (it holds run_config.yaml)"
    _require(Path(str(resume)).is_dir(), "resume", resume, valid, why="there is no such directory")
    _require(
        (Path(str(resume)) / "run_config.yaml").exists(),
        "resume",
        resume,
        valid,
        why="that directory has no run_config.yaml",
    )


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Building a Trainer logs "GPU available ..." lines; a check should print nothing."""
    # Imported first: its import sets its logger to INFO, which would undo the level below.
    import lightning.pytorch  # noqa: F401

    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# "Mistral-7B-v0.3", "Llama-2-13b-hf", "Qwen2.5-0.5B": the parameter count a model's name
# states, in billions (not "8x7B": a name this cannot size gets no remark).
BILLIONS = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")


def _billions(model: Mapping[str, Any]) -> float | None:
    """The size in billions of parameters the model's name states, else None."""
    name = str(model.get("name_or_path") or model.get("name") or "")
    found = BILLIONS.search(name.rsplit("/", 1)[-1])
    return float(found.group(1)) if found else None


def _cpu_advice(trainer_cfg: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    """What to run instead on a machine without the GPU: DDP stays DDP (trainer=ddp_cpu,
    processes with the gloo backend); the speed warning only for a model it is true of."""
    if trainer_cfg.get("strategy") == DDP_STRATEGY:
        advice = "trainer=ddp_cpu for the same DDP run in CPU processes"
    else:
        advice = "trainer.accelerator=cpu"
    size = _billions(model)
    if size is not None and size >= 1:
        advice += f" (a {size:g}B-parameter model on CPU is impractically slow)"
    return advice


def _device_available(kind: str) -> bool | None:
    """Whether this machine has a ``kind`` device, as Lightning's accelerator of that name
    tests it; None for a kind Lightning does not know. ``cuda`` and ``mps`` are tested with
    torch alone (a second; Lightning takes several to import)."""
    if kind in ("cuda", "mps"):
        import torch

        return (
            torch.cuda.device_count() > 0 if kind == "cuda" else torch.backends.mps.is_available()
        )
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if kind not in AcceleratorRegistry.available_accelerators():
        return None
    return bool(AcceleratorRegistry[kind]["accelerator"].is_available())


def _check_accelerator(trainer_cfg: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    """An accelerator this machine lacks (``gpu`` without CUDA or MPS) is a config error."""
    accelerator = trainer_cfg.get("accelerator")
    if not isinstance(accelerator, str) or accelerator in ("auto", "cpu"):
        return
    kinds = {"gpu": ["cuda", "mps"]}.get(accelerator, [accelerator])
    found = [_device_available(kind) for kind in kinds]
    if all(available is None for available in found):
        return  # an unknown name: Lightning's own message lists the valid ones
    if not any(found):
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not valid since this machine has no "
            f"{accelerator} (no usable CUDA/MPS device was found); valid: cpu or auto, "
            f"e.g. {_cpu_advice(trainer_cfg, model)}"
        )


def _check_devices(cfg: Mapping[str, Any]) -> None:
    """The accelerator the trainer config asks for exists here: before the checks that build
    things, as a GPU config on a CPU machine is refused without Lightning."""
    _check_accelerator(_trainer_settings(cfg), cfg["model"])


def _trainer_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The Trainer's arguments (its callbacks and logger are the run's own)."""
    return {k: v for k, v in cfg["trainer"].items() if k not in ("callbacks", "logger")}


def _check_trainer_values(cfg: Mapping[str, Any]) -> None:
    """What the trainer config's values alone decide: no Trainer built, nothing imported."""
    trainer_cfg = _trainer_settings(cfg)
    precision = str(trainer_cfg.get("precision", "32-true"))
    _require(
        not precision.endswith("-true") or precision == "32-true",
        "trainer.precision",
        trainer_cfg.get("precision"),
        "32-true, bf16-mixed or 16-mixed",
        why="adapters and heads are float32 parameters, which a "
        f"{precision} Trainer would cast (a low-precision backbone: model.dtype=bfloat16)",
    )
    _check_not_sharded(str(trainer_cfg.get("strategy", "auto")))


def _check_trainer(cfg: Mapping[str, Any]) -> None:
    """Build the configured Trainer once (cheap, once Lightning is imported): Lightning itself
    checks the accelerator (e.g. ``gpu`` on a machine without one), precision, devices and
    strategy."""
    from hydra.utils import instantiate

    trainer_cfg = _trainer_settings(cfg)
    try:
        with _quiet_lightning():
            trainer = instantiate(
                trainer_cfg, logger=False, callbacks=[], enable_checkpointing=False
            )
    except Exception as error:
        cause = error.__cause__ or error  # Hydra wraps the Trainer's own exception
        message = " ".join(str(cause).split()) or type(cause).__name__
        keys = [k for k in ("accelerator", "precision", "devices", "strategy") if k in message]
        where = ", ".join(f"trainer.{k}={trainer_cfg.get(k)!r}" for k in keys) or "trainer"
        raise ConfigError(f"{where}: {message}") from None
    if trainer.world_size > 1:
        _check_several_processes(trainer_cfg, trainer.world_size)
        return
    from lightning.pytorch.strategies import ParallelStrategy

    strategy = trainer_cfg.get("strategy", "auto")
    if isinstance(trainer.strategy, ParallelStrategy) and trainer_cfg.get(
        "use_distributed_sampler", True
    ):  # Lightning would wrap the task loop's own batch sampler, and fail after the load
        raise ConfigError(
            f"trainer.strategy={strategy!r} is not valid since it is a multi-process "
            f"strategy and trainer.devices={trainer_cfg.get('devices')!r} starts one process; "
            "valid: trainer.strategy=auto (one process), or trainer=ddp / trainer=ddp_cpu "
            "with trainer.devices=N for several"
        )


# The one multi-process strategy the task loop supports (``curlora.distributed``): DDP whose
# processes are started by the run (not spawned), told that the other tasks' heads get no
# gradient in a batch.
DDP_STRATEGY = "ddp_find_unused_parameters_true"


def _check_not_sharded(strategy: str) -> None:
    if strategy.startswith(("fsdp", "deepspeed")):
        raise ConfigError(
            f"trainer.strategy={strategy!r} is not supported: it gives each process a shard "
            "of every parameter, and the adapter state saved with each task, the evaluation "
            f"and the perplexity read whole tensors; valid: {DDP_STRATEGY} (trainer=ddp). "
            "A 7B model fits one GPU in bfloat16 with model.gradient_checkpointing=true"
        )


def _check_several_processes(trainer_cfg: Mapping[str, Any], world_size: int) -> None:
    devices, nodes = trainer_cfg.get("devices"), trainer_cfg.get("num_nodes", 1)
    strategy = str(trainer_cfg.get("strategy", "auto"))
    where = f"trainer.devices={devices!r}, trainer.num_nodes={nodes!r} ({world_size} processes)"
    if int(nodes or 1) > 1:
        raise ConfigError(
            f"{where}: runs use one machine; valid: trainer.num_nodes=1 (several GPUs of one "
            "machine: trainer=ddp trainer.devices=N; several machines: one sweep job each)"
        )
    if strategy != DDP_STRATEGY:
        raise ConfigError(
            f"{where} with trainer.strategy={strategy!r}: several processes run with "
            f"trainer=ddp (GPUs) or trainer=ddp_cpu, whose strategy is {DDP_STRATEGY}; "
            f"valid: trainer.strategy={DDP_STRATEGY}, or trainer.devices=1"
        )
    if trainer_cfg.get("use_distributed_sampler", True):
        raise ConfigError(
            "trainer.use_distributed_sampler=True is invalid with several processes: "
            "Lightning's evaluation sampler pads with duplicates and its training sampler "
            "cannot resume mid-task; the data module shards itself. valid: false "
            "(trainer=ddp sets it)"
        )


def _check_optimization(cfg: Mapping[str, Any]) -> None:
    """Build the optimizer and scheduler on a dummy parameter: their own argument checks
    (a negative weight decay, an unknown keyword) fail here, not after the model loads."""
    import torch
    from hydra.utils import instantiate

    try:
        optimizer = instantiate(cfg["optimizer"])([torch.nn.Parameter(torch.zeros(1))])
    except Exception as error:
        raise ConfigError(f"optimizer: {error.__cause__ or error}") from None
    if cfg.get("scheduler"):
        try:
            instantiate(cfg["scheduler"])(optimizer, num_training_steps=10)
        except Exception as error:
            raise ConfigError(f"scheduler: {error.__cause__ or error}") from None


def _check_output_dir(cfg: Mapping[str, Any]) -> None:
    output = Path(str(cfg["paths"]["output_dir"]))
    _require(
        not output.exists() or output.is_dir(),
        "paths.output_dir",
        str(output),
        "a directory (or a path where one can be created)",
        why="it is a file",
    )
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    _require(
        os.access(existing, os.W_OK | os.X_OK),
        "paths.output_dir",
        str(output),
        "a place this user can write",
        why=f"{existing} is not writable by this user",
    )


def _check_model_path(cfg: Mapping[str, Any]) -> None:
    model = cfg["model"]
    name = model.get("name_or_path")
    if isinstance(name, str) and name.startswith(("/", ".", "~")):  # a local path, not a Hub id
        _require(
            Path(name).expanduser().exists(),
            "model.name_or_path",
            name,
            "an existing local path, or a Hub id (ORG/NAME)",
            why="that local path does not exist",
        )


def _check_attention(cfg: Mapping[str, Any]) -> None:
    """``model.attn_implementation`` of any model config: a built-in implementation, never a
    Hub kernel (``curlora.models.hub.check_attention``), before the model is read."""
    if cfg["model"].get("attn_implementation") is None:
        return
    from curlora.models.hub import check_attention

    with _as_config_error():
        check_attention(cfg["model"]["attn_implementation"])


def _check_quantization(cfg: Mapping[str, Any]) -> None:
    quantization = cfg["model"].get("quantization")
    if quantization is None:
        return  # the usual case: torch is not imported for it
    import torch

    from curlora.adapters import build_method
    from curlora.models.quantization import check_quantization

    try:
        method = build_method(cfg.get("method") or {})
    except (ValueError, TypeError):
        method = None  # the method check reports a bad method config
    try:
        check_quantization(quantization, method, torch.cuda.is_available())
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_objective(cfg: Mapping[str, Any]) -> None:
    """Refuse, before anything loads, a search objective that cannot be computed."""
    objective = cfg.get("objective")
    if objective is None:
        return
    metric = objective.get("metric")
    from curlora.objective import METRICS

    if metric not in METRICS:
        raise ConfigError(f"objective.metric={metric!r} is not valid; valid: {list(METRICS)}")
    limit = objective.get("max_perplexity_ratio")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))):
        raise ConfigError(
            f"objective.max_perplexity_ratio={limit!r} is not valid; valid: a number or null"
        )
    specs = cfg["data"]["task_specs"]
    carved = [t for t in cfg["tasks"] if (specs.get(t) or {}).get("validation_limit")]
    if not carved:
        raise ConfigError(
            f"objective.metric={metric!r} needs validation carves, but no task of "
            f"{list(cfg['tasks'])} has one; set data.task_specs.<task>.validation_limit "
            "(e.g. 200): the test split is never used to choose settings"
        )


def _check_hub_data(cfg: Mapping[str, Any]) -> None:
    """The tasks and corpus read from the Hugging Face Hub: with offline mode set and their
    data not in the run's cache, the run would load the model and then stop at its first
    split. That is refused here with the error the late failure raises
    (``HubUnreachableError``, exit 3, not a config error: the config is right for a machine
    that reaches the Hub). Only offline mode is seen here; a network that merely fails is
    left to the load."""
    from curlora.data.sources import corpus_source
    from curlora.data.sources.hub import HubCorpus, HubTask, HubUnreachableError
    from curlora.data.tasks import TaskSpec

    cache_dir = Path(str(cfg["paths"]["cache_dir"]))
    specs = cfg["data"].get("task_specs") or {}

    def problems() -> Iterator[str | None]:
        """The tasks' in the run's order, then the corpus's; drawn only up to the first."""
        for task in cfg["tasks"]:
            spec = TaskSpec.from_config(task, specs[task])  # checked by _check_task_specs
            if isinstance(spec.source, HubTask):
                yield spec.source.offline_problem(spec, cache_dir)
        corpus = cfg["data"].get("corpus")
        source = corpus_source(corpus) if corpus is not None else None
        if isinstance(source, HubCorpus):
            yield source.offline_problem(cache_dir)

    first = next((problem for problem in problems() if problem is not None), None)
    if first is not None:
        raise HubUnreachableError(first)


def _check_retention_values(cfg: Mapping[str, Any]) -> None:
    """The ``retention`` group's own values (suite, task names of the offline suite, limit,
    batch size, lm-eval installed), before any check that imports torch or Lightning."""
    raw = cfg.get("retention")
    if raw is None or (isinstance(raw, Mapping) and raw.get("suite") == "none"):
        return  # nothing to import for: the default
    from curlora.retention.settings import check_retention

    with _as_config_error():
        check_retention(raw, standard_names=False)


def _check_retention(cfg: Mapping[str, Any]) -> None:
    """lm-eval's standard tasks: their names (lm-eval's task index), then their data,
    which they fetch from the Hub: with offline mode set and their data not cached, the
    run would load the model and fail at its first evaluation point. That is refused here
    with the error the late failure raises (``HubUnreachableError``, exit 3, not a config
    error: the config is right for a machine that reaches the Hub). Only offline mode is
    seen here; a network that merely fails is left to that late check."""
    from curlora.retention.settings import check_retention

    with _as_config_error():
        settings = check_retention(cfg.get("retention"))
    if settings is None or not settings.standard:
        return
    from curlora.data.sources.hub import HubUnreachableError
    from curlora.retention.suite import offline_problem

    problem = offline_problem(settings.standard)
    if problem is not None:
        raise HubUnreachableError(problem)


def _check_strategy(cfg: Mapping[str, Any]) -> None:
    from curlora.strategies import build_strategy

    try:
        build_strategy(cfg.get("strategy"))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"strategy: {error}") from None


Check = Callable[[Mapping[str, Any]], None]
PLAIN_CHECKS: tuple[Check, ...] = (
    _check_top_level,
    _check_trainer_values,
    _check_output_dir,
    _check_model_path,
    _check_task_list,
    _check_perplexity,
    _check_probe,
    _check_resume,
    _check_quantization,  # imports torch only when model.quantization is set
    _check_retention_values,  # the suite's item builders (no torch), when a suite is set
)
"""Checks of plain values: no heavy import (torch, Lightning, datasets)."""
IMPORTING_CHECKS: tuple[Check, ...] = (
    _check_task_specs,  # a task source's module: datasets for a Hub task
    _check_hub_data,  # a Hub task or corpus offline and not cached: the model never loads
    _check_objective,  # reads the task specs checked just before
    _check_devices,  # torch (Lightning only for an accelerator other than a GPU)
    _check_head,  # torch
    _check_strategy,  # torch
    _check_calibration,  # the adapters: torch, transformers
    _check_optimization,  # torch
    _check_trainer,  # Lightning
    _check_attention,  # transformers
    _check_retention,  # datasets; lm-eval's task index for the standard suite
)
"""Checks that import what they check with, cheapest first; the model's architecture
config (``_check_method``) is read after them."""


def validate_config(cfg: DictConfig | Mapping[str, Any], check_model: bool = True) -> None:
    """Raise ``ConfigError`` for the first problem found (``HubUnreachableError`` for a
    standard retention suite offline mode cannot serve); return None when the config is
    sound."""
    if isinstance(cfg, DictConfig):
        try:
            missing = sorted(OmegaConf.missing_keys(cfg))
        except Exception as error:  # it resolves as it walks: ${nope}, ${oc.env:NOPE}
            raise ConfigError(f"the config does not resolve: {_one_line(error)}") from None
        if missing:
            raise ConfigError(
                f"{missing[0]} must be set (the config leaves it as ???), e.g. "
                f"{missing[0]}=<value> on the command line"
            )
    try:
        plain = (
            OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        )
    except Exception as error:  # interpolation to a missing key, a bad resolver, ...
        raise ConfigError(f"the config does not resolve: {_one_line(error)}") from None
    # Cheapest first: the plain values need no import, so a typo is refused in about a
    # second; torch (the head, strategy, method and optimizer checks) and Lightning (the
    # Trainer) take seconds to import and come after.
    for check in PLAIN_CHECKS:
        check(plain)
    for check in IMPORTING_CHECKS:
        check(plain)
    if check_model:
        _check_method(plain, Path(plain["paths"]["cache_dir"]))
