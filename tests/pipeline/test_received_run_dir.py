"""A run directory received from someone else is data: ``resume=`` runs no code from it,
writes nothing outside it, and takes this machine's settings from the command.

Each test plants what a sender could (a config that trusts a model folder's code, a
symbolic link out of the directory, a logger or cache path of the sender's choosing) and
checks the resume refuses it in one line (exit 2) or ignores it; a file outside the run
directory must keep its contents, and a payload's marker file must not exist.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from curlora.checks.config import ConfigError
from curlora.run.dirs import RunDirectories, unsafe_entry
from curlora.run.file_lock import acquire
from curlora.run.guard import (
    REMOTE_CODE_VARIABLE,
    RUN_CONFIG_FILE,
    RunLock,
    experiment_view,
    plan_run,
)
from curlora.run.received import PATHS_VARIABLE
from curlora.train import run
from tests.conftest import TINY, compose_run_config, run_cli
from tests.pipeline.tiny_runs import copy_run, crashed_tiny_run

PRECIOUS = "the receiver's own file\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed ``debug=tiny`` run (CSV logger), as a sender would pass it on: made by
    the command, so Hydra's files (``train.log``, ``.hydra/``) are there too."""
    root = tmp_path_factory.mktemp("finished")
    done = run_cli([*TINY, f"hydra.run.dir={root / 'run'}"], cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "run" / "train.log").is_file() and (root / "run" / ".hydra").is_dir()
    return root / "run"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``debug=tiny`` run that crashed in its second task: a resume trains and logs."""
    return crashed_tiny_run(tmp_path_factory.mktemp("crashed"))


def _received(source: Path, tmp_path: Path) -> Path:
    """A copy of ``source`` in a place of the receiver's (links copied as links)."""
    return copy_run(source, tmp_path / "received")


def _edit_saved_config(run_dir: Path, **sections: object) -> None:
    path = run_dir / RUN_CONFIG_FILE
    saved = yaml.safe_load(path.read_text())
    saved.update(sections)
    path.write_text(yaml.safe_dump(saved))


