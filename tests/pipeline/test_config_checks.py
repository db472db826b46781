"""Fail-fast validation: bad configs and bad data stop the run early, by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from curlora.checks.config import ConfigError, validate_config
from curlora.data.sources.synthetic import SyntheticTask
from curlora.data.tasks import TaskSpec
from curlora.data.validation import DataError, check_split, map_labels

REPO_ROOT = Path(__file__).resolve().parents[2]

# (override, words the message must contain). The tiny Llama's narrowest targeted matrix
# is k_proj/v_proj: 2 KV heads × 16 dims = 32 outputs, so ranks above 32 are invalid.
BAD_CONFIGS = [
    ("rank=1000", ["rank", "1000", "32"]),
    ("rank=0", ["rank", "0"]),
    ("rank=abc", ["rank", "'abc'", "integer"]),
    ("seed=1.5", ["seed", "1.5", "integer"]),
    ("method.target_modules=[nope_proj]", ["nope_proj", "q_proj"]),
    ("tasks=[pairs,nope]", ["tasks", "nope", "moods"]),
    ("data.task_specs.pairs.train_limit=0", ["data.task_specs.pairs.train_limit", "0"]),
    ("trainer.max_epochs=0", ["trainer.max_epochs", "0"]),
    ("optimizer.lr=-1", ["optimizer.lr", "-1"]),
    ("head_lr=0", ["head_lr", "0"]),
    ("callbacks.perplexity.stride=100", ["callbacks.perplexity.stride", "100", "max_length"]),
    ("scheduler.warmup_steps=10", ["warmup_steps", "warmup_ratio"]),
    ("data.max_length=-5", ["data.max_length", "-5"]),
    (
        "data.task_specs.pairs.source._target_=ftp.Nope",
        ["data.task_specs.pairs", "ftp.Nope", "SyntheticTask"],
    ),
    ("resume=/nonexistent/run", ["resume", "/nonexistent/run"]),
    # one name per class (num_classes: 2), distinct: they label the confusion matrices
    ("data.task_specs.pairs.class_names=[only_one]", ["class_names", "only_one", "2 distinct"]),
    ("data.task_specs.pairs.class_names=[a,a]", ["data.task_specs.pairs.class_names", "'a'"]),
]


@pytest.mark.parametrize(("override", "words"), BAD_CONFIGS, ids=[o for o, _ in BAD_CONFIGS])
def test_bad_config_is_refused_with_key_value_and_valid_range(run_config, override, words) -> None:
    with pytest.raises(ConfigError) as error:
        validate_config(run_config(override))
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_bad_strategy_value_is_refused(run_config) -> None:
    with pytest.raises(ConfigError, match="ewc_lambda"):
        validate_config(run_config("strategy=ewc", "strategy.ewc_lambda=-1"))


def test_default_configs_validate(run_config) -> None:
    validate_config(run_config())
    validate_config(run_config("method=lora", "strategy=replay"))


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CURLORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    command = [
        sys.executable,
        "train.py",
        "debug=fast",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        *overrides,
    ]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_refuses_bad_config_without_traceback_or_outputs(tmp_path: Path) -> None:
    done = _cli(tmp_path, "rank=1000")
    assert done.returncode == 2
    assert "rank=1000" in done.stderr and "Traceback" not in done.stderr + done.stdout
    run_dir = tmp_path / "run"
    # Nothing beyond Hydra's own log and config record: no model was loaded, nothing trained.
    assert not (run_dir / "results.json").exists() and not (run_dir / "checkpoints").exists()
    assert not (run_dir / "run_config.yaml").exists()


def test_cli_unknown_method_lists_valid_options(tmp_path: Path) -> None:
    done = _cli(tmp_path, "method=nope")
    assert done.returncode != 0
    assert "method/nope" in done.stderr and "curlora" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_bad_data_names_task_split_and_field(tmp_path: Path) -> None:
    done = _cli(tmp_path, "data.task_specs.reviews.text_field=review_text")
    assert done.returncode == 2
    assert (
        "task 'reviews'" in done.stderr
        and "review_text" in done.stderr
        and "split 'train'" in done.stderr
    )
    assert "Traceback" not in done.stderr


SPEC = TaskSpec(
    name="t", source=SyntheticTask(), text_field="text", label_field="label", num_classes=2
)


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([], ["task 't'", "split 'train'", "empty"]),
        ([{"text": "fine", "label": 3}], ["field 'label'", "3", "0..1"]),
        ([{"text": "   ", "label": 1}], ["field 'text'", "empty"]),
        ([{"text": None, "label": 1}], ["field 'text'"]),
    ],
)
def test_bad_data_is_named(rows, words) -> None:
    data = (
        datasets.Dataset.from_list(rows)
        if rows
        else datasets.Dataset.from_dict({"text": [], "label": []})
    )
    with pytest.raises(DataError) as error:
        check_split(SPEC, "train", data)
        map_labels(SPEC, "train", data)
    for word in words:
        assert word in str(error.value)


def test_missing_label_column_is_named() -> None:
    data = datasets.Dataset.from_list([{"text": "a", "y": 1}])
    with pytest.raises(DataError, match="label_field='label' is not a column"):
        check_split(SPEC, "train", data)


def test_cli_unreachable_hub_model_says_what_to_use_instead(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CURLORA_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "train.py",
        "model=mistral_7b",  # the offline data (the default): only the model needs the Hub
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 3
    assert "Hub is unreachable" in done.stderr and "model=smollm2_135m" in done.stderr
    assert "Traceback" not in done.stderr
