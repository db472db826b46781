"""Fault injection at every write and read site the code has (``io_sites`` finds them).

Writes: at each write site, the write fails the way a cluster makes it fail: ENOSPC,
EACCES, torch.save's RuntimeError, safetensors' SafetensorError (one per site, in turn;
the writer itself meets every kind in ``test_the_writer_turns_every_failure_into_one_line``).
Reads: at each read site, the file is damaged on disk just before it is read: truncated,
one non-UTF-8 byte in the middle, or valid JSON/YAML of the wrong type.

A *driver* runs the command (or library entry point) that reaches a site, in process; the
site's module picks the driver. Every ending is checked the same way: no traceback (no
exception other than the documented ones escapes), the documented exit code, the file
named in one line (an error) or in a warning (a skipped cache, a fallback, a listed
skip), and nothing written before is half-written. A site whose module has no driver
fails the suite until one is added here, or the site is listed in ``NOT_DRIVEN`` with the
reason and the test that covers it instead.
"""

from __future__ import annotations

import builtins
import errno
import importlib
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import safetensors
import torch
from omegaconf import OmegaConf, open_dict

from curlora.adapters.saving import AdapterFileError
from curlora.checks.config import ConfigError
from curlora.cli import EXIT_CONFIG, EXIT_OK, EXIT_OUTPUT, run_job
from curlora.data.assets import AssetError
from curlora.data.validation import DataError
from curlora.reporting.results import ResultsError, load_results
from curlora.run import atomic
from curlora.run.atomic import OutputError
from curlora.train import run
from tests.conftest import TINY, compose_run_config, skip_grid_job_prechecks
from tests.pipeline.faults import SimulatedCrash
from tests.pipeline.io_sites import SRC, Site, all_sites, sites

RUN = [*TINY, "logger=none", "checkpoint.every_n_train_steps=1"]
CARVE = ["data.task_specs.pairs.validation_limit=8"]
CRASH = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: reviews, step: 2, "
    "marker: '%s'}"
)
# Exceptions a library entry point may end with: each is one line naming the file, and the
# command line turns it into this exit code.
DOCUMENTED = {
    OutputError: EXIT_OUTPUT,
    ConfigError: EXIT_CONFIG,
    DataError: EXIT_CONFIG,
    ResultsError: 1,  # curlora-report: nothing to report
    AdapterFileError: EXIT_CONFIG,
    AssetError: 3,
}
WRITE_FAULTS: tuple[BaseException, ...] = (
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EACCES, "Permission denied"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),
    safetensors.SafetensorError("Error while serializing: I/O error: No space left (os error 28)"),
)
DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "non-utf8": lambda data: data[: len(data) // 2] + b"\xff" + data[len(data) // 2 :],
    "wrong-type": lambda data: b"[1, 2, 3]\n",
}
# Sites no driver here reaches, with the reason and what covers them instead.
NOT_DRIVEN = {
    ("distributed/__init__.py", "RunDirectoryLauncher._call_children_scripts"): "the worker config "
    "of trainer=ddp_cpu (two processes, minutes): the same atomic writer; "
    "tests/pipeline/test_distributed.py runs it",
    ("distributed/worker.py", "main"): "reads the worker config process 0 wrote a moment "
    "before in the run directory it locks, and refuses any other bytes by their SHA-256 "
    "(tests/pipeline/test_distributed.py: a planted file builds nothing)",
    ("data/sources/hub.py", "load_hub_split"): "the Hub branch downloads (no network in "
    "tests); unreachable Hub: tests/data/test_hub_sources.py",
    ("data/sources/offline.py", "_vitaminc_rows"): "asset files, verified against the sha256 "
    "of their PROVENANCE.json before any read (test_assets: damaged files are re-extracted); "
    "the real archives are not fetched in the fast tests",
    ("data/sources/offline.py", "_winowhy_rows"): "as _vitaminc_rows",
    ("data/sources/offline.py", "_convention_rows"): "as _vitaminc_rows",
    ("data/served.py", "default_assets"): "reads the package's own shipped configs (the "
    "default data and model), never a run's or a received file; tests/data/test_served.py",
    ("data/sources/offline.py", "_vader_rows.rows_of"): "as _vitaminc_rows",
    ("data/sources/offline.py", "OfflineCorpus.load"): "as _vitaminc_rows",
    ("checks/targets.py", "shipped_targets"): "the package's own configs/ (shipped with the "
    "code, read as plain YAML): not a file a user receives; a YAML Hydra cannot read fails "
    "every command first",
    ("run/guard.py", "remove_if_unused"): "Hydra's record of this very command, in a "
    "directory this process created a moment before; any failure to read it keeps the "
    "directory: tests/pipeline/test_other_processes.py",
    ("retention/data.py", "_analogies.build"): "as _vitaminc_rows",
    ("retention/data.py", "_word_sentiment"): "as _vitaminc_rows",
    ("retention/data.py", "_wiki_cloze"): "as _vitaminc_rows",
    ("retention/data.py", "data_file"): "writes the suite's items built from the real "
    "archives (not fetched in the fast tests) through the same atomic writer: its failure "
    "is an OutputError, exit 5 naming the file, as at every driven write site",
    ("retention/suite.py", "offline_task_config"): "reads the package's own shipped lm-eval "
    "task YAMLs, never a run's or a received file",
}
# Damage a reader may take in its stride, silently: (module, function) -> damages, why.
HARMLESS = {
    ("run/dirs.py", "outcomes_on_disk"): (
        ("truncated", "wrong-type"),
        "Hydra's record of a job's overrides, shown in the sweep's summary line only: a cut "
        "list, or another list, is still a list and is shown as it is",
    ),
    ("reporting/readme_block.py", "_read"): (
        ("truncated",),
        "the README is prose: a cut one that still holds the grid's block has the block "
        "rewritten and the rest kept as it is (the README is committed: git shows the cut); "
        "one that lost the block is named in a warning",
    ),
    ("reporting/reproduction.py", "planned_runs"): (
        tuple(DAMAGES),
        "grid.yaml, rewritten by every curlora-reproduce: damaged, it only costs the report "
        "its 'of the N runs the grid plans'",
    ),
}
# Raw writes that may bypass the atomic writer: they fill a staging folder that is renamed
# whole once complete, and their failures become one OutputError there.
STAGED_WRITES = {
    ("data/assets.py", "_extract_all"): "ensure_asset's staging folder",
    ("models/gguf.py", "convert"): "convert's staging folder",
}


