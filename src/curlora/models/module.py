"""ContinualLitModule: an adapted causal LM with one classification head per task.

The backbone's own LM head is untouched (perplexity uses it). Classification reads the
final hidden state at one position of each sequence, ``h: [B, H]``, and applies the
current task's head, both chosen by the ``head`` config group (``curlora.models.heads``):
``linear`` reads the last non-padding token through a ``Linear(H, num_classes)`` per task;
``words`` reads the answer position through the frozen LM head's rows of the task's label
words, and trains on the causal-LM loss of the answer tokens. The adapter's parameters are shared by
all tasks and keep training task after task; every task gets a fresh optimizer and
schedule (the task loop builds one ``Trainer`` per task, and ``configure_optimizers``
runs at every ``fit``). Only parameters with ``requires_grad`` reach the optimizer; heads
that receive no gradient in a task have ``grad=None`` and AdamW skips them, so earlier
heads never move under plain sequential training (not even through weight decay).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch import nn
from transformers import PreTrainedModel

from curlora.adapters import adapter_state_dict, applied_method, load_adapter_state_dict
from curlora.models.heads import Head, build_head, last_token_index
from curlora.run.state import rng_state, set_rng_state
from curlora.strategies.base import OptimizerStep, Strategy, checked_state, head_param_ids

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the message names the task and step."""


def hidden_size_of(backbone: PreTrainedModel) -> int:
    config = backbone.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


__all__ = ["ContinualLitModule", "NonFiniteLossError", "hidden_size_of", "last_token_index"]


