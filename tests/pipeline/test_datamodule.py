"""TaskSequenceDataModule on synthetic tasks and the tiny tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curlora.data.datamodule import TaskSequenceDataModule
from curlora.data.sampling import ResumableShuffleSampler
from curlora.data.sources.synthetic import SyntheticTask
from curlora.data.tasks import TaskSpec
from curlora.data.validation import DataError
from curlora.models.tiny import build_tokenizer


def _specs(train_limit: int | None = 50) -> dict[str, TaskSpec]:
    sizes = {"train": 80, "validation": 20, "test": 20}
    return {
        "pairs": TaskSpec(
            name="pairs",
            source=SyntheticTask(kind="pair", seed=1, sizes=sizes),
            text_field="sentence1",
            text_pair_field="sentence2",
            label_field="label",
            num_classes=2,
            train_limit=train_limit,
        ),
        "reviews": TaskSpec(
            name="reviews",
            source=SyntheticTask(kind="sentiment", lexicon="a", seed=2, sizes=sizes),
            text_field="sentence",
            label_field="label",
            num_classes=2,
            train_limit=train_limit,
        ),
    }


def _datamodule(tmp_path: Path, seed: int = 1311, **kwargs) -> TaskSequenceDataModule:
    specs = kwargs.pop("specs", _specs())
    dm = TaskSequenceDataModule(
        specs,
        list(specs),
        build_tokenizer(),
        tmp_path,
        seed=seed,
        max_length=32,
        batch_size=8,
        **kwargs,
    )
    dm.setup()
    return dm


def test_subset_sizes_balance_and_majority_baseline(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path)
    balance = dm.label_balance()
    # train_limit=50 of 80 generated rows; eval keeps the whole split (20 rows).
    assert balance["pairs"]["train"]["size"] == 50
    assert balance["pairs"]["eval"]["size"] == 20
    # Synthetic labels alternate 0/1 before shuffling, so each split is exactly balanced.
    assert balance["reviews"]["eval"]["label_counts"] == [10, 10]
    assert dm.majority_baseline()["reviews"] == pytest.approx(0.5)


def test_training_subset_depends_on_run_seed_only(tmp_path: Path) -> None:
    first = _datamodule(tmp_path, seed=1)
    again = _datamodule(tmp_path, seed=1)
    other = _datamodule(tmp_path, seed=2)
    ids = lambda dm: [e["input_ids"] for e in dm.train_examples("pairs")]  # noqa: E731
    assert ids(first) == ids(again)
    assert ids(first) != ids(other)


def test_batches_are_dynamically_padded_and_end_with_eos(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path, append_eos=True)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "index"}
    lengths = batch["attention_mask"].sum(dim=1)
    # Dynamic padding: the batch is as long as its longest example, no longer.
    assert batch["input_ids"].shape[1] == int(lengths.max())
    eos = dm.tokenizer.eos_token_id
    last = batch["input_ids"][torch.arange(len(lengths)), lengths - 1]
    assert (last == eos).all()


def test_pair_tasks_contain_both_sentences(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path)
    example = dm.train_examples("pairs")[0]
    # Both halves survive: a synthetic sentence has at least 5 words, a pair at least 10.
    assert len(example["input_ids"]) >= 10


def test_eval_loaders_follow_task_order(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path)
    loaders = dm.val_dataloader()
    assert len(loaders) == 2
    assert sum(len(b["labels"]) for b in loaders[1]) == 20


def test_truncation_is_counted_and_a_length_that_cuts_most_texts_is_refused(
    tmp_path: Path,
) -> None:
    specs = _specs()
    dm = TaskSequenceDataModule(
        specs, list(specs), build_tokenizer(), tmp_path, seed=0, max_length=5
    )
    # Word-level tokenizer: "[BOS]"-free, one token per word; 1 of 4 texts is longer than 5.
    texts = ["good film", "bad film", "a good film", "a very very good and fine film"]
    examples, truncated = dm._tokenise(
        specs["reviews"], "train", texts, None, [1, 0, 1, 1], [0, 1, 2, 3]
    )
    assert truncated == 1
    assert [len(e["input_ids"]) for e in examples] == [2, 2, 3, 5]
    # data.max_length=1 cuts every text to one token: refused by name, not run silently.
    with pytest.raises(DataError, match=r"data.max_length=1 cuts 50 of 50"):
        TaskSequenceDataModule(
            specs, list(specs), build_tokenizer(), tmp_path, seed=0, max_length=1
        ).setup()


def test_label_map_drops_and_counts_unmapped_rows(tmp_path: Path) -> None:
    specs = _specs(train_limit=None)
    specs["reviews"] = TaskSpec(
        **{**specs["reviews"].__dict__, "label_map": {1: 1}, "num_classes": 2}
    )
    dm = _datamodule(tmp_path, specs=specs)
    # Half of the 80 training rows have label 0, which the map leaves out.
    assert dm.label_balance()["reviews"]["train"]["dropped_unmapped"] == 40
    assert dm.label_balance()["reviews"]["train"]["label_counts"] == [0, 40]


def test_sampler_resumes_mid_epoch_with_the_same_order() -> None:
    sampler = ResumableShuffleSampler(20, seed=3, batch_size=4)
    sampler.set_epoch(2)
    full = list(sampler)
    resumed = ResumableShuffleSampler(20, seed=3, batch_size=4)
    resumed.resume_from(epoch=2, batches_consumed=3)
    resumed.set_epoch(2)  # Lightning restarts the interrupted epoch
    assert list(resumed) == full[12:]
    # The resume applies once; the next epoch is a fresh permutation again.
    resumed.set_epoch(3)
    assert sorted(resumed) == list(range(20)) and list(resumed) != full


def test_sampler_drops_the_position_of_an_epoch_that_had_finished() -> None:
    # A checkpoint on the last batch of epoch 2: Lightning restarts at epoch 3, which must
    # be a whole epoch (replaying epoch 2 from its end would be an empty epoch).
    sampler = ResumableShuffleSampler(20, seed=3, batch_size=4)
    sampler.set_epoch(3)
    full = list(sampler)
    resumed = ResumableShuffleSampler(20, seed=3, batch_size=4)
    resumed.resume_from(epoch=2, batches_consumed=5)
    resumed.set_epoch(3)
    assert list(resumed) == full


def test_length_grouped_training_order_is_seeded_and_groups_similar_lengths() -> None:
    lengths = [(i * 37) % 50 + 1 for i in range(400)]
    plain = ResumableShuffleSampler(400, seed=3, batch_size=4)
    grouped = ResumableShuffleSampler(400, seed=3, batch_size=4, lengths=lengths)
    order = grouped.permutation(0)
    assert sorted(order) == list(range(400)) and order == grouped.permutation(0)
    size = 4 * ResumableShuffleSampler.GROUP_BATCHES
    for start in range(0, 400, size):  # each chunk of the seeded permutation, longest first
        chunk = order[start : start + size]
        assert sorted(chunk) == sorted(plain.permutation(0)[start : start + size])
        assert [lengths[i] for i in chunk] == sorted((lengths[i] for i in chunk), reverse=True)

    def padded(o: list[int]) -> int:
        return sum(4 * max(lengths[i] for i in o[b : b + 4]) for b in range(0, 400, 4))

    assert padded(order) < 0.8 * padded(plain.permutation(0))


def test_validation_is_carved_from_training_by_whole_groups_and_never_trained_on(
    tmp_path: Path,
) -> None:
    from curlora.data.datamodule import carve_validation

    groups = [f"sentence {i // 3}" for i in range(60)]  # 20 groups of 3 rows
    carved = carve_validation("t", groups, 10)
    assert len(carved) == 12  # whole groups: 4 groups of 3 reach the limit
    assert {groups[i] for i in carved}.isdisjoint({groups[i] for i in range(60) if i not in carved})
    assert carved == carve_validation("t", list(groups), 10)  # no seed, no randomness
    specs = {
        name: TaskSpec(**{**spec.__dict__, "validation_limit": 20})
        for name, spec in _specs(train_limit=None).items()
    }
    for seed in (1, 2):
        dm = _datamodule(tmp_path, seed=seed, specs=specs)
        validation = {tuple(e["input_ids"]) for e in dm.prepared["pairs"].validation}
        train = {tuple(e["input_ids"]) for e in dm.train_examples("pairs")}
        assert len(dm.prepared["pairs"].validation) >= 20 and validation.isdisjoint(train)
        assert dm.eval_streams == [
            ("pairs", "eval"),
            ("reviews", "eval"),
            ("pairs", "validation"),
            ("reviews", "validation"),
        ]
        assert dm.label_balance()["pairs"]["validation"]["size"] == len(validation)