@dataclass
class Ending:
    """How a driver ended: the exit code the command gives, and everything it said."""

    code: int
    text: str


# ------------------------------------------------------------------ fixtures: real runs
@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed one-task run (step checkpoints on, a validation carve: what a grid
    report reads) and its evaluation cache."""
    root = tmp_path_factory.mktemp("completed")
    cfg = compose_run_config(root, [*RUN, "tasks=[pairs]", *CARVE])
    assert run(cfg)["status"] == "completed"
    return root


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-task run killed in task 2 after a step checkpoint: every resume file exists."""
    root = tmp_path_factory.mktemp("crashed")
    cfg = compose_run_config(root, [*RUN, "tasks=[pairs,reviews]", CRASH % (root / "marker")])
    with pytest.raises(SimulatedCrash):
        run(cfg)
    return root


# ------------------------------------------------------------------ drivers
def _library(call: Callable[[], Any]) -> Ending:
    """A library entry point: a documented exception is its one-line ending."""
    try:
        call()
    except tuple(DOCUMENTED) as error:
        code = next(c for kind, c in DOCUMENTED.items() if isinstance(error, kind))
        return Ending(code, f"error: {error}")
    return Ending(EXIT_OK, "")


def _job(cfg: Any, overrides: list[str] | None = None) -> Ending:
    outcome = run_job(cfg, overrides or [], multirun=False)
    return Ending(outcome.exit_code, "" if outcome.exit_code == 0 else f"error: {outcome.status}")


