"""Runs with several processes (``trainer=ddp_cpu``: 2 processes, gloo) against one process:
the samplers' shards, the numbers, the files, interrupt and resume, the refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from curlora.checks.config import ConfigError, validate_config
from curlora.data.sampling import LengthSortedBatches, ResumableShuffleSampler
from curlora.distributed import WORKER_CONFIG
from curlora.train import run
from tests.conftest import REPO_ROOT, TINY, compose_run_config, run_cli

# The README's command (run as written, with debug=tiny, here and not again by the
# README-command test): two processes, batches of 8 each. Against one process with batches
# of 16: process r takes the positions r, r+2, ... of the same seeded order, so its k-th
# batch and the other's are together exactly the one-process run's k-th batch, and DDP
# averages the two halves' mean gradients: the same update up to float summation order
# (the tiny model has no dropout). Perplexity is measured by process 0 on the same model.
README_COMMAND = ["trainer=ddp_cpu", "data.batch_size=8"]
TWO_PROCESSES = [*README_COMMAND, *TINY]
PPL_RTOL = 1e-5
# Final accuracies: an example whose two logits are within float rounding of each other can
# flip; 0.02 is 2 of the 100 records of a synthetic eval split.
ACC_TOL = 0.02
# 99 eval records for one task: two processes cannot split it evenly (Lightning's
# DistributedSampler would pad it to 100 with a duplicate).
ODD_SPLIT = "data.task_specs.pairs.eval_limit=99"


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny run as two processes (the README's command) and as one (in this process:
    ``debug=tiny`` has batches of 16)."""
    cwd = tmp_path_factory.mktemp("two")
    done = run_cli(TWO_PROCESSES, cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    (two,) = (cwd / "logs" / "runs").glob("*")
    one_cfg = compose_run_config(tmp_path_factory.mktemp("one"), TINY)
    assert run(one_cfg)["status"] == "completed"
    return {"one": Path(one_cfg.paths.output_dir), "two": two}


# ---------------------------------------------------------------- samplers
@pytest.mark.parametrize("n", [1, 7, 20, 33])
def test_training_shards_are_equal_in_length_and_cover_the_order(n: int) -> None:
    one = ResumableShuffleSampler(n, seed=3, batch_size=4)
    shards = [
        ResumableShuffleSampler(n, seed=3, batch_size=4, rank=r, num_replicas=3) for r in range(3)
    ]
    for s in (one, *shards):
        s.set_epoch(1)
    parts = [list(s) for s in shards]
    assert {len(p) for p in parts} == {-(-n // 3)} == {len(s) for s in shards}
    # Interleaved back, the shards are the one-process order wrapped to a multiple of 3.
    woven = [parts[i % 3][i // 3] for i in range(3 * len(parts[0]))]
    order = list(one)
    assert woven == [order[i % n] for i in range(len(woven))]


def test_a_training_shard_resumes_inside_its_epoch() -> None:
    full = ResumableShuffleSampler(30, seed=5, batch_size=4, rank=1, num_replicas=2)
    full.set_epoch(2)
    resumed = ResumableShuffleSampler(30, seed=5, batch_size=4, rank=1, num_replicas=2)
    resumed.resume_from(epoch=2, batches_consumed=2)
    resumed.set_epoch(2)
    assert list(resumed) == list(full)[8:]


@pytest.mark.parametrize(("n", "processes"), [(1, 2), (9, 2), (10, 3), (64, 4)])
def test_eval_shards_score_every_example_exactly_once(n: int, processes: int) -> None:
    lengths = [(i * 13) % 11 + 1 for i in range(n)]
    seen = [
        i
        for rank in range(processes)
        for batch in LengthSortedBatches(lengths, 4, rank, processes)
        for i in batch
    ]
    assert sorted(seen) == list(range(n))  # no example twice, none left out, no padding


# ---------------------------------------------------------------- two processes vs one
def test_two_processes_give_the_numbers_of_one(runs: dict[str, Path]) -> None:
    one, two = _results(runs["one"]), _results(runs["two"])
    assert two["status"] == "completed"
    assert two["initial_accuracy"] == one["initial_accuracy"]
    assert two["perplexity"]["tokens"] == one["perplexity"]["tokens"]
    ppl_one = [one["perplexity"]["initial"], *one["perplexity"]["after_task"]]
    ppl_two = [two["perplexity"]["initial"], *two["perplexity"]["after_task"]]
    assert ppl_two == pytest.approx(ppl_one, rel=PPL_RTOL)
    for row_one, row_two in zip(one["accuracy_matrix"], two["accuracy_matrix"], strict=True):
        assert row_two == pytest.approx(row_one, abs=ACC_TOL)
    assert two["config"]["trainer"]["devices"] == 2


def test_two_processes_score_each_eval_example_once_and_write_one_run(
    runs: dict[str, Path],
) -> None:
    run_dir = runs["two"]
    results = _results(run_dir)
    sizes = {t: b["eval"]["size"] for t, b in results["label_balance"].items()}
    # The confusion counts of every evaluation point add up to the split: each record
    # scored once over the two processes.
    progress = json.loads((run_dir / "progress.json").read_text())
    for point in (progress["initial"], *progress["after_task"]):
        for task, score in point["scores"].items():
            assert sum(map(sum, score["confusion"])) == sizes[task]
    one = json.loads((runs["one"] / "progress.json").read_text())
    assert progress["initial"]["scores"] == one["initial"]["scores"]
    assert len(list(run_dir.parent.parent.rglob("results.json"))) == 1
    assert not (run_dir / WORKER_CONFIG).exists()
    # One task checkpoint per task, each with the sha256 sidecar written beside it (one
    # writer: process 0).
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == sorted(
        [f"task_{i}.ckpt" for i in range(3)] + [f"task_{i}.ckpt.sha256" for i in range(3)]
    )
    assert (run_dir / "adapter" / "adapter.safetensors").is_file()


@pytest.mark.slow  # three two-process runs: about a minute on 2 cores
def test_a_sigterm_stops_both_processes_and_resume_finishes_the_run(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """SIGTERM to process 0 only (``kill <pid>``): both stop after the same batch, 143;
    ``resume=`` with two processes gives the uninterrupted run's numbers."""
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        *TWO_PROCESSES,
        f"paths.output_dir={tmp_path / 'run'}",
        "trainer.max_epochs=3",
    ]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_task = tmp_path / "run" / "checkpoints" / "task_0.ckpt"
    deadline = time.monotonic() + 600
    while not first_task.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr.decode()[-4000:]
    interrupted = _results(tmp_path / "run")
    assert interrupted["status"] == "interrupted by SIGTERM"
    done = run_cli([f"resume={tmp_path / 'run'}"], cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    resumed = _results(tmp_path / "run")
    assert resumed["status"] == "completed"
    # The uninterrupted three-epoch run, for comparison (a new directory).
    reference = run_cli(
        [*TWO_PROCESSES, "trainer.max_epochs=3", f"paths.output_dir={tmp_path / 'ref'}"],
        cwd=tmp_path,
        timeout=900,
    )
    assert reference.returncode == 0, reference.stderr[-4000:]
    expected = _results(tmp_path / "ref")
    assert resumed["accuracy_matrix"] == expected["accuracy_matrix"]
    assert resumed["perplexity"]["after_task"] == pytest.approx(
        expected["perplexity"]["after_task"], rel=PPL_RTOL
    )


@pytest.mark.slow  # two two-process runs
def test_a_multirun_starts_the_processes_of_each_job(tmp_path: Path) -> None:
    """Each job's process 0 starts its own worker: the first job's process group is closed
    and the environment restored when it ends. An eval split of 99 records is scored once
    per record (Lightning's DistributedSampler would pad it to 100)."""
    done = run_cli(
        ["-m", "trainer=ddp_cpu", "seed=1,2", ODD_SPLIT, *TINY], cwd=tmp_path, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = sorted((tmp_path / "logs" / "multiruns").glob("*/*/results.json"))
    assert [p.parent.name for p in results] == ["0_seed=1", "1_seed=2"]
    assert {json.loads(p.read_text())["status"] for p in results} == {"completed"}
    # A split two processes cannot halve is still scored once per record.
    for path in results:
        progress = json.loads((path.parent / "progress.json").read_text())
        for point in (progress["initial"], *progress["after_task"]):
            assert sum(map(sum, point["scores"]["pairs"]["confusion"])) == 99


# ---------------------------------------------------------------- refused up front
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["trainer.accelerator=cpu", "trainer.devices=2"], ["strategy='auto'", "trainer=ddp_cpu"]),
        (["trainer=ddp_cpu", "trainer.strategy=fsdp"], ["trainer.strategy='fsdp'", "shard"]),
        (["trainer=ddp_cpu", "trainer.num_nodes=2"], ["trainer.num_nodes=2", "one machine"]),
        # The README's own examples, on the default trainer (the keys exist there too).
        (["trainer.strategy=fsdp"], ["trainer.strategy='fsdp'", "shard"]),
        (["trainer.num_nodes=2"], ["trainer.num_nodes=2", "one machine"]),
        # DDP with one process: Lightning would wrap the loop's batch sampler and fail late.
        (
            ["trainer.strategy=ddp"],
            ["trainer.strategy='ddp' is not valid since it is a multi-process", "auto"],
        ),
        (
            ["trainer=ddp_cpu", "trainer.use_distributed_sampler=true"],
            ["trainer.use_distributed_sampler=True", "duplicates"],
        ),
    ],
)
def test_unsupported_multi_process_settings_are_refused(run_config, overrides, words) -> None:
    with pytest.raises(ConfigError) as error:
        validate_config(run_config(*overrides))
    for word in words:
        assert word in str(error.value), str(error.value)


@pytest.mark.slow  # two more runs, one of them with two processes: about a minute on 2 cores
def test_two_processes_give_the_numbers_of_one_under_words(tmp_path: Path) -> None:
    """head=words: the exact match is gathered over the processes like the accuracy (each
    record scored once, the zero-shot row identical, later rows within rounding)."""
    words = ["head=words", "method=lora"]
    (tmp_path / "two").mkdir()
    done = run_cli([*TWO_PROCESSES, *words], cwd=tmp_path / "two", timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    (two_dir,) = (tmp_path / "two" / "logs" / "runs").glob("*")
    one_cfg = compose_run_config(tmp_path / "one", [*TINY, *words])
    one, two = run(one_cfg), _results(two_dir)
    assert two["initial_accuracy"] == one["initial_accuracy"]
    assert two["head"]["initial_exact_match"] == one["head"]["initial_exact_match"]
    for key, pick in (("accuracy", lambda r: r["accuracy_matrix"]),
                      ("em", lambda r: r["head"]["exact_match_matrix"])):  # fmt: skip
        for row_one, row_two in zip(pick(one), pick(two), strict=True):
            assert row_two == pytest.approx(row_one, abs=ACC_TOL), key


@pytest.mark.parametrize("digest", [None, "0" * 64])
def test_a_worker_builds_nothing_from_a_config_process_0_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], digest
) -> None:
    """A ``.worker_config.yaml`` that came with a received run directory names a class of
    someone else's; the worker refuses it (exit 2, one line) before parsing it, because its
    SHA-256 is not the one process 0 handed over (missing or different)."""
    from curlora.distributed import WORKER_DIGEST_ENV, WORKER_ENV, config_digest, worker

    planted = "model:\n  _target_: os.system\n  command: touch pwned\n"
    (tmp_path / WORKER_CONFIG).write_text(planted)
    built: list[object] = []

    class Reached(Exception):
        pass

    def stand_in_loop(cfg: object, *args: object) -> None:
        built.append(cfg)
        raise Reached

    monkeypatch.setattr(worker, "TaskLoop", stand_in_loop)
    monkeypatch.setenv(WORKER_ENV, str(tmp_path))
    if digest is None:
        monkeypatch.delenv(WORKER_DIGEST_ENV, raising=False)
    else:
        monkeypatch.setenv(WORKER_DIGEST_ENV, digest)
    assert worker.main([str(tmp_path)]) == 2
    assert built == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and WORKER_CONFIG in err[0] and "refused" in err[0]
    # The same file with its own digest passes the check and reaches the loop.
    monkeypatch.setenv(WORKER_DIGEST_ENV, config_digest(planted.encode()))
    with pytest.raises(Reached):
        worker.main([str(tmp_path)])
    assert len(built) == 1
