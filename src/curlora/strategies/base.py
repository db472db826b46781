"""The strategy extension point: how tasks are combined over time.

A strategy is a small object with hooks that ``ContinualLitModule`` calls in exactly one
place each (see ``curlora.models.module``). Every hook has a no-op default; override the
ones a baseline needs. In the order a run calls them:

1. ``on_load_checkpoint(module, state)`` (resumed runs only): restore what
   ``on_save_checkpoint`` returned. Called after the heads and the adapter were restored
   (the module's parameters are the checkpoint's), once from the last task checkpoint
   before anything trains, and again from a step checkpoint when the run stopped in the
   middle of a task (at the start of that task's ``fit``, before ``on_task_start``).
2. ``on_evaluate_task(module, task)`` / ``on_evaluation_end(module)``: around every
   evaluation (the one before training, and the one after each task); the first before the
   batches of ``task``'s eval (and validation) loaders are scored, the second after every
   task was scored and before perplexity is measured. E.g. ``separate`` swaps in each
   task's own adapter and then puts the current one back.
3. For each task:

   a. ``on_task_start(module, task, datamodule)``: before task ``task`` trains (after the
      module switched its current task). E.g. LwF records the previous heads' outputs.
   b. For each training batch, inside ``training_step``:
      ``extra_batches(module, task, batch)`` → ``[(past_task, batch), ...]`` scored with
      that past task's own loss (its head's cross-entropy; under ``head=words`` the answer
      tokens' causal-LM loss) and added to the loss (e.g. experience replay), then
      ``extra_loss(module, task, batch, logits)`` → a scalar added to the loss, or None
      (e.g. the EWC penalty, the LwF distillation term).
   c. After each optimizer step: ``on_optimizer_step(module, task, step)`` with an
      :class:`OptimizerStep`: the parameters' values before the step, and ``.grad`` of
      every trainable parameter still holding the gradient the step used (the next
      batch's ``zero_grad`` has not run yet). E.g. SI's path integral. Only when a
      strategy overrides this hook does the module copy the parameters before each step.
   d. ``on_save_checkpoint(module)`` → the strategy's state, whenever a step checkpoint is
      written (every ``checkpoint.every_n_train_steps`` steps, or on an interrupt): always
      after 3c of that step, so nothing is pending. Must not change the strategy or the
      module: a run that writes checkpoints computes exactly what one that does not
      computes.
   e. ``on_task_end(module, task, datamodule)``: after ``task`` trained, before it is
      evaluated. E.g. EWC's Fisher estimate, filling the replay buffer.
   f. The evaluation (2), then the task checkpoint: ``on_save_checkpoint(module)`` again.

``on_save_checkpoint`` / ``on_load_checkpoint`` default to ``state_dict()`` /
``load_state_dict(state)`` (no module), which simpler strategies override instead. The
state holds tensors and plain Python values only (checkpoints are read with
``torch.load(weights_only=True)``) and must let a run continue bit-exactly: a run stopped
anywhere and resumed computes what the uninterrupted run computes.

What a strategy may use is typed: the module is a :class:`ContinualModel` and the data a
:class:`TaskData` (``typing.Protocol``: anything with these members fits, so strategies can
be tested on small stand-ins). A batch is ``{"input_ids": Long[B, T], "attention_mask":
Long[B, T], "labels": Long[B], "index": Long[B]}`` (``index``: row number in the task's
training split).

Conventions every strategy here keeps (so the module can rely on them):
- Resume: the module calls ``on_load_checkpoint`` and then ``on_task_start`` for the task it
  resumes (also in the middle of a task). A repeated ``on_task_start`` / ``on_task_end``
  for a task a strategy has already handled keeps the restored state (it does not
  re-record LwF targets with a half-trained model, nor add a Fisher twice).
- Randomness comes only from local ``torch.Generator`` objects seeded from the config
  (``seed: ${seed}``) whose states are in ``state_dict``; the global RNGs are never drawn
  from, so adding a strategy does not shift the data order or dropout masks of training.
- Passes a strategy makes on its own (Fisher, LwF targets) run with every submodule in
  eval mode and restore each submodule's own ``training`` flag afterwards; they write no
  ``.grad``.
- Batches built by a strategy (``datamodule.collate`` output) are moved to the device of
  the module's trainable parameters, or of the current batch for ``extra_batches``.
- Several processes (``trainer=ddp``): every process calls every hook, and
  ``train_examples`` / ``train_dataloader_for`` give each the whole task, so a strategy's
  state comes out the same in every process without communication; ``extra_batches``
  then adds the same past batch in each process (its gradient averages to itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from curlora import checks

Batch = dict[str, torch.Tensor]
Example = dict[str, Any]


class ContinualModel(Protocol):
    """What a strategy may use of the model (``ContinualLitModule`` provides it)."""

    heads: nn.ModuleDict
    """Task name -> a module mapping features ``[B, H]`` to class logits ``[B, C]``:
    ``Linear(hidden, num_classes)`` under ``head=linear``; under ``head=words`` the frozen LM
    head's rows of the task's label words (no parameters; ``curlora.models.heads``)."""

    backbone: nn.Module
    """The adapted causal LM (``curlora.adapters.adapter_state_dict`` reads its adapter)."""

    def task_logits(self, batch: Mapping[str, torch.Tensor], task: str) -> torch.Tensor:
        """Logits of ``task``'s head: [B, num_classes] (backbone + that head)."""
        ...

    def features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What every head reads: [B, H] (the final hidden state of the last token)."""
        ...

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters that train (adapter + heads): the ones the optimizer receives."""
        ...

    def modules(self) -> Iterator[nn.Module]: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...