def drive_train(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """A new run (tiny, one task, step checkpoints) with a fresh cache: every run output."""
    return _job(compose_run_config(tmp_path, [*RUN, "tasks=[pairs]"]))


def drive_cached_train(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """A new run whose evaluation before training is in the cache (the cache is read)."""
    shutil.copytree(fixtures.completed() / "cache", tmp_path / "cache")
    return _job(compose_run_config(tmp_path, [*RUN, "tasks=[pairs]", *CARVE]))


def drive_resume(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """resume= of a crashed run: its config, progress, task and step checkpoints are read."""
    shutil.copytree(fixtures.crashed(), tmp_path, dirs_exist_ok=True)
    run_dir = tmp_path / "run"
    cfg = compose_run_config(tmp_path, [*RUN, f"resume={run_dir}"])
    return _job(cfg, [f"resume={run_dir}"])


def drive_report(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """curlora-report on a run, then on the sweep directory holding it."""
    from curlora.reporting import console

    shutil.copytree(fixtures.completed() / "run", tmp_path / "sweep" / "0_run")
    shutil.copytree(fixtures.completed() / "run", tmp_path / "sweep" / "1_run")
    return _main(
        lambda: (
            console.main([str(tmp_path / "sweep" / "0_run")]),
            console.main([str(tmp_path / "sweep")]),
        )
    )


def drive_sweep(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """The sweep summary (python -m curlora.reporting.sweep) of two runs."""
    from curlora.reporting import sweep

    for name in ("0_run", "1_run"):
        shutil.copytree(fixtures.completed() / "run", tmp_path / name)
    return _main(lambda: (sweep.main([str(tmp_path)]),))


def drive_sweep_end(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """The end-of-sweep summary of jobs that ran in other processes (read from disk)."""
    from curlora.run.dirs import outcomes_on_disk

    job = tmp_path / "0_seed=1"
    shutil.copytree(fixtures.completed() / "run", job)
    (job / ".hydra").mkdir(exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    outcomes = outcomes_on_disk(tmp_path)
    return Ending(EXIT_OK, "\n".join(f"{o.overrides} {o.status}" for o in outcomes))


STORE = SRC.parents[1] / "docs" / "reproduction" / "table1_cpu"
# Stored jobs of the committed CPU grid the grid drivers start from.
STORED_JOBS = ("lr_grid/s1311/curlora/optimizer.lr_0.001", "lr_grid/s1311/lora/optimizer.lr_0.001")


def drive_grid(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """curlora-reproduce, twice, as a user runs it (its jobs not run here):

    - ``reproduce=tiny`` on a working directory holding one finished job the store lacks,
      with a results store holding two others: the stored jobs are restored, the new one
      is published, and the report finds no run at the tiny grid's rank and no control
      (summary.md and REPORT.md of "no completed run yet");
    - ``--report-only`` of the committed CPU grid (a copy) with a README holding its
      block: grid.yaml's rules, every run's outcomes.json and progress.json, REPORT.md,
      summary.md, the figures, and the README block rewritten from summary.md.
    """
    from curlora import reproduce
    from curlora.reporting.readme_block import markers

    work, store = tmp_path / "work", tmp_path / "store"
    for job in STORED_JOBS:
        shutil.copytree(STORE / "runs" / job, store / "runs" / job)
    shutil.copytree(
        STORE / "runs" / "lr_grid" / "s1312" / "curlora" / "optimizer.lr_0.001", work / "new"
    )
    shutil.copytree(STORE, tmp_path / "table1_cpu")
    readme = tmp_path / "README.md"
    start, end = markers("table1_cpu")
    text = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    old = text[text.index(start) + len(start) : text.index(end)]
    readme.write_text(text.replace(old, "\nan outdated block\n"), encoding="utf-8")
    fixtures.monkeypatch.setattr(
        reproduce, "multirun", lambda sweep_dir, overrides, threads=None: 0
    )  # every job "completed" (none is run): the stored ones are what the report reads
    skip_grid_job_prechecks(fixtures.monkeypatch)  # no I/O site there
    return _main(
        lambda: (
            reproduce.main(
                ["reproduce=tiny", f"reproduce.dir={work}", f"reproduce.results_dir={store}"]
            ),
            reproduce.main(
                [
                    "--report-only",
                    "reproduce=table1_cpu",
                    f"reproduce.results_dir={tmp_path / 'table1_cpu'}",
                    f"reproduce.report_dir={tmp_path / 'report'}",
                    f"reproduce.readme={readme}",
                ]
            ),
        )
    )


def drive_protocol_check(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """curlora-reproduce reproduce=tiny_words twice (its jobs not run here): the first
    decides both protocol checks on no runs and records them in protocol_check.json, the
    second reads that record back instead of deciding again."""
    from curlora import reproduce

    fixtures.monkeypatch.setattr(
        reproduce, "multirun", lambda sweep_dir, overrides, threads=None: 0
    )  # every job "completed" (none is run)
    skip_grid_job_prechecks(fixtures.monkeypatch)  # no I/O site there
    store = tmp_path / "store"
    args = ["reproduce=tiny_words", f"reproduce.dir={tmp_path / 'work'}"]
    return _main(
        lambda: (
            reproduce.main([*args, f"reproduce.results_dir={store}"]),
            reproduce.main([*args, f"reproduce.results_dir={store}"]),
        )
    )


# What `curlora-reproduce reproduce=tiny_words` stores (grid.yaml, protocol_check.json and
# each run's results.json and outcomes.json); made the same way again when their schema
# changes.
WORDS_STORE = Path(__file__).parents[1] / "fixtures" / "tiny_words_store"


def drive_words_report(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """curlora-reproduce --report-only of a words grid, twice: the stored tiny_words runs
    (both protocol checks, the headline and reference runs: REPORT.md, summary.md, the
    forgetting curves), and the same grid stopped after its first check (no headline run
    of the fallback protocol yet)."""
    from curlora import reproduce

    store, early = tmp_path / "store", tmp_path / "early"
    shutil.copytree(WORDS_STORE, store)
    shutil.copytree(WORDS_STORE, early, ignore=shutil.ignore_patterns("fallback"))
    checks = json.loads((early / "protocol_check.json").read_text())
    (early / "protocol_check.json").write_text(json.dumps(checks[:1]))
    return _main(
        lambda: tuple(
            reproduce.main(
                [
                    "--report-only",
                    "reproduce=tiny_words",
                    f"reproduce.results_dir={where}",
                    f"reproduce.report_dir={tmp_path / where.name / 'report'}",
                ]
            )
            for where in (store, early)
        )
    )


def drive_adapter(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """save_adapter, then load_adapter onto a fresh base."""
    from transformers import LlamaForCausalLM

    from curlora.adapters import apply_adapter, load_adapter, save_adapter
    from tests.adapters.conftest import tiny_llama_config

    def fresh() -> Any:
        torch.manual_seed(0)
        return LlamaForCausalLM(tiny_llama_config()).eval()

    method = OmegaConf.load(SRC / "configs" / "method" / "curlora.yaml")
    method.rank, method.alpha, method.seed = 2, 1.0, 0
    model = fresh()
    apply_adapter(model, method)
    return _library(
        lambda: (
            save_adapter(model, tmp_path / "adapter"),
            load_adapter(fresh(), tmp_path / "adapter"),
        )
    )


def drive_asset(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """A registry asset extracted into the cache, then found there again."""
    from curlora.data import assets
    from tests.data.test_assets import FakeFetch, _asset, _sdist

    archive = _sdist()
    asset, fetch = _asset(archive), FakeFetch(archive)

    def twice() -> None:
        assets.ensure_asset(asset, tmp_path, fetch)
        assets._VERIFIED.clear()  # as a later process would, check the folder again
        assets.ensure_asset(asset, tmp_path, fetch)

    return _library(twice)


def drive_retention(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """A run with the retention suite, its item file already in the cache (as built)."""
    cfg = compose_run_config(tmp_path, [*RUN, "tasks=[reviews]", "retention=offline"])
    with open_dict(cfg):
        cfg.retention.offline = ["word_sentiment"]
        cfg.retention.limit = 4
    folder = Path(cfg.paths.cache_dir) / "retention"
    folder.mkdir(parents=True)
    item = {"query": "the film was", "choices": ["great", "dull"], "label": 0}
    # An odd number of lines: a file cut in half ends mid-line.
    (folder / "word_sentiment-v1.jsonl").write_text((json.dumps(item) + "\n") * 7)
    return _job(cfg)


def drive_data_files(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """A run whose task reads local data_files (the README's route to one's own data)."""
    rows = [json.dumps({"sentence": f"text {i}", "label": i % 2}) + "\n" for i in range(40)]
    files = {}
    for split in ("train", "validation"):
        files[split] = str(tmp_path / f"{split}.jsonl")
        Path(files[split]).write_text("".join(rows))
    cfg = compose_run_config(tmp_path, [*RUN, "tasks=[reviews]"])
    with open_dict(cfg):
        cfg.data.task_specs.reviews.source = {
            "_target_": "curlora.data.sources.hub.HubTask",
            "data_files": files,
        }
    return _job(cfg)


def drive_gguf(tmp_path: Path, fixtures: Fixtures) -> Ending:
    """A local GGUF model dequantised into the cache."""
    from curlora.models.backbone import load_backbone
    from tests.models.test_gguf import local_cfg, write_tiny_gguf

    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    return _library(lambda: load_backbone(local_cfg(path), tmp_path / "cache"))


def _main(call: Callable[[], tuple[int, ...]]) -> Ending:
    codes = [code for code in call() if code != EXIT_OK]
    return Ending(codes[0] if codes else EXIT_OK, "")


WRITE_DRIVERS: dict[str, Callable[..., Ending]] = {
    "adapters/saving.py": drive_train,
    "run/evaluation_cache.py": drive_train,
    "loop.py": drive_train,
    "reporting/plots.py": drive_train,
    "reporting/results.py": drive_train,
    "run/guard.py": drive_train,
    "run/state.py": drive_train,
    "run/checksum.py": drive_train,
    "reporting/sweep.py": drive_sweep,
    "reproduce.py": drive_grid,
    "reporting/reproduction.py": drive_grid,
    "reporting/readme_block.py": drive_grid,
    "reporting/protocol_check.py": drive_protocol_check,
    "reporting/words_report.py": drive_words_report,
    "grid/results.py": drive_grid,
    "run/report.py": drive_train,
    "data/assets.py": drive_asset,
    "models/gguf.py": drive_gguf,
}
READ_DRIVERS: dict[str, Callable[..., Ending]] = {
    "retention/data.py": drive_retention,
    "adapters/saving.py": drive_adapter,
    "data/assets.py": drive_asset,
    "data/sources/hub.py": drive_data_files,
    "run/evaluation_cache.py": drive_cached_train,
    "reporting/console.py": drive_report,
    "reporting/results.py": drive_report,
    "reporting/reproduction.py": drive_grid,
    "reporting/grid.py": drive_grid,
    "reporting/readme_block.py": drive_grid,
    "reproduce.py": drive_grid,
    "reporting/protocol_check.py": drive_protocol_check,
    "reporting/words_report.py": drive_words_report,
    "grid/results.py": drive_grid,
    "run/dirs.py": drive_sweep_end,
    "run/guard.py": drive_resume,
    "run/state.py": drive_resume,
    "run/checksum.py": drive_resume,
}


class Fixtures:
    """The module's prepared runs, made only when a driver asks for one, and the test's
    monkeypatch."""

    def __init__(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
        self.request, self.monkeypatch = request, monkeypatch

    def completed(self) -> Path:
        return self.request.getfixturevalue("completed")

    def crashed(self) -> Path:
        return self.request.getfixturevalue("crashed")


def _drive(
    driver: Callable[..., Ending],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Ending:
    return driver(tmp_path, Fixtures(request, monkeypatch))


def _real_runs_built(request: pytest.FixtureRequest) -> None:
    """Build the shared real runs before any fault is injected. Built lazily inside the
    injection (the first driver that asks for one), their own run would meet the fault
    meant for the driver, and which test happened to build them first would decide the
    outcome (as it did under ``pytest -n 2 --dist load``)."""
    request.getfixturevalue("completed")
    request.getfixturevalue("crashed")


# ------------------------------------------------------------------ injection
def _at(site: Site) -> bool:
    """Whether the function running one frame up is the call at ``site``."""
    frame = sys._getframe(2)
    return frame.f_code.co_filename == str(site.file) and (
        site.lineno <= frame.f_lineno <= site.end_lineno
    )


@contextmanager
def failing_writes_at(
    site: Site, fault: BaseException, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Path]]:
    """The atomic writer, called from ``site``, meets ``fault`` while writing; yields the
    paths it failed to write."""
    real = atomic.atomic_write
    failed: list[Path] = []

    def atomic_write(path: Any, write: Callable[[Path], None]) -> Path:
        frame = sys._getframe(1)
        while frame.f_code.co_filename == atomic.__file__:  # atomic_write_text's call
            frame = frame.f_back  # type: ignore[assignment]
        here = frame.f_code.co_filename == str(site.file) and (
            site.lineno <= frame.f_lineno <= site.end_lineno
        )
        if not here:
            return real(path, write)
        failed.append(Path(path))

        def fail(tmp: Path) -> None:
            tmp.write_bytes(b"partial")  # what a write cut short leaves in the temp file
            raise fault

        return real(path, fail)

    for name, module in list(sys.modules.items()):
        if (name == "curlora" or name.startswith("curlora.")) and getattr(
            module, "atomic_write", None
        ) is real:
            monkeypatch.setattr(module, "atomic_write", atomic_write)
    yield failed


def _read_target(site: Site) -> tuple[Any, str]:
    owner, _, name = site.callee.rpartition(".")
    if owner in ("json", "torch", "tarfile", "datasets"):
        return importlib.import_module(owner), name
    if owner == "OmegaConf":
        return OmegaConf, name
    if not owner:
        if name == "open":
            return builtins, "open"
        module = "curlora." + site.module[: -len(".py")].replace("/", ".")
        return importlib.import_module(module), name
    return Path, name  # a Path's own method (read_text, read_bytes, open)


def _paths_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Path]:
    if name == "load_dataset":
        files = kwargs.get("data_files") or {}
        return [Path(p) for v in files.values() for p in ([v] if isinstance(v, str) else v)]
    first = args[0] if args else kwargs.get("fileobj") or kwargs.get("f") or kwargs.get("file")
    if hasattr(first, "name") and not isinstance(first, (str, Path)):
        first = first.name  # an open file
    return [Path(first)] if isinstance(first, (str, Path)) else []


@contextmanager
def damaged_reads_at(
    site: Site, damage: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Path]]:
    """The file read at ``site`` is damaged on disk just before the read; yields the paths."""
    owner, name = _read_target(site)
    real = getattr(owner, name)
    damaged: list[Path] = []

    def read(*args: Any, **kwargs: Any) -> Any:
        if _at(site):
            for path in _paths_of(name, args, kwargs):
                if path not in damaged and path.is_file():
                    with open(path, "rb") as handle:
                        data = handle.read()
                    with open(path, "wb") as handle:
                        handle.write(DAMAGES[damage](data))
                    damaged.append(path)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, staticmethod(read) if owner is OmegaConf else read)
    yield damaged


# ------------------------------------------------------------------ the checks
def _nothing_half_written(root: Path) -> None:
    assert not [p for p in root.rglob(f"*{atomic.TEMP_SUFFIX}") if p.is_file()], "temp files left"
    for path in root.rglob("results.json"):
        load_results(path)
    for path in root.rglob("progress.json"):
        json.loads(path.read_text(encoding="utf-8"))


def _check_ending(ending: Ending, names: list[Path], text: str) -> None:
    assert "Traceback" not in text, text[-3000:]
    said = ending.text + "\n" + text
    assert any(p.name in said for p in names), f"no line names {names}:\n{said[-3000:]}"
    if ending.code != EXIT_OK:
        assert ending.text.startswith("error: ") and "\n" not in ending.text, ending.text


def _log_text(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return "\n".join([*lines, out.out, out.err])


def _errors(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], ending: Ending
) -> tuple[Ending, str]:
    """The ending with a main's error line (printed to stderr) as its text, and all that
    was said (warnings and above, stdout, stderr)."""
    text = _log_text(caplog, capsys)
    if ending.code != EXIT_OK and not ending.text:
        errors = [line for line in text.splitlines() if line.startswith("error: ")]
        ending = Ending(ending.code, errors[-1] if errors else "")
    return ending, text


# ------------------------------------------------------------------ the tests
def _id(site: Site) -> str:
    return f"{site.module}:{site.lineno}"


def _key(site: Site) -> tuple[str, str]:
    return site.module, site.function


WRITES = [s for s in sites("write") if _key(s) not in NOT_DRIVEN]
READS = [s for s in sites("read") if _key(s) not in NOT_DRIVEN]


@pytest.mark.parametrize("site", WRITES, ids=_id)
def test_a_write_that_fails_at_each_site_is_one_line_naming_the_file(
    site: Site, tmp_path, request, monkeypatch, caplog, capsys
) -> None:
    assert site.module in WRITE_DRIVERS, (
        f"no driver reaches {site}: add one, or a NOT_DRIVEN reason"
    )
    fault = WRITE_FAULTS[WRITES.index(site) % len(WRITE_FAULTS)]
    _real_runs_built(request)
    caplog.set_level(logging.WARNING)
    with failing_writes_at(site, fault, monkeypatch) as failed:
        ending = _drive(WRITE_DRIVERS[site.module], tmp_path, request, monkeypatch)
    assert failed, f"the driver never reached {site}"
    ending, text = _errors(caplog, capsys, ending)
    # Exit 5, or a warning for an optional output (the cache, a figure): never silent.
    assert ending.code in (EXIT_OUTPUT, EXIT_OK), (ending, text[-3000:])
    _check_ending(ending, failed, text)
    _nothing_half_written(tmp_path)


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("site", READS, ids=_id)
def test_a_damaged_file_at_each_read_site_is_named_never_a_traceback(
    site: Site, damage: str, tmp_path, request, monkeypatch, caplog, capsys
) -> None:
    assert site.module in READ_DRIVERS, f"no driver reaches {site}: add one, or a NOT_DRIVEN reason"
    _real_runs_built(request)
    caplog.set_level(logging.WARNING)
    with damaged_reads_at(site, damage, monkeypatch) as damaged:
        ending = _drive(READ_DRIVERS[site.module], tmp_path, request, monkeypatch)
    assert damaged, f"the driver never reached {site}"
    ending, text = _errors(caplog, capsys, ending)
    # Refused by name (exit 2, 3, or curlora-report's 1), or used anyway with a warning
    # naming the file (a cache recomputed, a checkpoint skipped, a run listed as skipped).
    assert ending.code in (EXIT_OK, 1, EXIT_CONFIG, 3), (ending, text[-3000:])
    if damage in HARMLESS.get(_key(site), ((), ""))[0] and ending.code == EXIT_OK:
        assert "Traceback" not in text
        return
    _check_ending(ending, damaged, text)


def test_every_write_goes_through_the_atomic_writer() -> None:
    raw = [s for s in sites("raw_write") if _key(s) not in STAGED_WRITES]
    assert raw == [], "write through curlora.run.atomic (or list the staging reason): " + "; ".join(
        map(str, raw)
    )


def test_the_sites_found_are_the_ones_this_suite_knows() -> None:
    """Every NOT_DRIVEN, HARMLESS and STAGED_WRITES entry still names a real site."""
    found = {_key(s) for s in all_sites()}
    assert set(NOT_DRIVEN) <= found and set(STAGED_WRITES) <= found and set(HARMLESS) <= found
    # A search that found (almost) nothing would make every test above pass vacuously:
    # 18 write and 25 read sites when this was written.
    assert len(sites("write")) >= 15 and len(sites("read")) >= 20
    # The README states no counts (they went stale); `-s` shows today's.
    writes, reads = sites("write"), sites("read")
    driven_writes = [s for s in writes if _key(s) not in NOT_DRIVEN]
    driven_reads = [s for s in reads if _key(s) not in NOT_DRIVEN]
    print(
        f"\n{len(writes)} write sites ({len(driven_writes)} driven), "
        f"{len(reads)} read sites ({len(driven_reads)} driven)"
    )


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (OSError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
        (OSError(errno.EFBIG, "File too large"), "file-size limit"),
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),
            "written in full",
        ),
        (
            safetensors.SafetensorError("I/O error: No space left on device (os error 28)"),
            "disk full",
        ),
    ],
)
def test_the_writer_turns_every_failure_into_one_line(tmp_path: Path, fault, cause) -> None:
    path = tmp_path / "out" / "state.bin"
    path.parent.mkdir()
    path.write_bytes(b"the previous version")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise fault

    with pytest.raises(OutputError) as error:
        atomic.atomic_write(path, write)
    message = str(error.value)
    assert message.startswith(f"could not write {path}: ") and cause in message
    assert "\n" not in message
    assert path.read_bytes() == b"the previous version"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.bin"]


def test_a_bug_in_what_is_written_keeps_its_traceback(tmp_path: Path) -> None:
    """Only the failures a disk causes become OutputError; a TypeError is a bug."""

    def write(tmp: Path) -> None:
        raise TypeError("not serialisable")

    with pytest.raises(TypeError):
        atomic.atomic_write(tmp_path / "x", write)
    assert list(tmp_path.iterdir()) == []
