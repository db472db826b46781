"""The retention suite inside a tiny run: config checks, the matrix in results.json, the
console block, and a frozen backbone scoring the same at every point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import DictConfig

from curlora.checks.config import ConfigError, validate_config
from curlora.data.sources.synthetic import FILLER, SUBJECTS, TOPICS
from curlora.reporting.console import run_table
from curlora.reporting.results import load_results, validate_results
from curlora.retention.data import ITEMS_VERSION
from curlora.train import run

LIMIT = 6


def _with_local_data(cfg: DictConfig, task: str) -> DictConfig:
    """Put a tiny-vocabulary data file where the suite looks for the task's generated one,
    so the run reads it instead of fetching the task's archive (tests never download)."""
    folder = Path(cfg.paths.cache_dir) / "retention"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"query": f"{s} was", "choices": [TOPICS[i % 8], FILLER[i % 9]], "label": i % 2}
        for i, s in enumerate(SUBJECTS * 2)
    ]
    path = folder / f"{task}-v{ITEMS_VERSION}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return cfg


def test_off_by_default(run_config) -> None:
    cfg = run_config()
    assert cfg.retention.suite == "none"
    assert run(cfg)["retention"] is None


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("retention.offline=[analogy_semantic,trivia]", "'trivia' is not an offline task"),
        ("retention.limit=0", "retention.limit=0"),
        ("retention.suite=online", "retention.suite='online'"),
        ("retention.offline=[]", "names no task"),
    ],
)
def test_bad_settings_fail_early_naming_key_and_value(run_config, override, named) -> None:
    with pytest.raises(ConfigError, match=named):
        validate_config(run_config("retention=offline", override), check_model=False)


def test_without_lm_eval_the_error_names_the_install_command(run_config, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name)
    )
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[eval\]"'):
        validate_config(run_config("retention=offline"), check_model=False)


def test_unknown_standard_task_is_named(run_config) -> None:
    cfg = run_config("retention=standard", "retention.standard=[hellaswag,no_such_task]")
    with pytest.raises(ConfigError, match="'no_such_task' is not a task lm-eval knows"):
        validate_config(cfg, check_model=False)


@pytest.mark.parametrize(
    "method",
    # curlora trains the backbone's adapter (about 25 s): slow; head_only runs the same
    # retention path on every evaluation point in the fast tier.
    [pytest.param("curlora", marks=pytest.mark.slow), "head_only"],
)
def test_a_run_records_the_retention_matrix(run_config, method: str) -> None:
    cfg = run_config(
        "retention=offline",
        "retention.offline=[word_sentiment]",
        f"retention.limit={LIMIT}",
        f"method={method}",
    )
    results = run(_with_local_data(cfg, "word_sentiment"))
    retention = results["retention"]
    assert validate_results(results) == []
    assert retention["tasks"] == ["word_sentiment"] and retention["n"] == [LIMIT]
    # Rows: before training, then one per task (3 synthetic tasks); accuracies of LIMIT rows.
    assert len(retention["acc"]) == len(results["tasks"]) + 1
    for row in retention["acc"] + retention["acc_norm"]:
        assert abs(row[0] * LIMIT - round(row[0] * LIMIT)) < 1e-9  # k right of LIMIT
    if method == "head_only":  # a frozen backbone scores the same at every point
        assert all(row == retention["acc"][0] for row in retention["acc"])
    run_dir = Path(cfg.paths.output_dir)
    assert load_results(run_dir / "results.json")["retention"] == retention
    # Each point's per-row outcomes sit in outcomes.json, acc their share of "1" exactly.
    rows = json.loads((run_dir / "outcomes.json").read_text())["retention"]["word_sentiment"]
    assert [len(s) for s in rows] == [LIMIT] * len(retention["acc"])
    assert [s.count("1") / LIMIT for s in rows] == [acc[0] for acc in retention["acc"]]
    table = run_table(results)
    assert "general-ability retention" in table and "word_sentiment (n=6)" in table


def test_retention_curves_are_drawn_against_tasks_trained() -> None:
    from curlora.wandb_logger import TASK_AXIS, axis_of

    assert axis_of("retention/wiki_cloze/acc") == TASK_AXIS


def test_standard_suite_without_the_hub_exits_3_naming_the_offline_suite(
    run_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets.config

    from curlora import loop
    from curlora.cli import EXIT_UNREACHABLE, run_job

    # conftest sets HF_HUB_OFFLINE=1, and this datasets cache holds no ARC: lm-eval's ARC
    # cannot be fetched here. The config check says so before the model loads.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loop.TaskLoop, "__init__", no_model)
    cfg = run_config("retention=standard", "retention.standard=[arc_easy]")
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_UNREACHABLE
    assert "\n" not in outcome.status and "use retention=offline" in outcome.status
    assert "HF_HUB_OFFLINE=1" in outcome.status and "['arc_easy']" in outcome.status
    assert not (Path(cfg.paths.output_dir) / "run_config.yaml").exists()


def test_the_shared_initial_evaluation_is_keyed_by_the_suite(run_config) -> None:
    from curlora.loop import TaskLoop
    from curlora.run import evaluation_cache
    from curlora.run.interrupts import InterruptGuard

    def key(*overrides: str) -> str | None:
        cfg = _with_local_data(run_config(*overrides), "word_sentiment")
        loop = TaskLoop(cfg, Path(cfg.paths.output_dir), InterruptGuard())
        return evaluation_cache.initial_evaluation_key(loop)

    suite = ("retention=offline", "retention.offline=[word_sentiment]")
    base = key()
    # A cached evaluation without the suite's scores must never stand in for one with them.
    assert key(*suite, "retention.limit=4") not in (base, None)
    assert key(*suite, "retention.limit=4") != key(*suite, "retention.limit=5")