class TaskData(Protocol):
    """What a strategy may use of the data (``TaskSequenceDataModule`` provides it)."""

    def train_examples(self, task: str) -> list[Example]:
        """The task's tokenised training examples."""
        ...

    def collate(self, examples: Sequence[Example]) -> Batch:
        """Pad examples into a batch."""
        ...

    def train_dataloader_for(self, task: str, batch_size: int | None = None) -> DataLoader:
        """The task's training examples in order."""
        ...


@dataclasses.dataclass(frozen=True)
class OptimizerStep:
    """One optimizer step, as ``Strategy.on_optimizer_step`` receives it.

    ``parameters``: the module's trainable parameters by name (what the optimizer holds);
    their values are already the ones after the step, and ``.grad`` holds the gradient of
    the whole training loss that the step used (task loss + ``extra_loss`` + replayed
    batches + the method's penalty; clipped if the trainer clips; None for a parameter the
    loss did not reach). ``before``: a detached copy of every one of them from just before
    the step (same shape and dtype). ``global_step``: the number of this step in the task's
    training, from 1 (each task has its own Trainer; a resumed task continues the count).
    """

    parameters: list[tuple[str, nn.Parameter]]
    before: dict[str, torch.Tensor]
    global_step: int

    def delta(self, name: str) -> torch.Tensor:
        """θ_after − θ_before of parameter ``name``: same shape, float32."""
        after = dict(self.parameters)[name].detach().float()
        return after - self.before[name].float()