class ContinualLitModule(L.LightningModule):
    """Trains the shared adapter and the current task's head; evaluates every task's head.

    Data arrives through Lightning: ``trainer.datamodule`` (a ``TaskSequenceDataModule``)
    serves the current task's training batches and one eval loader per task; strategies
    receive it in their hooks. ``validation_step`` returns the predictions of the head of
    the loader's task, which ``ForgettingMatrixCallback`` scores.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        task_classes: Mapping[str, int],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        strategy: Strategy | None = None,
        head_lr: float | None = None,
        head: Head | None = None,
        answer_tokens: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.head_lr = head_lr
        self.backbone = backbone
        self.head = head if head is not None else build_head(None)
        hidden = hidden_size_of(backbone)
        self.task_names = list(task_classes)
        # linear: fp32 Linear(H, C) per task; words: the LM head's label-word rows (no
        # parameters). Built here, after the adapter: the same RNG draws as ever.
        self.heads = self.head.make_heads(hidden, task_classes, backbone, answer_tokens)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.strategy = strategy or Strategy()
        self.current_task = self.task_names[0]
        # Checkpoints hold only what trains (see on_save_checkpoint); loading them into a
        # module whose frozen backbone is already in place must not demand the rest.
        self.strict_loading = False
        # The task whose eval batches the strategy was last told about (on_evaluate_task).
        self._evaluating: str | None = None
        # A backbone with nothing trainable (head_only) gives every eval batch the same
        # features at every evaluation point: computed once, kept per (task, batch).
        self._feature_cache: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    @property
    def backbone_frozen(self) -> bool:
        """True when no backbone parameter trains: its outputs never change."""
        return not any(p.requires_grad for p in self.backbone.parameters())

    # ------------------------------------------------------------------ forward
    def set_task(self, task: str) -> None:
        if task not in self.heads:
            raise ValueError(f"unknown task '{task}'; tasks: {self.task_names}")
        self.current_task = task
        method = applied_method(self.backbone)
        if method is not None:  # before the optimizer is built: what trains may change
            method.begin_task(self.backbone, task)

    def hidden_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states (after the last norm) of every position: [B, T, H]."""
        decoder = getattr(self.backbone, self.backbone.base_model_prefix)
        return decoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state

    def read(self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """hidden [B, T, H] at the position the head reads (``head.read_index``): [B, H] fp32."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, self.head.read_index(batch)].float()

    def features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden state where the head reads (linear: the last non-padding token;
        words: the answer position): [B, H] in fp32."""
        return self.read(self.hidden_states(batch), batch)

    def task_logits(self, batch: Mapping[str, torch.Tensor], task: str) -> torch.Tensor:
        """Logits of ``task``'s head: [B, num_classes] (words: its label words' logits)."""
        return self.heads[task](self.features(batch))

    def task_loss(
        self, batch: Mapping[str, torch.Tensor], task: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, head logits [B, C]) of ``task`` on ``batch``: cross-entropy of
        the head's logits (linear) or of the answer tokens (words), one backbone pass."""
        hidden = self.hidden_states(batch)
        logits = self.heads[task](self.read(hidden, batch))
        return self.head.loss(self.backbone, hidden, batch, logits), logits

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    # ------------------------------------------------------------------ training
    def _datamodule(self) -> Any:
        return self.trainer.datamodule if self._trainer is not None else None

    def on_fit_start(self) -> None:
        # Stale gradients from the previous task must not reach the new optimizer.
        self.zero_grad(set_to_none=True)
        self.strategy.on_task_start(self, self.current_task, self._datamodule())
        method = applied_method(self.backbone)
        if method is not None:  # after a strategy that resets the adapter (separate, merge)
            method.prepare_task(self.backbone, self.current_task, self._datamodule())

    def on_fit_end(self) -> None:
        self.strategy.on_task_end(self, self.current_task, self._datamodule())
        self.zero_grad(set_to_none=True)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        task = self.current_task
        task_loss, logits = self.task_loss(batch, task)
        loss = task_loss
        for past_task, past_batch in self.strategy.extra_batches(self, task, batch):
            loss = loss + self.task_loss(past_batch, past_task)[0]
        extra = self.strategy.extra_loss(self, task, batch, logits)
        method = applied_method(self.backbone)
        penalty = None if method is None else method.extra_loss(self.backbone)
        if penalty is not None:
            extra = penalty if extra is None else extra + penalty
        if extra is not None:
            loss = loss + extra
        # With several processes all stop together (any non-finite loss stops every one),
        # else the others would wait forever for this one's gradients.
        finite = bool(torch.isfinite(loss))
        if self._trainer is not None:
            finite = self._trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) in task '{task}' at step "
                f"{self.trainer.global_step} (batch {batch_idx})"
            )
        batch_size = batch["labels"].shape[0]
        self.log(
            f"train/{task}/loss", task_loss, on_step=True, prog_bar=True, batch_size=batch_size
        )
        if extra is not None:
            self.log(f"train/{task}/extra_loss", extra, on_step=True, batch_size=batch_size)
        optimizer = self.optimizers(use_pl_optimizer=False)
        self.log(
            f"train/{task}/lr", optimizer.param_groups[0]["lr"], on_step=True, batch_size=batch_size
        )
        return loss

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """Lightning's step (the closure runs ``training_step``, ``zero_grad`` and backward,
        then the optimizer updates), followed by the strategy's ``on_optimizer_step``. The
        parameters are copied first only for a strategy that overrides that hook."""
        if not self.strategy.uses_optimizer_step():
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
            return
        named = self.trainable_named_parameters()
        before = {n: p.detach().clone() for n, p in named}
        # Steps done before this one (each task's Trainer counts from 0; restored on resume).
        done = self.trainer.global_step if self._trainer is not None else 0
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # .grad still holds this step's gradient: the next zero_grad runs inside the next
        # batch's closure, after its training_step.
        step = OptimizerStep(parameters=named, before=before, global_step=done + 1)
        self.strategy.on_optimizer_step(self, self.current_task, step)

    def configure_optimizers(self) -> Any:
        """A fresh optimizer over the trainable parameters: [shared backbone/adapter, heads].

        Heads start from scratch every task while the adapter fine-tunes a pretrained
        model, so ``head_lr`` (when set) gives the heads their own learning rate; it is
        the same for every method, so comparisons stay fair.
        """
        named = self.trainable_named_parameters()
        # Heads by identity, not by name (the convention strategies use: head_param_ids).
        head_ids = head_param_ids(self)
        shared = [p for _, p in named if id(p) not in head_ids]
        heads = [p for _, p in named if id(p) in head_ids]
        head_group: dict[str, Any] = {"params": heads}
        if self.head_lr is not None:
            head_group["lr"] = self.head_lr
        groups = [g for g in ({"params": shared}, head_group) if g["params"]]
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, num_training_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ------------------------------------------------------------------ evaluation
    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Predictions of the head of the task this loader belongs to: {predictions, labels,
        index}, index being each example's row in its split (the loader is the task's eval
        split or its validation carve: ``eval_streams``)."""
        task, role = self.trainer.datamodule.eval_streams[dataloader_idx]
        if task != self._evaluating:  # Lightning scores one loader after the other
            self.strategy.on_evaluate_task(self, task)
            self._evaluating = task
        if self.backbone_frozen:
            key = (f"{role}:{task}", tuple(batch["index"].tolist()))
            if key not in self._feature_cache:
                self._feature_cache[key] = self.features(batch)
            features = self._feature_cache[key]
        else:
            features = self.features(batch)
        logits = self.heads[task](features)
        out = {
            "predictions": logits.argmax(dim=-1),
            "labels": batch["labels"],
            "index": batch["index"],
        }
        exact = self.head.exact_match(self.backbone, self.heads[task], features, batch["labels"])
        if exact is not None:  # words: the whole-vocabulary argmax is the right first token
            out["exact_match"] = exact
        return out

    def on_validation_epoch_end(self) -> None:
        # Before on_validation_end, where the perplexity callback measures the LM.
        if self._evaluating is not None:
            self.strategy.on_evaluation_end(self)
            self._evaluating = None

    # ------------------------------------------------------------------ checkpoints
    def training_state(self) -> dict[str, Any]:
        """What restores training on top of the same frozen base: the heads, the adapter's
        own state (``adapter_state_dict``: for CURLoRA U and the indices, for OSF also its
        frozen SVD factors, which are not in ``state_dict()``), the strategy's state and the
        current task. Never the frozen backbone: it is rebuilt from the model config on
        resume (storing it would cost 0.5 GB per checkpoint on SmolLM2, 14 GB on Mistral-7B).
        """
        return {
            "heads": {k: v.detach().clone() for k, v in self.heads.state_dict().items()},
            "adapter_state": {
                name: tensor.detach().clone()
                for name, tensor in adapter_state_dict(self.backbone).items()
            },
            # Checked here, where it is saved: a resume must be able to read it back.
            "strategy_state": checked_state(
                self.strategy.name, self.strategy.on_save_checkpoint(self)
            ),
            "current_task": self.current_task,
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])
        load_adapter_state_dict(self.backbone, state["adapter_state"])
        # After the heads and the adapter: the strategy sees the checkpoint's parameters.
        self.strategy.on_load_checkpoint(self, state.get("strategy_state", {}))
        self.current_task = state.get("current_task", self.current_task)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning (step) checkpoints hold what a task checkpoint holds: the
        :meth:`training_state` and the RNG state (dropout masks resume exactly). Lightning's
        own ``state_dict`` keeps only the heads (it requires one; never the backbone)."""
        state = checkpoint["state_dict"]
        heads = {f"heads.{key}" for key in self.heads.state_dict()}  # ModuleDict's key form
        for name in list(state):
            if name not in heads:
                del state[name]
        checkpoint["training_state"] = self.training_state()
        checkpoint["rng_state"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume inside a task (Lightning ``fit(ckpt_path=...)``): the same restore as
        from a task checkpoint."""
        self.load_training_state(checkpoint["training_state"])
        set_rng_state(checkpoint["rng_state"])