def _outside(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / name
    victim.write_text(PRECIOUS)
    return victim


def _one_line_refusal(done, *words: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]


# ---------------------------------------------------------------- no code from the model
def _model_with_code(tmp_path: Path, marker: Path) -> Path:
    """A model folder whose config.json maps AutoConfig to its own .py file; importing that
    file creates ``marker``."""
    folder = tmp_path / "model_with_code"
    folder.mkdir()
    config = {"model_type": "payload", "auto_map": {"AutoConfig": "payload.PayloadConfig"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "payload.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import PretrainedConfig\n\n\n"
        "class PayloadConfig(PretrainedConfig):\n"
        "    model_type = 'payload'\n"
    )
    return folder


def _trusting_model(folder: Path) -> dict[str, object]:
    return {
        "_target_": "curlora.models.hub.HubModel",
        "name_or_path": str(folder),
        "revision": None,
        "dtype": "auto",
        "trust_remote_code": True,
        "hf_cache_dir": None,
        "attn_implementation": None,
        "gradient_checkpointing": False,
        "quantization": None,
    }


def test_a_received_trust_remote_code_never_runs_the_models_code(finished, tmp_path) -> None:
    run_dir = _received(finished, tmp_path)
    marker = tmp_path / "payload-ran"
    _edit_saved_config(run_dir, model=_trusting_model(_model_with_code(tmp_path, marker)))
    modules = str(tmp_path / "hf_modules")  # where transformers would copy the code
    done = run_cli([f"resume={run_dir}"], cwd=tmp_path, HF_MODULES_CACHE=modules)
    _one_line_refusal(done, "model.trust_remote_code", str(run_dir / RUN_CONFIG_FILE))
    assert REMOTE_CODE_VARIABLE in done.stderr
    assert not marker.exists(), "resume= ran the code of a model folder the config named"


def test_trust_remote_code_is_the_receivers_opt_in(finished, tmp_path, monkeypatch) -> None:
    run_dir = _received(finished, tmp_path)
    folder = _model_with_code(tmp_path, tmp_path / "marker")
    _edit_saved_config(run_dir, model=_trusting_model(folder))
    cfg = compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"])
    with pytest.raises(ConfigError, match=r"model\.trust_remote_code"):
        plan_run(cfg, [f"resume={run_dir}"])
    monkeypatch.setenv(REMOTE_CODE_VARIABLE, "1")
    # The model is a folder of the receiver's: that is a second opt-in of its own.
    with pytest.raises(ConfigError, match=rf"model\.name_or_path=.*{PATHS_VARIABLE}=1"):
        plan_run(cfg, [f"resume={run_dir}"])
    monkeypatch.setenv(PATHS_VARIABLE, "1")
    plan, _ = plan_run(cfg, [f"resume={run_dir}"])
    assert plan.cfg.model.trust_remote_code is True


# ---------------------------------------------------------------- nothing written outside
@pytest.mark.parametrize("entry", [".lock", "train.log", "results.json", RUN_CONFIG_FILE])
def test_a_linked_file_in_a_received_run_is_refused(finished, tmp_path, entry) -> None:
    run_dir = _received(finished, tmp_path)
    victim = _outside(tmp_path, "victim.txt")
    if entry == RUN_CONFIG_FILE:  # a config read from elsewhere: still the run's own text
        victim.write_text((run_dir / entry).read_text())
    before = victim.read_text()
    (run_dir / entry).unlink()
    (run_dir / entry).symlink_to(victim)
    done = run_cli([f"resume={run_dir}"], cwd=tmp_path)
    _one_line_refusal(done, str(run_dir / entry), "symbolic link")
    assert victim.read_text() == before


def test_a_linked_hydra_directory_gets_nothing_written(finished, tmp_path) -> None:
    run_dir = _received(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run_dir / ".hydra", elsewhere)
    (run_dir / ".hydra").symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    done = run_cli([f"resume={run_dir}"], cwd=tmp_path)
    _one_line_refusal(done, str(run_dir / ".hydra"), "symbolic link")
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_a_link_deep_in_the_run_is_refused_before_anything_reads_it(finished, tmp_path):
    run_dir = _received(finished, tmp_path)
    checkpoint = next((run_dir / "checkpoints").glob("*.ckpt"))
    checkpoint.unlink()
    checkpoint.symlink_to(_outside(tmp_path, "victim.ckpt"))
    cfg = compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"])
    with pytest.raises(ConfigError, match="symbolic link") as refused:
        plan_run(cfg, [f"resume={run_dir}"])
    assert str(checkpoint) in str(refused.value) and "\n" not in str(refused.value)


def test_a_run_continued_in_place_gets_the_same_link_check(finished, tmp_path) -> None:
    """A received directory continued where it lies (``hydra.run.dir=<dir>``, the same
    command again) is read and written like a resumed one: refused in one line before
    Hydra appends to its ``train.log``."""
    run_dir = _received(finished, tmp_path)
    victim = _outside(tmp_path, "victim.log")
    (run_dir / "train.log").unlink()
    (run_dir / "train.log").symlink_to(victim)
    done = run_cli([*TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    _one_line_refusal(done, "hydra.run.dir", str(run_dir / "train.log"), "symbolic link")
    assert victim.read_text() == PRECIOUS
    # The API (no Hydra) refuses it too, naming the key it came from.
    cfg = compose_run_config(tmp_path, TINY)
    cfg.paths.output_dir = str(run_dir)
    with pytest.raises(ConfigError, match=r"paths\.output_dir.*symbolic link"):
        plan_run(cfg, [])


def test_a_sweep_continued_in_place_gets_the_same_link_check(finished, tmp_path) -> None:
    """The jobs of a sweep directory given again (how a grid continues) are checked too."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    job = _received(finished, sweep)
    victim = _outside(tmp_path, "victim.log")
    (job / "train.log").unlink()
    (job / "train.log").symlink_to(victim)
    done = run_cli(["-m", *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    _one_line_refusal(done, str(job / "train.log"), "symbolic link")
    assert victim.read_text() == PRECIOUS


def test_lock_files_are_never_opened_through_a_link(tmp_path: Path) -> None:
    victim = _outside(tmp_path, "victim.txt")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(victim)
    with pytest.raises(OSError) as error:
        acquire(run_dir / ".lock", "pid 1")
    assert error.value.errno == errno.ELOOP
    with pytest.raises(ConfigError, match=r"\.lock is a symbolic link"):
        RunLock(run_dir).__enter__()
    (run_dir / ".lock").unlink()
    (run_dir / ".lock").symlink_to(tmp_path / "dangling")  # O_CREAT would create its target
    with pytest.raises(OSError):
        acquire(run_dir / ".lock", "pid 1")
    assert victim.read_text() == PRECIOUS and not (tmp_path / "dangling").exists()


def test_hydra_writes_nothing_into_a_linked_run(finished, tmp_path: Path) -> None:
    """The callback that sends Hydra's files into a resumed run sends them to a fresh
    directory instead when the run holds a link (the run then refuses the resume)."""
    run_dir = _received(finished, tmp_path)
    (run_dir / "train.log").unlink()
    (run_dir / "train.log").symlink_to(_outside(tmp_path, "victim.log"))
    fresh = tmp_path / "fresh"
    config = OmegaConf.create(
        {"resume": str(run_dir), "hydra": {"run": {"dir": str(fresh)}, "output_subdir": ".hydra"}}
    )
    RunDirectories().on_run_start(config)
    assert config.hydra.run.dir == str(fresh) and config.hydra.output_subdir == ".hydra"


def test_wandbs_own_links_are_accepted_others_are_not(tmp_path: Path) -> None:
    """W&B links ``latest-run`` and ``debug.log`` relatively inside ``wandb/``, and each
    session's ``logs/debug-core.log`` to a core log in its cache: a run that logged to W&B
    stays resumable; an absolute link or one out of ``wandb/`` under W&B's names, a core-log
    link to anything but a core log, or a link of any other name there, does not."""
    session = "offline-run-20260101_000000-abc"
    wandb = tmp_path / "wandb"
    logs = wandb / session / "logs"
    logs.mkdir(parents=True)
    (logs / "debug.log").write_text("")
    cache_logs = tmp_path.parent / "cache" / "wandb" / "logs"  # the sender's W&B cache
    cache_logs.mkdir(parents=True, exist_ok=True)
    (logs / "debug-core.log").symlink_to(cache_logs / "core-debug-20260101_000000.log")
    (wandb / "latest-run").symlink_to(session)
    (wandb / "debug.log").symlink_to(f"{session}/logs/debug.log")
    assert unsafe_entry(tmp_path) is None
    victim = str(_outside(tmp_path.parent, "victim.txt"))
    for name, target in (
        ("debug-internal.log", victim),
        ("debug-internal.log", "../../victim.txt"),
        (f"{session}/files", victim),
        ("offline-run-20260101_000001-abc", victim),
    ):
        (wandb / name).symlink_to(target)
        assert f"{name} is a symbolic link" in str(unsafe_entry(tmp_path))
        (wandb / name).unlink()
    # W&B core's log link by name and place, but pointing at something not a core log.
    core = logs / "debug-core.log"
    for target in (victim, "core-debug-20260101_000000.log", f"{victim}/../core-debug.log"):
        core.unlink()
        core.symlink_to(target)
        assert "debug-core.log is a symbolic link" in str(unsafe_entry(tmp_path)), target


def test_a_fifo_in_a_received_run_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "progress.json")  # reading it would wait forever
    assert "not a regular file" in str(unsafe_entry(tmp_path))


# ---------------------------------------------------------------- this machine's settings
def test_a_resume_takes_paths_and_loggers_from_the_command(finished, tmp_path) -> None:
    run_dir = _received(finished, tmp_path)
    sender = tmp_path / "sender"
    _edit_saved_config(
        run_dir,
        logger={
            "csv": {
                "_target_": "lightning.pytorch.loggers.CSVLogger",
                "save_dir": str(sender / "csv"),
                "name": "csv",
            },
            "wandb": {"_target_": "curlora.loggers.WandbLogger", "offline": False},
        },
        paths={
            "root_dir": str(sender),
            "log_dir": str(sender / "logs"),
            "output_dir": str(sender / "run"),
            "cache_dir": str(sender / "cache"),
        },
        reuse_initial_evaluation=False,
    )
    cfg = compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"])
    plan, _ = plan_run(cfg, [f"resume={run_dir}"])
    resolved = OmegaConf.to_container(plan.cfg, resolve=True)
    assert list(resolved["logger"]) == ["csv"]  # debug=tiny's logger, not the file's wandb
    assert resolved["logger"]["csv"]["save_dir"] == str(run_dir)
    assert resolved["paths"] == {**OmegaConf.to_container(cfg.paths), "output_dir": str(run_dir)}
    assert resolved["reuse_initial_evaluation"] is True
    assert str(sender) not in json.dumps(resolved)
    # The experiment is still the saved one.
    saved = OmegaConf.load(finished / RUN_CONFIG_FILE)
    assert resolved["method"] == OmegaConf.to_container(saved.method)


def test_the_receivers_overrides_of_paths_and_loggers_apply(finished, tmp_path) -> None:
    run_dir = _received(finished, tmp_path)
    overrides = [f"resume={run_dir}", "logger=none", "reuse_initial_evaluation=false"]
    cfg = compose_run_config(tmp_path, [*TINY, *overrides])
    plan, warnings = plan_run(cfg, overrides)
    assert not plan.cfg.logger and plan.cfg.reuse_initial_evaluation is False
    assert not any("ignoring" in warning for warning in warnings)
    assert any("logging with this command's logger (none)" in w for w in warnings)


def test_a_resumed_run_writes_its_logs_in_its_own_directory(crashed, tmp_path) -> None:
    run_dir = _received(crashed, tmp_path)
    sender = tmp_path / "sender"
    saved = yaml.safe_load((run_dir / RUN_CONFIG_FILE).read_text())
    saved["logger"]["csv"]["save_dir"] = str(sender)
    saved["paths"]["cache_dir"] = str(sender / "cache")
    _edit_saved_config(run_dir, logger=saved["logger"], paths=saved["paths"])
    resumed = run(compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"]))
    assert resumed["status"] == "completed"
    assert not sender.exists(), "the resume wrote where the sender's config said"
    assert any((run_dir / "csv").glob("version_*/metrics.csv"))


def test_a_resume_takes_the_hugging_face_cache_from_the_command(finished, tmp_path) -> None:
    """``model.hf_cache_dir`` says where Hub downloads go on the receiver's machine: the
    sender's value is replaced by the command's (null, Hugging Face's own cache, unless the
    command sets one), and it is no part of the experiment (nor of its fingerprint)."""
    run_dir = _received(finished, tmp_path)
    sender_cache = str(tmp_path / "sender" / "hf")
    saved = yaml.safe_load((run_dir / RUN_CONFIG_FILE).read_text())
    _edit_saved_config(run_dir, model={**saved["model"], "hf_cache_dir": sender_cache})
    cfg = compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"])
    plan, _ = plan_run(cfg, [f"resume={run_dir}"])
    assert plan.cfg.model.hf_cache_dir is None
    mine = str(tmp_path / "mine")
    overrides = [f"resume={run_dir}", f"+model.hf_cache_dir={mine}"]
    plan, warnings = plan_run(compose_run_config(tmp_path, [*TINY, *overrides]), overrides)
    assert plan.cfg.model.hf_cache_dir == mine and not warnings
    received = OmegaConf.load(run_dir / RUN_CONFIG_FILE)  # the sender's cache in it
    assert experiment_view(plan.cfg) == experiment_view(received)


NOT_WRITTEN = [["1e9", None, None], [True, None, None], {"a": 1}, [-4, None, None], [0, 0]]


@pytest.mark.parametrize("steps", NOT_WRITTEN)
def test_step_counts_no_run_writes_are_ignored_by_name(crashed, tmp_path, caplog, steps) -> None:
    """``logger_state.json``'s steps after each task place the loggers' curves; a value no
    run writes (text, a flag, a negative count, another shape) is named and dropped, never a
    traceback half-way through the resumed run."""
    run_dir = _received(crashed, tmp_path)
    state_file = run_dir / "logger_state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    state_file.write_text(json.dumps({**state, "steps_after_task": steps}))
    resumed = run(compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"]))
    assert resumed["status"] == "completed"
    named = [r.getMessage() for r in caplog.records if "steps_after_task" in r.getMessage()]
    assert named and str(state_file) in named[0]