class Strategy:
    """Plain sequential fine-tuning: every hook does nothing. Subclass and override.

    The order the hooks are called in is in the module docstring.
    """

    name: str = "sequential"

    def on_task_start(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Called before ``task`` trains."""

    def extra_loss(
        self, module: ContinualModel, task: str, batch: Batch, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """A scalar added to the loss of each training batch, or None."""
        return None

    def extra_batches(
        self, module: ContinualModel, task: str, batch: Batch
    ) -> list[tuple[str, Batch]]:
        """Batches of past tasks to score with their own heads and add to the loss."""
        return []

    def on_task_end(self, module: ContinualModel, task: str, datamodule: TaskData) -> None:
        """Called after ``task`` trained, before it is evaluated."""

    def on_evaluate_task(self, module: ContinualModel, task: str) -> None:
        """Called before ``task``'s evaluation batches are scored by its head."""

    def on_evaluation_end(self, module: ContinualModel) -> None:
        """Called after every task was scored, before perplexity is measured."""

    def on_optimizer_step(self, module: ContinualModel, task: str, step: OptimizerStep) -> None:
        """Called after every optimizer step of ``task`` (see :class:`OptimizerStep`)."""

    def on_save_checkpoint(self, module: ContinualModel) -> dict[str, Any]:
        """The strategy's state for a checkpoint; must change nothing. Default: ``state_dict``."""
        return self.state_dict()

    def on_load_checkpoint(self, module: ContinualModel, state: dict[str, Any]) -> None:
        """Restore what ``on_save_checkpoint`` returned; the module's parameters are already
        the checkpoint's. Default: ``load_state_dict``."""
        self.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """The state of a strategy that needs no module to save it (tensors, plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    @classmethod
    def uses_optimizer_step(cls) -> bool:
        """True when this class overrides ``on_optimizer_step``: only then does the module
        copy the trainable parameters before every step (the copy costs their size)."""
        return cls.on_optimizer_step is not Strategy.on_optimizer_step


# ---------------------------------------------------------------------------------------
# Helpers shared by the strategies (not part of the hook interface).
# ---------------------------------------------------------------------------------------


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's own flag on exit.

    ``module.train(previous)`` would not do: a module in training may hold frozen parts in
    eval mode on purpose, and one call would flip them all.
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def module_device(module: ContinualModel) -> torch.device:
    """Device of the module's first trainable parameter (CPU when it has none)."""
    for _, p in module.trainable_named_parameters():
        return p.device
    return torch.device("cpu")


def batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a batch to ``device`` (other values pass through)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def head_param_ids(module: ContinualModel, tasks: Iterable[str] | None = None) -> set[int]:
    """``id`` of every parameter of the heads of ``tasks`` (all heads when None).

    Identity, not names: the contract does not fix how the module names head parameters.
    """
    names = list(module.heads.keys()) if tasks is None else [t for t in tasks]
    return {id(p) for t in names if t in module.heads for p in module.heads[t].parameters()}


def require_datamodule(strategy: str, hook: str, datamodule: Any) -> TaskData:
    """``datamodule``, or a RuntimeError saying what the strategy needs from it.

    Strategies call this from ``on_task_start`` too, even where they use the datamodule only
    at task end, so that a module wired without one fails before training, not after it.
    """
    if datamodule is None or not all(
        hasattr(datamodule, name) for name in ("train_examples", "collate")
    ):
        raise RuntimeError(
            f"strategy '{strategy}' needs the datamodule (train_examples, collate) in {hook}, "
            f"got {type(datamodule).__name__}; the module must pass it to the strategy hooks"
        )
    return datamodule


def new_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: the only source of a strategy's randomness."""
    return torch.Generator(device="cpu").manual_seed(seed)


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum``; a ValueError naming ``strategy.<name>`` otherwise."""
    return checks.check_int(f"strategy.{name}", value, minimum)


def check_float(
    name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False
) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    upper = None if math.isinf(high) else high
    return float(checks.check_real(f"strategy.{name}", value, low, upper, low_open=low_open))


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (``true``/``false`` only); a ValueError naming ``strategy.<name>``."""
    return checks.check_bool(f"strategy.{name}", value)


# What ``torch.load(weights_only=True)`` reads back without extra allow-listing: a checkpoint
# holding anything else saves fine and then fails on resume, far from its cause.
PLAIN_VALUES = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device)


def checked_state(strategy: str, state: Any, key: str = "") -> Any:
    """``state`` unchanged when it holds only tensors and plain values (nested in dicts with
    str/int keys, lists and tuples); else a TypeError naming the strategy and the key.

    Called where the state is saved, so a numpy array or a custom object fails at the first
    checkpoint rather than at the resume that cannot read it."""
    if torch.is_tensor(state) or isinstance(state, PLAIN_VALUES):
        return state
    if isinstance(state, dict):
        for k, v in state.items():
            if not isinstance(k, str | int):
                raise TypeError(
                    f"strategy '{strategy}': state key {key + '.' if key else ''}{k!r} is a "
                    f"{type(k).__name__}; keys must be str or int"
                )
            checked_state(strategy, v, f"{key}.{k}" if key else str(k))
        return state
    if isinstance(state, list | tuple):
        for i, v in enumerate(state):
            checked_state(strategy, v, f"{key}[{i}]")
        return state
    raise TypeError(
        f"strategy '{strategy}': state '{key}' is a {type(state).__module__}."
        f"{type(state).__qualname__}; a checkpointed state holds tensors and plain values only "
        "(tensor, int, float, bool, str, None, and lists/dicts of them): convert it in "
        "on_save_checkpoint/state_dict (e.g. torch.as_tensor)"
    )
