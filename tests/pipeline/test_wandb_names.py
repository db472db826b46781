"""W&B run names, job types, tags and sweep groups say what varies between runs."""

from __future__ import annotations

from pathlib import Path

from curlora.resolvers import lr_tag, order_tag, run_name, run_parts, run_setting
from curlora.run.dirs import sweep_group
from tests.conftest import compose_run_config

CURLORA = {"name": "curlora", "rank": 16}
SEQUENTIAL = {"_target_": "curlora.strategies.sequential.Sequential"}
EWC = {"_target_": "curlora.strategies.ewc.EWC"}
TASKS = ["convention", "movie_reviews", "tweets"]


def test_names_carry_method_rank_strategy_order_lr_and_seed() -> None:
    assert run_name(CURLORA, SEQUENTIAL, 1311, 3e-3, TASKS, TASKS) == "curlora_r16_lr3e-3_s1311"
    # Plain CURLoRA and CURLoRA + EWC, or two orders, no longer share a name.
    assert run_name(CURLORA, EWC, 1311, 3e-3, TASKS, TASKS) == "curlora_r16_ewc_lr3e-3_s1311"
    reversed_order = TASKS[::-1]
    assert run_name(CURLORA, SEQUENTIAL, 1, 3e-3, reversed_order, TASKS).endswith(
        "_reversed_lr3e-3_s1"
    )
    # No rank for a method without one.
    head_only = run_parts({"name": "head_only"}, SEQUENTIAL, 7, 2.5e-4, TASKS, TASKS)
    assert head_only == ["head_only", "lr2.5e-4", "s7"]
    assert run_setting(CURLORA, EWC, 1311, 1e-2, TASKS, TASKS) == "curlora_r16_ewc_lr1e-2"


def test_order_and_lr_tags() -> None:
    assert order_tag(TASKS, TASKS) is None
    assert order_tag([*TASKS[1:], TASKS[0]], TASKS) == "rotated"
    assert order_tag(["dbpedia", "amazon", "agnews"], ["amazon", "dbpedia", "agnews"]) == (
        "dbp-ama-agn"
    )
    assert [lr_tag(x) for x in (1e-2, 3e-3, 2.5e-4)] == ["lr1e-2", "lr3e-3", "lr2.5e-4"]


def test_the_composed_logger_config_names_the_run(tmp_path: Path) -> None:
    cfg = compose_run_config(tmp_path, ["debug=fast", "strategy=ewc", "order=reversed"])
    wandb = cfg.logger.wandb
    assert wandb.name == "curlora_r16_ewc_reversed_lr1e-2_s1311"
    assert wandb.job_type == "curlora_r16_ewc_reversed_lr1e-2"
    assert list(wandb.tags) == ["curlora", "r16", "ewc", "reversed", "lr1e-2", "s1311"]
    assert wandb.run_dir == cfg.paths.output_dir


def test_sweep_group_is_the_sweep_directory_and_what_it_sweeps(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    group = sweep_group(
        logs / "multiruns" / "2026-12-04_17-05-14",
        logs,
        ["method=lora", "seed=2", "debug=tiny"],
        ["model", "data", "debug"],
    )
    assert group == "multiruns/2026-12-04_17-05-14 over method,seed"
    # A reproduction grid part: one directory per seed and method, nothing swept inside.
    grid = logs / "reproduce" / "tiny" / "lr_grid" / "s1" / "curlora"
    assert sweep_group(grid, logs, ["seed=1"], ["seed"]) == "reproduce/tiny/lr_grid/s1/curlora"
    assert len(sweep_group(tmp_path / ("x" * 300), logs, [], [])) == 128


def test_the_whole_config_resolves_in_place(tmp_path: Path) -> None:
    # Hydra's `--cfg job --resolve` calls OmegaConf.resolve, which cannot put a plain
    # Python list where an interpolation was: the W&B tags and the task orders crashed it.
    from omegaconf import OmegaConf

    for order in ("reversed", "rotated"):
        cfg = compose_run_config(tmp_path, ["debug=fast", "logger=wandb", f"order={order}"])
        OmegaConf.resolve(cfg)
        assert list(cfg.logger.wandb.tags)[-2:] == ["lr1e-2", "s1311"]
        assert len(cfg.tasks) == 3 and cfg.tasks != cfg.data.tasks
