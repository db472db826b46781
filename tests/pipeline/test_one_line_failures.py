"""Every failure a user or a cluster can cause ends in one line naming the file or the key,
with the README's exit code: a full disk, unreadable or damaged files, unusable output
places, bad local data, mistyped names, and the grid command. In process where the exit
code is computed in process (``curlora.cli.run_job``, the reporting and grid mains); a few
real commands where the exit code and the last line of the CLI itself are the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import open_dict

from curlora.checks.config import ConfigError, validate_config
from curlora.cli import EXIT_CONFIG, EXIT_OK, EXIT_OUTPUT, run_job
from curlora.composition import check_command_line
from curlora.reporting import console, sweep
from curlora.reporting.results import build_results, write_results
from curlora.run.guard import RUN_CONFIG_FILE, check_resume_overrides, plan_run
from tests.conftest import REPO_ROOT, TINY, compose_run_config, run_cli
from tests.reporting.conftest import results_kwargs

TINY_RUN = [*TINY, "logger=none"]


def _one_line(text: str) -> str:
    """The error line a command ends with; asserts nothing but it looks like one."""
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in text.strip().splitlines() if line.startswith("error: ")]
    assert lines, text[-3000:]
    return lines[-1]


def _results_dir(root: Path, name: str, **overrides: Any) -> Path:
    run_dir = root / name
    write_results(run_dir / "results.json", build_results(**results_kwargs(**overrides)))
    return run_dir


# ------------------------------------------------ 1. a full disk while writing a checkpoint
def test_a_file_size_limit_mid_run_is_one_line_exit_5_naming_the_checkpoint(tmp_path) -> None:
    """A real file-size limit: ``ulimit -f 20`` makes torch.save's zip writer fail with
    "unexpected pos ..." (a RuntimeError) on the first task checkpoint."""
    command = f"ulimit -f 20; exec {sys.executable} {REPO_ROOT / 'train.py'} debug=tiny logger=none"
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == EXIT_OUTPUT, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "could not write" in line and "task_0.ckpt" in line and "file-size limit" in line
    (run_dir,) = (tmp_path / "logs" / "runs").iterdir()
    # What was written before is intact: the config and the progress up to the failure.
    assert "method:" in (run_dir / RUN_CONFIG_FILE).read_text()
    json.loads((run_dir / "progress.json").read_text())
    assert not list(run_dir.rglob("*.tmp"))


# ------------------------------------------------ 2. damaged results.json / progress.json
def test_curlora_report_names_a_non_utf8_results_file_in_one_line(tmp_path, capsys) -> None:
    run_dir = _results_dir(tmp_path, "run")
    path = run_dir / "results.json"
    path.write_bytes(path.read_bytes().replace(b'"completed"', b'"compl\xe9ted"'))
    assert console.main([str(run_dir)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and "not UTF-8" in line


def test_sweep_aggregation_lists_damaged_runs_as_skipped_and_goes_on(tmp_path, capsys) -> None:
    _results_dir(tmp_path, "0_seed=1", seed=1)
    bad = _results_dir(tmp_path, "1_seed=2", seed=2) / "results.json"
    bad.write_bytes(b"\xff\xfe" + bad.read_bytes())
    cut = _results_dir(tmp_path, "2_seed=3", seed=3) / "results.json"
    cut.write_bytes(cut.read_bytes()[:100])
    assert console.main([str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "1 runs under" in out and f"- {bad}: " in out and f"- {cut}: " in out
    summary = sweep.summarize_sweep(tmp_path)  # the written summary says the same
    assert [p for p, _ in summary.skipped] == [bad, cut]


def test_a_nan_wall_time_in_progress_json_is_shown_as_unknown(tmp_path, capsys) -> None:
    run_dir = _results_dir(tmp_path, "run")
    (run_dir / "progress.json").write_text('{"elapsed_s": "nan"}')
    assert console.main([str(run_dir)]) == EXIT_OK
    assert "wall time -" in capsys.readouterr().out


# ------------------------------------------------ 3. read-only or wrong output places
def test_a_run_directory_that_is_a_file_is_refused_before_anything_is_created(tmp_path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    done = run_cli([*TINY_RUN, f"hydra.run.dir={blocker}"], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG
    line = _one_line(done.stderr)
    assert f"hydra.run.dir={blocker} cannot hold the run" in line and "is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # nothing created


def test_a_log_dir_below_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    for argv in ([f"paths.log_dir={blocker}/logs"], ["-m", f"paths.log_dir={blocker}"]):
        line = check_command_line([*argv, *TINY_RUN])
        assert line is not None and f"{blocker} is a file" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_read_only_output_place_is_refused_in_one_line(tmp_path, monkeypatch) -> None:
    """As root (these machines) every directory is writable, so read-only is simulated
    where the check asks: ``os.access`` and the probe directory it then creates."""
    read_only = tmp_path / "shared"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    line = check_command_line([*TINY_RUN, f"hydra.run.dir={read_only}"])
    assert line is not None and f"{read_only} is not writable" in line
    assert list(read_only.iterdir()) == []
    monkeypatch.setattr(os, "access", real_access)

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("tempfile.mkdtemp", refuse)
    line = check_command_line([*TINY_RUN, f"hydra.run.dir={read_only}/run"])
    assert line is not None and "Read-only file system" in line and str(read_only) in line


# ------------------------------------------------ 4 and 9. bad local data; refused runs
def test_a_bad_data_file_is_exit_2_and_the_corrected_rerun_is_a_new_run(tmp_path) -> None:
    good = tmp_path / "train.jsonl"
    good.write_text(
        "".join(json.dumps({"sentence": f"text {i}", "label": i % 2}) + "\n" for i in range(40))
    )
    bad = tmp_path / "test.jsonl"
    bad.write_bytes(b'{"sentence": "caf\xe9", "label": 1}\n')
    cfg = compose_run_config(tmp_path, [*TINY_RUN, "tasks=[reviews]"])
    source = {
        "_target_": "curlora.data.sources.hub.HubTask",
        "data_files": {"train": str(good), "validation": str(bad)},
    }
    with open_dict(cfg):
        cfg.data.task_specs.reviews.source = source
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_CONFIG
    assert str(bad) in outcome.status and "not UTF-8" in outcome.status
    assert "\n" not in outcome.status
    run_dir = Path(cfg.paths.output_dir)
    assert not (run_dir / RUN_CONFIG_FILE).exists()  # nothing that blocks the rerun
    bad.write_text(good.read_text())
    assert run_job(cfg, [], multirun=False).exit_code == EXIT_OK


# ------------------------------------------------ 5. a read-only cache
def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, caplog) -> None:
    cfg = compose_run_config(tmp_path, [*TINY_RUN, "tasks=[pairs]"])
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the shared cache directory should be")
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_OK
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("not caching the evaluation" in w and str(blocker) in w for w in warnings)


# ------------------------------------------------ 6. damaged state
@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 3],  # cut before paths:
        lambda text: "\udcff".join([text[:10], text[10:]]),  # a non-UTF-8 byte
        lambda text: "- just\n- a list\n",
    ],
    ids=["truncated", "non-utf8", "wrong-type"],
)
def test_a_damaged_run_config_refuses_resume_naming_it(tmp_path, run_config, damage) -> None:
    cfg = run_config(*TINY_RUN)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True)
    from curlora.run.guard import save_run_config

    save_run_config(cfg, run_dir)
    path = run_dir / RUN_CONFIG_FILE
    path.write_bytes(damage(path.read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as error:
        plan_run(run_config(*TINY_RUN, f"resume={run_dir}"), [f"resume={run_dir}"])
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_damaged_step_checkpoint_warning_counts_tasks_from_1(tmp_path, caplog) -> None:
    from curlora.run.state import step_checkpoint, usable_step_checkpoint

    path = step_checkpoint(tmp_path, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    assert usable_step_checkpoint(tmp_path, 1) is None
    assert "restarting task 2 from its beginning" in caplog.text and str(path) in caplog.text


# ------------------------------------------------ 7. the grid command
def test_reproduce_help_and_bad_arguments(capsys) -> None:
    from curlora import reproduce

    assert reproduce.main(["--help"]) == EXIT_OK
    assert "curlora-reproduce [reproduce=table1_cpu]" in capsys.readouterr().out
    for args in (["reproduce=bogus"], ["tiny"], ["--dry-run"], ["reproduce=tiny", "rankk=3"]):
        assert reproduce.main(args) == EXIT_CONFIG, args
        line = _one_line(capsys.readouterr().err)
        assert args[-1].split("=")[0].lstrip("-") in line, line
    # The unknown grid's line lists the grids there are (every file of configs/reproduce/).
    reproduce.main(["reproduce=bogus"])
    grids = sorted(p.stem for p in (REPO_ROOT / "configs" / "reproduce").glob("*.yaml"))
    assert ", ".join(grids) in capsys.readouterr().err


def test_a_second_reproduce_on_one_grid_is_refused_naming_the_holder(tmp_path, capsys) -> None:
    from curlora import reproduce
    from curlora.grid.guard import GridLock

    grid = tmp_path / "grid"
    with GridLock(grid):
        code = reproduce.main(["reproduce=tiny", f"reproduce.dir={grid}"])
    assert code == EXIT_CONFIG
    line = _one_line(capsys.readouterr().err)
    assert f"the grid {grid} is in use by pid {os.getpid()}" in line


def test_a_grid_whose_jobs_all_fail_exits_1_and_leaves_no_report(
    tmp_path, capsys, monkeypatch
) -> None:
    from curlora import reproduce

    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "REPORT.md").write_text("# an old report")
    monkeypatch.setattr(
        reproduce, "multirun", lambda sweep_dir, overrides, threads=None: 1
    )  # all failed
    # The report (and the grid.yaml) go to the results directory: the grid's, here.
    args = ["reproduce=tiny", f"reproduce.dir={grid}", f"reproduce.results_dir={grid}"]
    assert reproduce.main(args) == 1
    line = _one_line(capsys.readouterr().err)
    assert "no job of the grid completed" in line
    assert not (grid / "REPORT.md").exists()
    assert (grid / "REPORT.stale.md").read_text() == "# an old report"


# ------------------------------------------------ 8. mistyped names
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("strategy=sii", "Could not find 'strategy/sii'; valid options in 'strategy': ewc"),
        ("order=nonexistent", "Could not find 'order/nonexistent'"),
        # An unknown key: the valid keys of its node, not Hydra's advice to add it with "+".
        ("optimizer.lrr=1", "'lrr' is not a key of optimizer; valid keys: lr, weight_decay"),
        ("rank==", "Error parsing override 'rank=='"),
    ],
)
def test_hydra_composition_errors_are_one_line(override: str, words: str) -> None:
    line = check_command_line([*TINY_RUN, override])
    assert line is not None and words in line and "\n" not in line, line


def test_a_typo_in_a_strategy_key_lists_that_strategys_keys() -> None:
    # configs/strategy/ewc.yaml's keys, _target_ left out (it is not a setting).
    line = check_command_line([*TINY_RUN, "strategy=ewc", "strategy.wieght=1"])
    assert line is not None and "\n" not in line and "+strategy" not in line, line
    assert "strategy.wieght=1: 'wieght' is not a key of strategy; valid keys: empirical, " in line
    assert "ewc_lambda" in line and "_target_" not in line


@pytest.mark.parametrize("name", ["a/b", ""])
def test_a_job_name_that_cannot_name_a_log_file_is_refused(name: str) -> None:
    line = check_command_line([*TINY_RUN, f"hydra.job.name={name}"])
    assert line is not None and f"hydra.job.name={name} is not valid" in line, line
    assert check_command_line([*TINY_RUN, "hydra.job.name=a_b"]) is None


def test_a_sweep_value_that_does_not_compose_is_caught_before_the_sweep() -> None:
    line = check_command_line(["-m", *TINY_RUN, "strategy=sequential,sii"])
    assert line is not None and "strategy/sii" in line
    # Sweeps only Hydra can expand (glob, Optuna's interval) are left to Hydra, not refused.
    for swept in ("method=glob(lora*)", "optimizer.lr=interval(1e-4,1e-2)", "seed=range(1,3)"):
        assert check_command_line(["-m", *TINY_RUN, swept]) is None, swept


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        # Hydra stopped with "Config group override must be a string or a list" (exit 1).
        (["method=null"], ["method=null is not valid", "valid options in method: corda, "]),
        (["+probe=null"], ["+probe=null is not valid", "valid options in probe: linear"]),
        (["-m", "method=lora,null"], ["method=null is not valid", "in method: corda, "]),
        # Hydra merged both configs into one run's config, silently.
        (
            ["method=[lora,curlora]"],
            ["method=[lora,curlora] is not valid", "-m method=lora,curlora"],
        ),
        (["-m", "method=[lora,curlora]"], ["use a comma list: method=lora,curlora;"]),
        # Hydra's own line advised a list (the merge above) for a sweep typed without -m.
        (["method=lora,curlora"], ["method=lora,curlora is a sweep: add -m"]),
    ],
    ids=["null", "added-null", "swept-null", "list", "swept-list", "sweep-without-m"],
)
def test_a_config_group_given_null_or_several_configs_is_one_line(argv, words) -> None:
    line = check_command_line([*argv, *TINY_RUN])
    assert line is not None and "\n" not in line, line
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["-m", *TINY_RUN, "method=curlora", "lora"], "; did you mean method=curlora,lora?"),
        (
            [*TINY_RUN, "method=curlora", "lora", "dora"],
            "did you mean -m method=curlora,lora,dora?",
        ),
    ],
)
def test_a_comma_list_typed_with_spaces_gets_a_hint(argv, hint) -> None:
    line = check_command_line(argv)
    assert line is not None and "Error parsing override 'lora'" in line and hint in line, line


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("~rank", "method.rank does not resolve: Interpolation key 'rank' not found (~rank"),
        ("rank=${nope}", "invalid configuration: rank does not resolve: Interpolation key 'nope'"),
        ("hydra.run.dir=${nope}", "hydra.run.dir does not resolve: Interpolation key 'nope'"),
    ],
)
def test_what_the_run_directory_name_cannot_resolve_is_one_line(override, words) -> None:
    """The default run directory's name is built from the method's rank: Hydra failed to
    resolve it with a 200-line traceback (exit 1)."""
    line = check_command_line([*TINY_RUN, override])
    assert line is not None and words in line and "\n" not in line, line


def test_a_removed_key_the_run_name_needs_is_exit_2_and_leaves_nothing(tmp_path) -> None:
    done = run_cli([*TINY_RUN, "~rank"], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr[-3000:]
    assert "method.rank does not resolve" in _one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []


def test_curlora_train_exits_2_for_an_unknown_choice(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "curlora-train"
    done = subprocess.run(
        [str(script), *TINY_RUN, "strategy=sii"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == EXIT_CONFIG
    assert "strategy/sii" in _one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------ 9. smaller
def test_method_alpha_zero_is_refused(run_config) -> None:
    with pytest.raises(ConfigError, match=r"method.alpha=0"):
        validate_config(run_config("method.alpha=0"))


def test_resume_with_the_progress_bar_on_is_not_a_different_experiment(run_config) -> None:
    cfg = run_config()
    ignored = check_resume_overrides(
        cfg, run_config("trainer.enable_progress_bar=true"), ["trainer.enable_progress_bar=true"]
    )
    assert ignored == ["trainer.enable_progress_bar=true"]


def test_a_completed_run_missing_its_plots_gets_them(run_config) -> None:
    cfg = run_config(*TINY_RUN, "tasks=[pairs]")
    assert run_job(cfg, [], multirun=False).exit_code == EXIT_OK
    curves = Path(cfg.paths.output_dir) / "curves.png"
    curves.unlink()  # a job killed right after results.json
    assert run_job(cfg, [], multirun=False).exit_code == EXIT_OK
    assert curves.exists()


# ------------------------------------------------ 10. values that passed and failed mid-run
@pytest.mark.parametrize(
    ("override", "words"),
    [
        # islice() takes C integers: "must be ... <= sys.maxsize" mid-run.
        ("data.batch_size=99999999999999999999", "data.batch_size=99999999999999999999"),
        # float32 adapters, heads and optimizer states: finite in Python, inf in training.
        ("alpha=1e39", "alpha=1e+39"),
        ("alpha=1e308", "alpha=1e+308"),
        ("optimizer.lr=1e300", "optimizer.lr=1e+300"),
        # transformers' own architecture check (hidden size vs 4 heads), a multi-line error.
        ("model.hidden_size=7", "hidden size (7)"),
        # A *-true Trainer casts the float32 heads: "mat1 and mat2 must have the same dtype".
        ("trainer.precision=bf16-true", "trainer.precision='bf16-true'"),
        # Generated mid-run: "synthetic task kind 'x' unknown", after run_config.yaml.
        ("data.task_specs.pairs.source.kind=x", "kind='x'"),
        ("rank=${nope}", "Interpolation key 'nope' not found"),
    ],
)
def test_values_that_used_to_fail_mid_run_are_refused_first(run_config, override, words) -> None:
    with pytest.raises(ConfigError) as error:
        validate_config(run_config(*TINY_RUN, override))
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("override", ["rank=${oc.env:NOPE}", "rank=${nope}"])
def test_an_unresolvable_interpolation_is_one_line_and_leaves_nothing(tmp_path, override) -> None:
    """It was a traceback (Hydra's list of overrides resolves as it is read) that left
    ``.hydra/`` and ``train.log`` in the run directory."""
    run_dir = tmp_path / "run"
    done = run_cli([*TINY_RUN, override, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr[-3000:]
    assert "does not resolve" in _one_line(done.stderr) and "rank" in _one_line(done.stderr)
    assert not run_dir.exists()


def test_a_run_directory_name_too_long_for_the_file_system_is_one_line(tmp_path) -> None:
    line = check_command_line([*TINY_RUN, f"hydra.run.dir={tmp_path / ('a' * 300)}"])
    assert line is not None and "300 bytes long (at most 255)" in line


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ('{"sentence": "a b c"}\n', "no column 'text'"),  # was: datasets' bare ValueError
        ('{"text": ""}\n{"text": "  "}\n', "holds no text"),  # was: "need at least 2 tokens"
    ],
    ids=["no-text-column", "only-empty-texts"],
)
def test_a_corpus_file_without_text_is_one_line_and_leaves_no_run(
    run_config, tmp_path, rows, words
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(rows)
    cfg = run_config(*TINY_RUN)
    with open_dict(cfg):
        cfg.data.corpus = {
            "_target_": "curlora.data.sources.hub.HubCorpus",
            "data_files": {"test": str(corpus)},
        }
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_CONFIG, outcome.status
    assert words in outcome.status and str(corpus) in outcome.status
    assert not (Path(cfg.paths.output_dir) / RUN_CONFIG_FILE).exists()


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("rank=-1", "rank=-1 is not valid"),
        ("reproduce.seeds=[]", "reproduce.seeds=[] is not valid"),
        ("reproduce.ranks=[0]", "reproduce.ranks=0 is not valid"),
    ],
)
def test_reproduce_refuses_what_every_job_would_refuse_before_any_part_runs(
    tmp_path, capsys, monkeypatch, override, words
) -> None:
    """``rank=-1`` ran every part before failing; ``seeds=[]`` wrote a report of nothing."""
    from curlora import reproduce

    ran: list[Any] = []
    monkeypatch.setattr(reproduce, "multirun", lambda *args, **kwargs: ran.append(args) or 0)
    args = ["reproduce=tiny", f"reproduce.dir={tmp_path / 'grid'}", override]
    assert reproduce.main(args) == EXIT_CONFIG
    assert words in _one_line(capsys.readouterr().err)
    assert ran == [] and not (tmp_path / "grid").exists()


@pytest.mark.slow  # a two-process run: about a minute on 2 cores
def test_a_killed_worker_is_one_line_and_resume_continues(tmp_path: Path) -> None:
    """SIGKILL to process 1 of a trainer=ddp_cpu run: process 0 names it (no gloo
    traceback), exit 1, and resume= finishes the run."""
    import signal
    import time

    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        *TINY_RUN,
        "trainer=ddp_cpu",
        "data.batch_size=8",
        "trainer.max_epochs=3",
        f"paths.output_dir={run_dir}",
    ]
    proc = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    first_task = run_dir / "checkpoints" / "task_0.ckpt"
    deadline = time.monotonic() + 600
    while not first_task.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = subprocess.run(
        ["pgrep", "-P", str(proc.pid), "-f", "curlora.distributed.worker"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert workers, "no worker process found"
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    line = _one_line(stderr)
    assert "killed by SIGKILL" in line and f"resume={run_dir}" in line
    done = run_cli([*TINY_RUN, f"resume={run_dir}"], cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
