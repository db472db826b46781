"""The config checks' messages: the key the user typed, its value and what is valid, in one
sentence; the plain checks answer before torch or Lightning is imported; Hub data (a
task, the corpus, a standard retention suite) that offline mode cannot serve is refused
before the model loads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from curlora.checks.config import ConfigError, _check_accelerator, validate_config
from curlora.data.sources.hub import HubUnreachableError
from curlora.resolvers import lr_tag
from tests.conftest import TINY, compose_run_config
from tests.pipeline.heavy_probe import probe_train

# logger=wandb: its run name is resolved from optimizer.lr (curlora.run_name).
WITH_RUN_NAME = ["model=tiny_llama", "data=synthetic", "debug=fast", "logger=wandb"]


# ------------------------------------------------ the key typed, not the key it feeds
@pytest.mark.parametrize(
    ("override", "start"),
    [
        ("optimizer.lr=abc", "optimizer.lr='abc' is not valid; valid: a finite number > 0"),
        ("optimizer.lr=inf", "optimizer.lr=inf is not valid"),
        ("optimizer.lr=[1,2]", "optimizer.lr=[1, 2] is not valid"),
        ("rank=abc", "rank='abc' is not valid"),  # method=lora: lora_alpha = alpha · rank
    ],
)
def test_a_value_the_run_name_or_a_product_reads_is_refused_by_its_own_key(
    tmp_path: Path, override: str, start: str
) -> None:
    cfg = compose_run_config(tmp_path, [*WITH_RUN_NAME, "method=lora", override])
    with pytest.raises(ConfigError) as refused:
        validate_config(cfg, check_model=False)
    assert str(refused.value).startswith(start), str(refused.value)


@pytest.mark.parametrize(
    ("lr", "tag"),
    [(0.003, "lr3e-3"), (0.00025, "lr2.5e-4"), ("abc", "lrabc"), (float("inf"), "lrinf")],
)
def test_the_learning_rate_tag_never_raises(lr: Any, tag: str) -> None:
    assert lr_tag(lr) == tag


def test_the_product_resolver_multiplies_numbers_only() -> None:
    from curlora.resolvers import mul

    assert mul(2.0, 8) == 16.0
    assert mul("abc", 2) == "abc" and mul(2.0, "abc") == 2.0  # left to the checks


# ------------------------------------------------ one sentence, one "valid:"
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+unknown=1",
            "unknown=1 is not valid since 'unknown' is not a setting of this project (a typo?); "
            "valid top-level settings: ['alpha', ",
        ),
        (
            "tasks=[pairs,nope]",
            "tasks=['pairs', 'nope'] is not valid since 'nope' is not a task of this data config; "
            "valid: a non-empty list of tasks from ['moods', 'pairs', 'reviews']",
        ),
        (
            "tasks=[pairs,pairs]",
            "tasks=['pairs', 'pairs'] is not valid since 'pairs' appears more than once; "
            "valid: each task at most once",
        ),
        (  # Lightning builds the Trainer to see that its strategy starts several processes
            "trainer.strategy=ddp_find_unused_parameters_true",
            "trainer.strategy='ddp_find_unused_parameters_true' is not valid since it is a "
            "multi-process strategy and trainer.devices=1 starts one process; valid: "
            "trainer.strategy=auto (one process)",
        ),
        (
            "resume=/nonexistent/run",
            "resume='/nonexistent/run' is not valid since there is no such directory; valid: a "
            "run directory of this project (it holds run_config.yaml)",
        ),
    ],
)
def test_a_refusal_reads_as_one_sentence(run_config, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        validate_config(run_config(override), check_model=False)
    text = str(refused.value)
    assert text.startswith(message), text
    assert text.count("valid:") + text.count("valid top-level settings:") == 1, text


# ------------------------------------------------ an accelerator the machine lacks
MISTRAL = {"name_or_path": "mistralai/Mistral-7B-v0.3"}
SMALL = {"name": "smollm2-135m-instruct"}
DDP = {"accelerator": "gpu", "devices": 2, "strategy": "ddp_find_unused_parameters_true"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
@pytest.mark.parametrize(
    ("trainer", "model", "advice", "slow"),
    [
        (DDP, SMALL, "e.g. trainer=ddp_cpu", False),
        ({"accelerator": "gpu", "devices": 1}, SMALL, "e.g. trainer.accelerator=cpu", False),
        ({"accelerator": "gpu", "devices": 1}, MISTRAL, "e.g. trainer.accelerator=cpu", True),
    ],
    ids=["ddp", "gpu-small-model", "gpu-7b-model"],
)
def test_the_cpu_advice_fits_the_trainer_and_the_model(
    trainer: dict[str, Any], model: dict[str, Any], advice: str, slow: bool
) -> None:
    with pytest.raises(ConfigError) as refused:
        _check_accelerator(trainer, model)
    text = str(refused.value)
    assert text.startswith("trainer.accelerator='gpu' is not valid") and advice in text, text
    assert ("7B-parameter model on CPU is impractically slow" in text) == slow, text


# ------------------------------------------------ plain values: refused before torch loads
def _probe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    logger = [] if any(a.startswith("logger=") for a in args) else ["logger=none"]
    args = (*args, *TINY, *logger, f"hydra.run.dir={tmp_path / 'run'}")
    return probe_train(args)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("data.batch_size=0", "data.batch_size=0"),
        ("tasks=[nope]", "tasks=['nope']"),
        ("callbacks.perplexity.stride=1000", "callbacks.perplexity.stride=1000"),
        # logger=wandb names the run from the learning rate (logger.wandb.name)
        ("optimizer.lr=abc logger=wandb", "optimizer.lr='abc'"),
        # the retention suite's own values: checked before the head, trainer and model
        ("retention=offline retention.limit=0", "retention.limit=0"),
    ],
)
def test_a_plain_value_error_is_refused_before_torch_or_lightning_load(
    tmp_path: Path, bad: str, named: str
) -> None:
    done = _probe(tmp_path, *bad.split())
    assert "exit 2" in done.stdout and named in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert "heavy: []" in done.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_trainer_ddp_without_a_gpu_advises_ddp_cpu_before_lightning_loads(
    tmp_path: Path,
) -> None:
    done = _probe(tmp_path, "trainer=ddp")
    assert "exit 2" in done.stdout and done.stderr.count("\n") == 1, done.stderr
    assert "trainer.accelerator='gpu' is not valid" in done.stderr, done.stderr
    assert "e.g. trainer=ddp_cpu" in done.stderr and done.stderr.count("valid:") == 1
    heavy = done.stdout.split("heavy:", 1)[1]
    assert "'lightning'" not in heavy and "'transformers'" not in heavy, heavy  # torch looks


# ------------------------------------------------ retention=standard in offline mode
STANDARD_DATA = ["Rowan___hellaswag", "allenai___ai2_arc", "allenai___winogrande", "baber___piqa"]


def test_standard_retention_offline_is_refused_when_its_data_is_not_cached(
    run_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets.config

    pytest.importorskip("lm_eval")
    # conftest sets HF_HUB_OFFLINE=1; an empty datasets cache holds none of the suite's data.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    cfg = run_config("retention=standard")
    with pytest.raises(HubUnreachableError) as refused:
        validate_config(cfg, check_model=False)
    text = str(refused.value)
    assert "offline mode is set (HF_HUB_OFFLINE=1)" in text and "use retention=offline" in text
    assert "hellaswag" in text
    # Data that datasets prepared before (its offline fallback reads it): not refused.
    for name in STANDARD_DATA:
        (tmp_path / "hf_datasets" / name / "default" / "0.0.0" / "abc123").mkdir(parents=True)
    validate_config(cfg, check_model=False)


def test_only_a_hub_dataset_can_need_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets.config

    from curlora.data.sources.hub import missing_from_cache

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    assert missing_from_cache("allenai/ai2_arc") and missing_from_cache("org/SomeName")
    (tmp_path / "hf_datasets" / "org___some_name" / "default" / "0.0.0" / "a1").mkdir(parents=True)
    assert not missing_from_cache("org/SomeName")  # datasets' snake_case folder name
    assert not missing_from_cache("json")  # a builder of datasets' own
    assert not missing_from_cache(str(tmp_path))  # a local folder
    # A run's own cache (``<paths.cache_dir>/hf_datasets``) in place of datasets' default.
    run_cache = tmp_path / "run_cache" / "hf_datasets"
    assert missing_from_cache("org/SomeName", run_cache)
    (run_cache / "org___some_name" / "x" / "0.0.0" / "b2").mkdir(parents=True)
    assert not missing_from_cache("org/SomeName", run_cache)


# ------------------------------------------------ Hub tasks and corpus in offline mode
def test_a_hub_task_offline_and_not_cached_is_refused_before_torch_loads(tmp_path: Path) -> None:
    """data=paper (MRPC, SST-2, Sentiment140 and WikiText-2 from the Hub) with offline mode
    set (conftest) and an empty cache: the run would load the model, then stop at its first
    split. Refused at once instead, with the same line and exit 3, nothing created."""
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    done = probe_train(
        ["data=paper", "logger=none", f"paths.cache_dir={cache}", f"hydra.run.dir={run}"]
    )
    assert "exit 3" in done.stdout, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert done.stderr.startswith("error: task 'mrpc': the Hugging Face Hub is unreachable")
    assert f"not in the cache {cache / 'hf_datasets'}" in done.stderr
    assert "data=offline" in done.stderr and "task_specs.mrpc.source.data_files" in done.stderr
    heavy = done.stdout.split("heavy:", 1)[1]
    assert "'torch'" not in heavy and "'lightning'" not in heavy, heavy
    assert not run.exists()


def test_hub_data_is_refused_only_offline_and_uncached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check names the corpus too, passes data the run's cache holds and local
    data_files, and leaves a Hub that may be reached to the load."""
    import datasets.config
    import huggingface_hub.constants

    from curlora.checks.config import _check_hub_data

    cfg = compose_run_config(tmp_path, ["data=paper"])
    local = tmp_path / "rows.jsonl"
    local.write_text('{"sentence": "a", "label": 0}\n')
    with open_dict(cfg):
        for task in cfg.tasks:
            cfg.data.task_specs[task].source.data_files = {"train": str(local)}
    cfg = OmegaConf.to_container(cfg, resolve=True)  # what validate_config's checks get
    with pytest.raises(HubUnreachableError, match=r"^corpus: .*data\.corpus\.data_files"):
        _check_hub_data(cfg)
    hf_cache = tmp_path / "cache" / "hf_datasets"
    (hf_cache / "Salesforce___wikitext" / "wikitext-2-raw-v1" / "0.0.0" / "c3").mkdir(parents=True)
    _check_hub_data(cfg)  # cached where the run's datasets looks: the load reads it
    shutil.rmtree(hf_cache)
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    _check_hub_data(cfg)  # not offline: the Hub may answer, so the load decides
