"""TaskSequenceDataModule: the ordered tasks of a continual run, tokenised once.

It loads every task's train and eval split through its source, checks them (columns,
labels, empty texts) before anything trains, draws the training subset with the run seed,
tokenises each split once, and serves: the *current* task's train loader, eval loaders for
*every* task (in sequence order), and per-task examples for strategies (replay, LwF, EWC).

A batch is ``{"input_ids": Long[B, T], "attention_mask": Long[B, T], "labels": Long[B],
"index": Long[B]}``, padded to the longest example of the batch (dynamic padding);
``index`` is the example's row in its task's (sub-sampled) training split. Under
``head=words`` (``answer_tokens`` given) an example is its task's template with the text
filled in followed by the tokens of its class's label word, and batches also hold
``"answer_length": Long[B]``, how many tokens of the answer end each sequence.

Built from ``configs/data/<name>.yaml`` (``_target_`` with ``_partial_: true``: the task
loop adds the tokenizer, cache directory, seed and task order) and handed to every Trainer,
which calls its loaders; its ``state_dict`` records where the training stream stands, so a
step checkpoint resumes mid-epoch on exactly the next batch. Loaders never draw from the
global RNG (each has its own generator), so data loading cannot shift dropout masks.
"""

from __future__ import annotations

import statistics
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from curlora.data.sampling import LengthSortedBatches, ResumableShuffleSampler
from curlora.data.sources import load_corpus, load_task_split
from curlora.data.tasks import TaskSpec
from curlora.data.templates import render, template_suffix
from curlora.data.validation import DataError, check_split, map_labels
from curlora.metrics.perplexity import tokenize_corpus

Example = dict[str, Any]
MAX_TRUNCATED_SHARE = 0.5  # more than this share of a split cut short is a config mistake


@dataclass
class SplitStats:
    """Size and label balance of one prepared split (after label mapping and sub-sampling)."""

    size: int
    label_counts: list[int]
    dropped_unmapped: int = 0
    truncated: int = 0

    @property
    def majority_baseline(self) -> float:
        """Accuracy of always predicting the most frequent class."""
        return max(self.label_counts) / self.size if self.size else float("nan")


@dataclass
class PreparedTask:
    spec: TaskSpec
    train: list[Example] = field(default_factory=list)
    eval: list[Example] = field(default_factory=list)
    validation: list[Example] = field(default_factory=list)
    stats: dict[str, SplitStats] = field(default_factory=dict)


def carve_validation(task: str, groups: list[str], limit: int | None) -> list[int]:
    """Row indices of a validation set carved from a training split, for model selection.

    Whole groups (rows sharing their first text: the reasons given for one WinoWhy sentence,
    duplicated review snippets) go to validation in the order of a hash of the task name
    and the group, until ``limit`` rows are reached, so no group straddles validation and
    training (no leak) and the carve depends on neither the run seed nor the row order.
    """
    if not limit:
        return []
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)

    def rank(group: str) -> int:
        return zlib.crc32(f"{task}:validation:{group}".encode())

    chosen: list[int] = []
    for group in sorted(members, key=lambda g: (rank(g), g)):
        if len(chosen) >= limit:
            break
        chosen.extend(members[group])
    return sorted(chosen)


