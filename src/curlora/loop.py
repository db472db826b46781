"""The continual task loop: one Trainer per task, an evaluation after each, a checkpoint.

:class:`TaskLoop` builds the objects of a run from its config (backbone, method, data,
module, callbacks, loggers), then walks the task sequence:

    initial evaluation (untrained heads: the FWT baseline; perplexity before training)
    for each task i:  Trainer.fit on task i  (fresh optimizer and schedule; the adapter
                      carries over)  →  evaluate every task's head and the perplexity
                      →  task checkpoint (atomic)  →  progress.json

Everything measured goes into a :class:`~curlora.run.record.RunRecord`; reporting reads
the record. With several processes (``curlora.distributed``) every process walks the same
loop; only process 0 (:attr:`TaskLoop.writer`) writes files and logs. A run directory that
already holds this experiment's checkpoints continues from them (:meth:`TaskLoop.restore`),
including mid-task from a step checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from curlora.adapters import (
    adapter_diagnostics,
    applied_method,
    apply_adapter,
    build_method,
    save_adapter,
)
from curlora.adapters.saving import save_heads
from curlora.callbacks.forgetting import ForgettingMatrixCallback
from curlora.callbacks.perplexity import PerplexityCallback
from curlora.callbacks.retention import RetentionCallback
from curlora.checks.config import DDP_STRATEGY, ConfigError
from curlora.data.datamodule import TaskSequenceDataModule
from curlora.data.sources import load_corpus
from curlora.distributed import ProcessGroupScope, is_worker
from curlora.loggers import GuardedLogger, build_loggers, logged_config
from curlora.metrics.degenerate import INERT_ADAPTER, make_warning
from curlora.metrics.perplexity import tokenize_corpus
from curlora.metrics.probe import collect_features, probe_accuracy
from curlora.models.backbone import load_backbone
from curlora.models.heads import build_head
from curlora.models.module import ContinualLitModule
from curlora.retention.settings import check_retention
from curlora.run import evaluation_cache
from curlora.run.guard import RUN_CONFIG_FILE, load_saved_config
from curlora.run.interrupts import CheckpointOnInterrupt, InterruptGuard
from curlora.run.record import Evaluation, RunRecord
from curlora.run.state import (
    LOGGER_STATE_FILE,
    PROGRESS_FILE,
    AtomicCheckpointIO,
    DamagedFile,
    StampStepCheckpoints,
    check_fingerprint,
    check_step_checkpoint,
    latest_task_checkpoint,
    read_logger_state,
    read_progress,
    run_fingerprint,
    save_task_checkpoint,
    set_rng_state,
    step_checkpoint,
    step_checkpoint_dir,
    task_checkpoint,
    update_logger_state,
    usable_step_checkpoint,
    write_progress,
)
from curlora.strategies import build_strategy
from curlora.strategies.base import eval_mode, head_param_ids

log = logging.getLogger("curlora")

# Callbacks the loop reads results from; every other entry of ``callbacks`` is passed on.
EVALUATION_CALLBACKS = ("forgetting", "perplexity")


def calibration_tokens(cfg: DictConfig, tokenizer: Any, cache_dir: Path) -> torch.Tensor:
    """LM-corpus token ids [N] for a method whose initialisation reads activations: the
    ``method.calibration_tokens`` tokens right after the prefix the perplexity scores, so
    the perplexity is never measured on text the initialisation was fitted to."""
    corpus = cfg.data.get("corpus")
    scored = (cfg.get("callbacks") or {}).get("perplexity", {}).get("max_tokens")
    wanted = int(cfg.method.calibration_tokens)
    if corpus is None or scored is None:
        raise ConfigError(
            f"method={cfg.method.name} calibrates on the LM corpus after the tokens the "
            "perplexity scores, so it needs data.corpus and callbacks.perplexity.max_tokens "
            f"(got corpus={'set' if corpus else None}, max_tokens={scored})"
        )
    ids = tokenize_corpus(tokenizer, load_corpus(corpus, cache_dir))
    calibration = ids[int(scored) : int(scored) + wanted]
    if calibration.numel() < wanted:
        raise ConfigError(
            f"method.calibration_tokens={wanted}: the corpus has {ids.numel()} tokens and the "
            f"perplexity scores the first {scored} (callbacks.perplexity.max_tokens), so only "
            f"{calibration.numel()} are left; lower one of the two"
        )
    return calibration


def base_fingerprint(model: torch.nn.Module) -> dict[str, Any] | None:
    """The adapted base's per-layer fingerprint (``AdapterMethod.fingerprint``, what
    ``load_adapter`` checks), or None without an applied method."""
    method = applied_method(model)
    return None if method is None else method.fingerprint(model)


class TaskLoop:
    """Holds the objects of one run and walks the task sequence; see the module docstring."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        guard: InterruptGuard,
        scope: ProcessGroupScope | None = None,
    ) -> None:
        self._clock = (time.perf_counter(), 0.0)  # (this session's start, time before it)
        self.cfg = cfg
        self.scope = scope
        self.writer = not is_worker()
        """Process 0 (or the only process): the one that writes files and logs."""
        self.run_dir = Path(run_dir)
        self.guard = guard
        self.tasks: list[str] = list(cfg.tasks)
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        torch.use_deterministic_algorithms(bool(cfg.get("deterministic", True)), warn_only=True)
        cache_dir = Path(cfg.paths.cache_dir)

        self.head = build_head(cfg.get("head"))
        self.backbone, self.tokenizer = load_backbone(cfg.model, cache_dir)
        answer_tokens = self._answer_tokens() if self.head.answers_in_words else None
        calibration = (
            calibration_tokens(cfg, self.tokenizer, cache_dir)
            if build_method(cfg.method).needs_calibration
            else None
        )
        self.trainable_params = apply_adapter(self.backbone, cfg.method, calibration)
        # Right after the adapter is built, before anything trains: the base as every
        # session of the run builds it, whatever a checkpoint later restores on top.
        self.fingerprint = run_fingerprint(self._saved_config(), base_fingerprint(self.backbone))
        """What this run's files must belong to (``curlora.run.state.run_fingerprint``)."""
        self.trainable_params -= self.head.prepare_backbone(self.backbone)
        make_data = instantiate(cfg.data, _convert_="all")  # _partial_: completed here
        words = {"answer_tokens": answer_tokens} if answer_tokens is not None else {}
        self.data: TaskSequenceDataModule = make_data(
            tasks=self.tasks,
            tokenizer=self.tokenizer,
            cache_dir=cache_dir,
            seed=int(cfg.seed),
            **words,
        )
        self.data.setup()
        self.module = ContinualLitModule(
            self.backbone,
            {t: self.data.specs[t].num_classes for t in self.tasks},
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            strategy=build_strategy(cfg.get("strategy")),
            head_lr=cfg.get("head_lr"),
            head=self.head,
            answer_tokens=answer_tokens,
        )
        self.trainable_params += sum(p.numel() for p in self.module.heads.parameters())
        callbacks = cfg.get("callbacks") or {}
        self.forgetting: ForgettingMatrixCallback = instantiate(callbacks["forgetting"])
        self.perplexity: PerplexityCallback = instantiate(callbacks["perplexity"])
        retention = check_retention(OmegaConf.to_container(cfg.get("retention"), resolve=True))
        self.retention = None if retention is None else RetentionCallback(retention, cache_dir)
        if self.retention is not None:
            self.retention.prepare()  # a suite that cannot load stops the run before training
        self.extra_callbacks: list[Callback] = [
            instantiate(c) for k, c in callbacks.items() if c and k not in EVALUATION_CALLBACKS
        ]
        self.loggers: list[GuardedLogger] = build_loggers(cfg.get("logger")) if self.writer else []
        for logger in self.loggers:
            logger.log_hyperparams(logged_config(cfg))
        self.record = RunRecord(self.tasks, fingerprint=self.fingerprint)
        self.steps_after_task: list[int | None] = [None] * len(self.tasks)
        """Optimizer steps over the run after each task (the loggers' step axis)."""

    def _saved_config(self) -> DictConfig:
        """The experiment as the run directory saved it (``run_config.yaml``): the one
        config every session of a run shares, also where the composed config differs from
        it only by settings added since (``curlora.run.guard.config_differences``). A loop
        built without one (the API, tests) fingerprints the config it was given."""
        saved = self.run_dir / RUN_CONFIG_FILE
        return load_saved_config(self.run_dir) if saved.is_file() else self.cfg

    def _answer_tokens(self) -> dict[str, list[list[int]]]:
        """head=words, right after the tokenizer loads and before any data or training: the
        model must have an LM head, and each task's words distinct first tokens (ConfigError
        naming the key otherwise)."""
        from curlora.models.heads.words import label_token_ids, output_layer

        output_layer(self.backbone)
        specs = self.cfg.data.task_specs
        words = {t: list(specs[t].label_words or []) for t in self.tasks}
        return label_token_ids(words, self.tokenizer)

    # ------------------------------------------------------------------ trainers
    def _trainer(self, task_index: int | None, perplexity: bool = True) -> L.Trainer:
        """A Trainer that trains task ``task_index``, or evaluates when it is None (with the
        perplexity measured unless ``perplexity`` is False)."""
        callbacks: list[Callback] = [*self.extra_callbacks]
        if task_index is None:
            callbacks += [self.forgetting, self.perplexity] if perplexity else [self.forgetting]
            if perplexity and self.retention is not None:
                callbacks.append(self.retention)
        every = int(self.cfg.checkpoint.every_n_train_steps or 0)
        if task_index is not None:
            path = step_checkpoint(self.run_dir, task_index)
            # Before the callbacks that save: each step checkpoint carries the fingerprint
            # and the run's wall time so far.
            callbacks.append(StampStepCheckpoints(self.fingerprint, self.elapsed_s))
            callbacks.append(CheckpointOnInterrupt(self.guard, path))
            if every > 0:
                callbacks.append(
                    ModelCheckpoint(
                        dirpath=step_checkpoint_dir(self.run_dir, task_index),
                        every_n_train_steps=every,
                        save_top_k=0,
                        save_last=True,
                        enable_version_counter=False,
                    )
                )
        training = task_index is not None
        plugins: list[Any] = [AtomicCheckpointIO()]
        if str(self.cfg.trainer.get("strategy", "auto")) == DDP_STRATEGY:
            # The processes of a DDP run are started here (curlora.distributed), never by a
            # scheduler, also inside a SLURM job (whose environment Lightning would pick).
            plugins.append(LightningEnvironment())
        trainer = instantiate(
            self.cfg.trainer,
            callbacks=callbacks,
            logger=self.loggers or False,
            default_root_dir=str(self.run_dir),
            enable_checkpointing=training and every > 0,
            plugins=plugins,
            # Training never validates (every head is evaluated after the task, by the loop).
            limit_val_batches=0 if training else None,
        )
        if self.scope is not None:
            self.scope.adopt(trainer)
        return trainer

    def _evaluate(self, point: int) -> None:
        """Every task's head on its eval split + perplexity, filed under ``point``; after the
        last task also on the validation carves (all that choosing settings reads).

        A frozen backbone (``head_only``) computes what it computed before training: its
        perplexity is reused and its features come from the module's cache, so only the
        heads run again (bit-identical by construction).
        """
        frozen = self.module.backbone_frozen and self.record.initial is not None
        reuse_ppl = frozen and self.record.initial.perplexity is not None
        trainer = self._trainer(None, perplexity=not reuse_ppl)
        self.perplexity.result = None
        self.data.score_validation = point == len(self.tasks) - 1
        trainer.validate(self.module, datamodule=self.data, verbose=False)
        ppl = self.record.initial.perplexity if reuse_ppl else self.perplexity.result
        probe = self._probe(point) if point >= 0 and self.cfg.get("probe") else {}
        retention = {}
        if self.retention is not None:
            # A frozen backbone scores what it scored before training (as its perplexity).
            retention = self.record.initial.retention if reuse_ppl else self.retention.result
        evaluation = Evaluation(
            dict(self.forgetting.result),
            ppl,
            dict(self.forgetting.validation),
            probe,
            dict(retention),
        )
        self.record.add(point, evaluation)
        self._log_evaluation(point, evaluation)

    def _probe(self, point: int) -> dict[str, float]:
        """A fresh linear probe per task trained so far (``curlora.metrics.probe``): fitted on
        the features of its training examples, scored on its eval split. The strategy's
        evaluation hooks run around each task, so ``separate`` probes each task's own
        adapter."""
        settings = self.cfg.probe
        start = time.perf_counter()
        module, strategy = self.module, self.module.strategy
        device = module.device
        out: dict[str, float] = {}
        with eval_mode(module):
            for task in self.tasks[: point + 1]:
                strategy.on_evaluate_task(module, task)
                train = collect_features(
                    module.features, self.data.train_dataloader_for(task), device
                )
                test = collect_features(
                    module.features, self.data.eval_dataloader_for(task), device
                )
                out[task] = probe_accuracy(
                    train,
                    test,
                    self.data.specs[task].num_classes,
                    float(settings.l2),
                    int(settings.max_iter),
                )
            strategy.on_evaluation_end(module)
        log.info(
            "linear probes after task %d: %s (%.1f s)",
            point + 1,
            ", ".join(f"{t}={a:.3f}" for t, a in out.items()),
            time.perf_counter() - start,
        )
        return out

    def _initial_evaluation(self) -> None:
        """The evaluation before training, from the shared cache when this run's is there
        (``curlora.run.evaluation_cache``), else computed and stored for the next run."""
        # Workers never read the cache: process 0 decided before they started (a reused
        # evaluation is in progress.json, which they restore), and a cache entry appearing
        # in between must not make them skip an evaluation process 0 is running.
        use_cache = bool(self.cfg.get("reuse_initial_evaluation", True)) and self.writer
        key = evaluation_cache.initial_evaluation_key(self) if use_cache else None
        cache_dir = Path(self.cfg.paths.cache_dir)
        cached = evaluation_cache.load(cache_dir, key, self.tasks) if key else None
        if cached is not None:
            log.info(
                "evaluation before training: reused (same base, heads and data; key %s)", key[:12]
            )
            self.record.add(-1, cached)
            self._log_evaluation(-1, cached)
            return
        self._evaluate(-1)
        if key is not None:
            evaluation_cache.store(cache_dir, key, self.tasks, self.record.initial)

    def _log_evaluation(self, point: int, evaluation: Evaluation) -> None:
        """The numbers of one evaluation point against ``tasks_trained`` = point + 1, with
        the running average accuracy and BWT; for W&B also the forgetting-curve and
        perplexity charts, the matrix table and each head's confusion matrix."""
        if not self.loggers:
            return
        from curlora.reporting.wandb_report import evaluation_objects, running_metrics

        metrics: dict[str, float] = {}
        for task, score in evaluation.scores.items():
            metrics[f"eval/{task}/acc"] = score.accuracy
            metrics[f"eval/{task}/top_class_share"] = score.top_class_share
            if score.exact_match is not None:  # head=words: the whole-vocabulary exact match
                metrics[f"eval/{task}/em"] = score.exact_match
        for task, score in evaluation.validation.items():
            metrics[f"eval/{task}/validation_acc"] = score.accuracy
        if evaluation.perplexity is not None:
            metrics["lm/ppl"] = evaluation.perplexity.ppl
        for task, kept in evaluation.retention.items():
            metrics[f"retention/{task}/acc"] = kept.acc
            metrics[f"retention/{task}/acc_norm"] = kept.acc_norm
        trained = self.record.accuracy_matrix()[: point + 1]
        metrics.update(running_metrics(trained, self.tasks))
        ppl = self.record.perplexity()
        majority = self.data.majority_baseline()

        def objects() -> dict[str, Any]:
            return evaluation_objects(
                self.record.initial_accuracy(),
                trained,
                self.tasks,
                [majority[t] for t in self.tasks],
                [ppl["initial"], *ppl["after_task"][: point + 1]],
                {t: s.confusion for t, s in evaluation.scores.items()},
                {t: self.data.specs[t].display_names() for t in self.tasks},
            )

        for logger in self.loggers:
            logger.log_evaluation(metrics, point + 1, objects)

    # ------------------------------------------------------------------ state
    def save_progress(self, status: str) -> None:
        self.record.status = status
        self.record.fingerprint = self.fingerprint  # a record restored from an older file
        self.record.elapsed_s = self.elapsed_s()
        if self.writer:
            write_progress(self.run_dir, self.record)

    def elapsed_s(self) -> float:
        """Wall time of the run: earlier sessions (resume) plus this one."""
        start, before = self._clock
        return before + time.perf_counter() - start

    def restore(self) -> None:
        """Continue from what the run directory holds (see ``curlora.run.state``).

        The last readable task checkpoint decides how many tasks are done (its embedded
        record is what was measured up to it); ``progress.json`` adds the initial
        evaluation when no task finished yet. Damaged files are named in the log and
        skipped, falling back to the previous good state; nothing is written here. Edited
        ones are damaged too (``curlora.run.state.read_progress``): a number changed in
        ``progress.json`` costs the fallback (at worst the evaluation before training, done
        again), never a result that reports it. A
        ``progress.json`` or task checkpoint written for another experiment or base model
        (its fingerprint differs from this config's and base's) raises DamagedFile.
        """
        try:
            progress = read_progress(self.run_dir)
        except DamagedFile as error:
            log.warning(
                "resume: %s; using the task checkpoints instead (without one, the "
                "evaluation before training is done again)",
                error,
            )
            progress = None
        if progress is not None and progress.tasks != self.tasks:
            raise DamagedFile(
                self.run_dir / PROGRESS_FILE,
                f"it records tasks {progress.tasks}, the config has {self.tasks}",
            )
        if progress is not None:
            check_fingerprint(self.run_dir / PROGRESS_FILE, progress.fingerprint, self.fingerprint)
        found = latest_task_checkpoint(self.run_dir, len(self.tasks))
        if found is not None:
            index, checkpoint = found
            # Refused, not skipped: the checkpoints before it belong to the same other run.
            path = task_checkpoint(self.run_dir, index)
            check_fingerprint(path, checkpoint["record"].fingerprint, self.fingerprint)
            self.module.load_training_state(checkpoint["training_state"])
            set_rng_state(checkpoint["rng_state"])
            self.record = checkpoint["record"]
        elif progress is not None:
            # No task finished: keep the initial evaluation, nothing after it.
            self.record = RunRecord(self.tasks, initial=progress.initial)
        self.record.fingerprint = self.fingerprint  # files from before it was kept
        step_elapsed = 0.0
        if self.record.completed_tasks < len(self.tasks):
            # The step checkpoint training would continue from: refused if another run's.
            # Its wall time counts when the process that wrote it never reached an
            # evaluation point after it (killed mid-task): training goes on from there.
            step_elapsed = check_step_checkpoint(
                self.run_dir, self.record.completed_tasks, self.fingerprint
            )
        before = max(
            0.0 if progress is None else progress.elapsed_s, self.record.elapsed_s, step_elapsed
        )
        self._clock = (time.perf_counter(), before)
        self.steps_after_task = self._saved_steps_after_task()
        log.info(
            "continuing %s: initial evaluation %s, %d of %d task(s) done",
            self.run_dir,
            "done" if self.record.initial is not None else "to do",
            self.record.completed_tasks,
            len(self.tasks),
        )

    def _saved_steps_after_task(self) -> list[int | None]:
        """The optimizer steps after each finished task, as ``logger_state.json`` recorded
        them (they place the experiment loggers' curves); unknown (None) for the tasks not
        finished. A value that no run writes (not a whole number ≥ 0, fewer than the task
        before it, a list of another length) is named in a warning and all are dropped: the
        curves then restart their step count, which moves no measured number."""
        saved = read_logger_state(self.run_dir).get("steps_after_task")
        unknown: list[int | None] = [None] * len(self.tasks)
        if saved is None:
            return unknown
        done = self.record.completed_tasks
        known = saved[:done] if isinstance(saved, list) else []
        valid = (
            isinstance(saved, list)
            and len(saved) == len(self.tasks)
            and all(type(s) is int and s >= 0 for s in known if s is not None)
        )
        counted = [s for s in known if s is not None]
        if not valid or counted != sorted(counted):
            log.warning(
                "%s: steps_after_task=%.80r is not what a run writes; ignored (the loggers' "
                "step count restarts)",
                self.run_dir / LOGGER_STATE_FILE,
                saved,
            )
            return unknown
        return [*known, *unknown[done:]]

    # ------------------------------------------------------------------ the loop
    def run(self) -> str:
        if self.record.initial is None:
            self._initial_evaluation()
            self.save_progress("running")
        self.guard.check()
        for index in range(self.record.completed_tasks, len(self.tasks)):
            self._train_task(index)
        if self.writer:
            self._save_final_weights()
        if self.scope is not None:
            self.scope.completed = True
        return "completed"

    def _save_final_weights(self) -> None:
        """The trained adapter (``adapter/``, which ``load_adapter`` reads; unless the
        method's ``saves_final_adapter`` is False) and the heads (``heads.safetensors``, which
        ``load_heads`` reads)."""
        if applied_method(self.backbone).saves_final_adapter:
            save_adapter(self.backbone, self.run_dir / "adapter")
        else:
            log.info("the whole trained backbone is in the last task checkpoint; no adapter/")
        save_heads(self.module.heads.state_dict(), self.run_dir)

    def _train_task(self, index: int) -> None:
        task = self.tasks[index]
        start = time.perf_counter()
        self.data.set_task(task)
        self.module.set_task(task)
        trainer = self._trainer(index)
        self._set_step_offset(self._steps_before(index))
        self.module.train()  # Lightning keeps the mode it finds; evaluation leaves eval mode
        before = self._adapter_snapshot()
        resume_from = usable_step_checkpoint(self.run_dir, index)
        trainer.fit(
            self.module,
            datamodule=self.data,
            ckpt_path=str(resume_from) if resume_from is not None else None,
            weights_only=True,  # a step checkpoint is data: never unpickle code from it
        )
        self.guard.check()
        self._check_adapter_moved(before, index)
        self.steps_after_task[index] = self._steps_before(index) + int(trainer.global_step)
        self._set_step_offset(self.steps_after_task[index])
        self._evaluate(index)
        self._log_adapter_diagnostics(index)
        if self.writer:
            # Before the task checkpoint: a crash in between redoes the task, and its entry
            # is written again.
            update_logger_state(self.run_dir, steps_after_task=self.steps_after_task)
            save_task_checkpoint(self.run_dir, index, self.module.training_state(), self.record)
        self.save_progress("running")
        row = ", ".join(
            f"{t}={a:.3f}"
            for t, a in zip(self.tasks, self.record.accuracy_matrix()[index], strict=True)
            if a is not None
        )
        ppl = self.record.perplexity()["after_task"][index]
        log.info(
            "task %d/%d %s | acc: %s | ppl %s | %.0fs",
            index + 1,
            len(self.tasks),
            task,
            row,
            "-" if ppl is None else f"{ppl:.3f}",
            time.perf_counter() - start,
        )
        self.guard.check()

    # ------------------------------------------------------------------ adapter checks
    def _adapter_snapshot(self) -> dict[str, torch.Tensor] | None:
        """Copies of the shared (non-head) trainable tensors, to see whether they moved;
        None when there are none or they are too large to copy cheaply (full fine-tuning
        of a large model)."""
        heads = head_param_ids(self.module)
        shared = [(n, p) for n, p in self.module.trainable_named_parameters() if id(p) not in heads]
        if not shared or sum(p.numel() for _, p in shared) > 50_000_000:
            return None
        return {n: p.detach().clone() for n, p in shared}

    def _check_adapter_moved(self, before: dict[str, torch.Tensor] | None, index: int) -> None:
        """An adapter none of whose parameters changed during a task has learned nothing
        (e.g. an update scale so large that Adam's second moment overflows): warn."""
        if before is None:
            return
        params = dict(self.module.trainable_named_parameters())
        if all(torch.equal(params[n].detach(), t) for n, t in before.items()):
            task = self.tasks[index]
            warning = make_warning(
                INERT_ADAPTER,
                evaluated_after=task,
                detail=f"no adapter parameter changed while training {task}: the adapter "
                "learned nothing (check the learning rate and the update scale alpha)",
            )
            self.record.warnings.append(warning)
            log.warning("%s", warning["detail"])

    def _steps_before(self, index: int) -> int:
        """Optimizer steps of the run before task ``index`` (0 when unknown: a run
        directory from before the count was kept)."""
        known = [s for s in self.steps_after_task[:index] if s is not None]
        return known[-1] if known else 0

    def _set_step_offset(self, offset: int) -> None:
        for logger in self.loggers:
            logger.set_step_offset(offset)

    def _log_adapter_diagnostics(self, index: int) -> None:
        """‖ΔW‖_F/‖W‖_F (and ‖U‖_F, ‖A‖_F, ...) after each task: aggregates over layers
        (and for W&B a per-layer table; see ``curlora.reporting.adapter_stats``)."""
        diagnostics = adapter_diagnostics(self.backbone) if self.loggers else {}
        if diagnostics:
            for logger in self.loggers:
                logger.log_adapter_stats(diagnostics, index + 1)

    def close_loggers(self) -> None:
        for logger in self.loggers:
            logger.close()

    def context(self) -> dict[str, Any]:
        """What reporting needs besides the record."""
        return {
            "trainable_params": self.trainable_params,
            "majority_baseline": self.data.majority_baseline(),
            "validation_majority": self.data.majority_baseline("validation"),
            "label_balance": self.data.label_balance(),
        }