class TaskSequenceDataModule(L.LightningDataModule):
    """Serves an ordered sequence of classification tasks; see the module docstring."""

    def __init__(
        self,
        task_specs: Mapping[str, TaskSpec | Mapping[str, Any]],
        tasks: Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        cache_dir: str | Path,
        seed: int,
        max_length: int = 128,
        batch_size: int = 8,
        eval_batch_size: int = 32,
        num_workers: int = 0,
        pair_separator: str = "\n",
        append_eos: bool = False,
        corpus: Mapping[str, Any] | None = None,
        group_by_length: bool = False,
        answer_tokens: Mapping[str, Sequence[Sequence[int]]] | None = None,
    ) -> None:
        super().__init__()
        missing = [t for t in tasks if t not in task_specs]
        if missing:
            raise ValueError(f"tasks {missing} have no spec; available: {sorted(task_specs)}")
        self.specs = {
            t: spec if isinstance(spec, TaskSpec) else TaskSpec.from_config(t, spec)
            for t, spec in ((t, task_specs[t]) for t in tasks)
        }
        self.tasks = list(tasks)
        self.tokenizer = tokenizer
        self.cache_dir = Path(cache_dir)
        self.seed = seed
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pair_separator = pair_separator
        self.append_eos = append_eos
        self.group_by_length = group_by_length
        # head=words: per task, each class's label-word token ids (None: head=linear).
        self.answer_tokens = answer_tokens
        self.prepared: dict[str, PreparedTask] = {}
        self.current_task: str = self.tasks[0]
        # Whether the next validation pass also scores the validation carves. The task loop
        # sets it: only after the last task, the one point that choosing settings reads
        # (the final average validation accuracy); earlier points skip that cost.
        self.score_validation: bool = True
        self.corpus_cfg = corpus
        self.corpus_ids: torch.Tensor | None = None  # [N] token ids of the perplexity corpus
        self.train_sampler: ResumableShuffleSampler | None = None
        # (epoch, batches consumed) restored from a step checkpoint, for the next train loader
        self._resume_position: tuple[int, int] | None = None
        self._collator = DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")

    # ------------------------------------------------------------------ preparation
    def setup(self, stage: str | None = None) -> None:
        """Load, check, sub-sample and tokenise every task once (later calls are no-ops)."""
        if self.prepared:
            return
        for task in self.tasks:
            spec = self.specs[task]
            prepared = PreparedTask(spec)
            for split, roles in (
                (spec.train_split, ("validation", "train")),
                (spec.eval_split, ("eval",)),
            ):
                data = load_task_split(spec, split, self.cache_dir)
                check_split(spec, split, data)
                texts, pairs, labels, dropped = map_labels(spec, split, data)
                pool = list(range(len(labels)))
                for role in roles:
                    if role == "validation":
                        # Carved first, from the whole training split, so it is the same for
                        # every seed and never overlaps a training subset.
                        order = carve_validation(task, texts, spec.validation_limit)
                        pool = sorted(set(pool) - set(order))
                    else:
                        # Training subsets follow the run seed (the paper's protocol);
                        # evaluation subsets are fixed, so every seed scores the same examples.
                        seed = self.seed if role == "train" else 0
                        limit = spec.train_limit if role == "train" else spec.eval_limit
                        picked = self._subsample(len(pool), limit, seed, salt=f"{task}:{role}")
                        order = [pool[i] for i in picked]
                    if role == "validation" and not order:
                        continue
                    examples, truncated = self._tokenise(spec, split, texts, pairs, labels, order)
                    counts = Counter(labels[i] for i in order)
                    prepared.stats[role] = SplitStats(
                        size=len(order),
                        label_counts=[counts.get(c, 0) for c in range(spec.num_classes)],
                        dropped_unmapped=dropped,
                        truncated=truncated,
                    )
                    setattr(prepared, role, examples)
            self.prepared[task] = prepared
        if self.corpus_cfg is not None:
            text = load_corpus(self.corpus_cfg, self.cache_dir)
            self.corpus_ids = tokenize_corpus(self.tokenizer, text)

    @staticmethod
    def _subsample(n: int, limit: int | None, seed: int, salt: str) -> list[int]:
        """Row indices of the split to keep: all in order, or ``limit`` drawn with ``seed``."""
        if limit is None or limit >= n:
            return list(range(n))
        # The salt keeps tasks' draws independent while depending only on the seed.
        generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{salt}".encode()))
        return sorted(torch.randperm(n, generator=generator)[:limit].tolist())

    def _tokenise(
        self,
        spec: TaskSpec,
        split: str,
        texts: list[str],
        pairs: list[str] | None,
        labels: list[int],
        order: list[int],
    ) -> tuple[list[Example], int]:
        if self.answer_tokens is not None:
            return self._tokenise_prompts(spec, split, texts, pairs, labels, order)
        joined = [
            texts[i] if pairs is None else f"{texts[i]}{self.pair_separator}{pairs[i]}"
            for i in order
        ]
        budget = self.max_length - (1 if self.append_eos else 0)
        encoded = self.tokenizer(joined, add_special_tokens=True, truncation=False)["input_ids"]
        examples, truncated, lengths = [], 0, []
        eos = self.tokenizer.eos_token_id
        for position, (row, ids) in enumerate(zip(order, encoded, strict=True)):
            if not ids:
                raise DataError(
                    f"task '{spec.name}', split '{split}', field '{spec.text_field}': row {row} "
                    "tokenises to nothing (empty text?)"
                )
            lengths.append(len(ids))
            if len(ids) > budget:
                # Keep the beginning: the label-bearing content of these tasks is up front.
                ids, truncated = ids[:budget], truncated + 1
            if self.append_eos and eos is not None:
                # Optional: classification then reads a fixed final token's state instead
                # of the last text token's (off by default; the README's data section
                # gives the measurement behind that choice).
                ids = [*ids, eos]
            examples.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * len(ids),
                    "labels": labels[row],
                    "index": position,
                }
            )
        self._check_truncation(spec, split, truncated, lengths)
        return examples, truncated

    def _tokenise_prompts(
        self,
        spec: TaskSpec,
        split: str,
        texts: list[str],
        pairs: list[str] | None,
        labels: list[int],
        order: list[int],
    ) -> tuple[list[Example], int]:
        """head=words: the template with the text filled in, then the label word's tokens.
        A prompt too long for ``max_length`` keeps its beginning and the template's text
        after the last placeholder (the question right before the answer). ``append_eos``
        does not apply: the answer's last token ends the sequence."""
        assert self.answer_tokens is not None and spec.template is not None
        answers = self.answer_tokens[spec.name]
        prompts = [
            render(spec.template, texts[i], None if pairs is None else pairs[i]) for i in order
        ]
        encoded = self.tokenizer(prompts, add_special_tokens=True, truncation=False)["input_ids"]
        suffix = self.tokenizer(template_suffix(spec.template), add_special_tokens=False)
        tail = list(suffix["input_ids"])
        examples, truncated, lengths = [], 0, []
        for position, (row, ids) in enumerate(zip(order, encoded, strict=True)):
            answer = list(answers[labels[row]])
            lengths.append(len(ids) + len(answer))
            budget = self.max_length - len(answer)
            if len(ids) > budget:
                ids, truncated = ids[: max(budget - len(tail), 0)] + tail, truncated + 1
            ids = [*ids, *answer]
            examples.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * len(ids),
                    "labels": labels[row],
                    "index": position,
                    "answer_length": len(answer),
                }
            )
        self._check_truncation(spec, split, truncated, lengths)
        return examples, truncated

    def _check_truncation(
        self, spec: TaskSpec, split: str, truncated: int, lengths: list[int]
    ) -> None:
        if truncated > MAX_TRUNCATED_SHARE * len(lengths):
            p95 = statistics.quantiles(lengths, n=20)[-1] if len(lengths) > 1 else lengths[0]
            raise DataError(
                f"task '{spec.name}', split '{split}': data.max_length={self.max_length} cuts "
                f"{truncated} of {len(lengths)} texts short (median length "
                f"{statistics.median(lengths):.0f} tokens, 95th percentile {p95:.0f}); "
                "valid: a data.max_length that keeps most texts whole"
            )

    # ------------------------------------------------------------------ serving
    def set_task(self, task: str) -> None:
        if task not in self.specs:
            raise ValueError(f"unknown task '{task}'; tasks: {self.tasks}")
        self.current_task = task

    def collate(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Pad a list of examples into a batch (right or left as the tokenizer pads)."""
        return dict(self._collator(list(examples)))

    def train_examples(self, task: str) -> list[Example]:
        return self.prepared[task].train

    def _generator(self) -> torch.Generator:
        """A loader's own generator: DataLoader draws its base seed from it (for worker
        seeds), never from the global RNG that dropout uses."""
        return torch.Generator().manual_seed(self.seed)

    def train_dataloader_for(self, task: str, batch_size: int | None = None) -> DataLoader:
        """A task's training examples in order (for strategies: Fisher, LwF targets)."""
        return DataLoader(
            self.prepared[task].train,
            batch_size=batch_size or self.eval_batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=self._generator(),
        )

    def process_shard(self) -> tuple[int, int]:
        """(rank, number of processes) of the Trainer this module serves; (0, 1) outside one.
        Several processes (DDP) each train on their own share of the current task and score
        their own share of every eval split (the samplers in ``curlora.data.sampling``);
        Lightning is told not to add its own sampler (``use_distributed_sampler: false`` in
        the DDP trainer configs), since its evaluation sampler pads with duplicates."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        """The current task's shuffled loader; its order depends only on (seed, task, epoch)
        (and, with several processes, on this process's rank)."""
        task = self.current_task
        examples = self.prepared[task].train
        rank, processes = self.process_shard()
        self.train_sampler = ResumableShuffleSampler(
            len(examples),
            seed=self.seed + 7919 * self.tasks.index(task),
            batch_size=self.batch_size,
            lengths=[len(e["input_ids"]) for e in examples] if self.group_by_length else None,
            rank=rank,
            num_replicas=processes,
        )
        if self._resume_position is not None:
            self.train_sampler.resume_from(*self._resume_position)
            self._resume_position = None
        return DataLoader(
            self.prepared[task].train,
            batch_size=self.batch_size,
            sampler=self.train_sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=self._generator(),
        )

    def eval_dataloader_for(
        self, task: str, role: str = "eval", shard: tuple[int, int] = (0, 1)
    ) -> DataLoader:
        """A task's eval split (or its ``validation`` carve) in batches of similar length
        (``LengthSortedBatches``); ``shard=(rank, processes)``: only that process's share."""
        examples = getattr(self.prepared[task], role)
        batches = LengthSortedBatches(
            [len(e["input_ids"]) for e in examples], self.eval_batch_size, *shard
        )
        return DataLoader(
            examples,
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=self._generator(),
        )

    @property
    def eval_streams(self) -> list[tuple[str, str]]:
        """What each validation loader holds, by ``dataloader_idx``: ``(task, "eval")`` for
        every task in sequence order, then, when :attr:`score_validation` is set,
        ``(task, "validation")`` for every task that has a validation carve."""
        streams = [(t, "eval") for t in self.tasks]
        if not self.score_validation:
            return streams
        return streams + [(t, "validation") for t in self.tasks if self.prepared[t].validation]

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per entry of :attr:`eval_streams` (this process's share of each)."""
        shard = self.process_shard()
        return [self.eval_dataloader_for(t, role, shard) for t, role in self.eval_streams]

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Where the training stream stands (saved in Lightning's step checkpoints): the
        current task, its epoch, and the batches of that epoch already trained on
        (``ready`` counts the batch being finished when a step checkpoint is saved)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {
            "task": self.current_task,
            "epoch": int(trainer.current_epoch),
            "batches": int(progress.ready),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next train loader continue the stream where the checkpoint left it."""
        if state_dict:
            self._resume_position = (int(state_dict["epoch"]), int(state_dict["batches"]))

    # ------------------------------------------------------------------ reporting
    def majority_baseline(self, role: str = "eval") -> dict[str, float]:
        """Per task, the accuracy of always predicting the most frequent class of the eval
        split (or of the validation carve: ``role="validation"``; tasks without one left out)."""
        return {
            t: p.stats[role].majority_baseline for t, p in self.prepared.items() if role in p.stats
        }

    def label_balance(self) -> dict[str, dict[str, Any]]:
        """Per task and split: size, label counts, dropped (unmapped) and truncated rows."""
        return {
            t: {
                role: {
                    "size": s.size,
                    "label_counts": s.label_counts,
                    "dropped_unmapped": s.dropped_unmapped,
                    "truncated": s.truncated,
                    "majority_baseline": s.majority_baseline,
                }
                for role, s in p.stats.items()
            }
            for t, p in self.prepared.items()
        }
