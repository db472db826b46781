"""``head=words`` end to end, and the bad inputs it refuses (exit 2, one line naming the key,
nothing written): in process through ``curlora.cli.run_job`` (the exit code the CLI
returns), and once as a real command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import open_dict

from curlora.cli import EXIT_CONFIG, EXIT_OK, run_job
from curlora.reporting.console import run_table
from curlora.reporting.results import load_results
from tests.conftest import TINY, compose_run_config, run_cli

WORDS = [*TINY, "logger=none", "head=words"]


def _tiny(tmp_path: Path, *overrides: str, **spec: Any):
    """The tiny config under head=words, with ``spec`` set on task ``reviews``."""
    cfg = compose_run_config(tmp_path, [*WORDS, *overrides])
    with open_dict(cfg):
        for key, value in spec.items():
            cfg.data.task_specs.reviews[key] = value
    return cfg


def test_a_words_run_records_prompts_and_both_matrices(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path, "method=lora")
    assert run_job(cfg, [], multirun=False).exit_code == EXIT_OK
    run_dir = Path(cfg.paths.output_dir)
    results = load_results(run_dir / "results.json")
    head = results["head"]
    tasks = results["tasks"]
    assert head["name"] == "words" and list(head["prompts"]) == tasks
    assert head["prompts"]["reviews"] == {
        "template": "Review: {text}\nSentiment:",
        "label_words": [" terrible", " great"],
    }
    for matrix in (results["accuracy_matrix"], head["exact_match_matrix"]):
        assert all(0 <= v <= 1 for row in matrix for v in row)
    assert len(head["initial_exact_match"]) == len(tasks)
    # A word's first token is among the V candidates of em and the C of acc: em <= acc.
    for acc_row, em_row in zip(results["accuracy_matrix"], head["exact_match_matrix"], strict=True):
        assert all(e <= a + 1e-12 for a, e in zip(acc_row, em_row, strict=True))
    saved = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    assert saved["head"]["name"] == "words"
    assert saved["data"]["task_specs"]["pairs"]["label_words"] == [" wrong", " true"]
    table = run_table(results)
    assert "zero-shot" in table and "em BWT" in table and "rank classification" in table
    # Per-example exact matches beside the accuracies' outcomes: each point's share of "1"s
    # is that point's exact match (the em intervals resample these rows).
    outcomes = json.loads((run_dir / "outcomes.json").read_text())
    for j, task in enumerate(tasks):
        strings = outcomes["eval_exact_match"][task]
        rows = [head["initial_exact_match"], *head["exact_match_matrix"]]
        assert len(strings) == len(rows) == len(tasks) + 1
        for string, row in zip(strings, rows, strict=True):
            assert len(string) == len(outcomes["eval"][task][0])
            assert string.count("1") / len(string) == pytest.approx(row[j])


def test_a_linear_run_has_no_words_section(tmp_path: Path) -> None:
    cfg = compose_run_config(tmp_path, [*TINY, "logger=none"])
    assert run_job(cfg, [], multirun=False).exit_code == EXIT_OK
    results = load_results(Path(cfg.paths.output_dir) / "results.json")
    assert results["head"] is None
    assert "em:" not in run_table(results) and "before training" in run_table(results)
    outcomes = json.loads((Path(cfg.paths.output_dir) / "outcomes.json").read_text())
    assert "eval_exact_match" not in outcomes


def _nothing_written(run_dir: Path) -> None:
    """A refused run leaves no config, checkpoint or result (a refusal after the model
    loaded removes its run_config.yaml: ``curlora.run.guard.forget_refused_run``)."""
    left = [p.name for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"]
    assert not left, f"a refused run left {left}"


BAD = {
    "template without its placeholder": (
        {"template": "Review:\nSentiment:"},
        "data.task_specs.reviews.template=",
    ),
    "template with an unknown placeholder": (
        {"template": "Review: {text} {mood}"},
        "data.task_specs.reviews.template=",
    ),
    "an empty label word": ({"label_words": [" great", " "]}, "reviews.label_words="),
    "word count other than num_classes": ({"label_words": [" great"]}, "reviews.label_words="),
    "no template under words": ({"template": None}, "data.task_specs.reviews.template="),
    "two words with one first token": (
        {"label_words": [" great", " great fun"]},
        "data.task_specs.reviews.label_words=",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_words_input_exits_2_naming_the_key_and_writes_nothing(
    tmp_path: Path, case: str
) -> None:
    spec, key = BAD[case]
    cfg = _tiny(tmp_path, **spec)
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_CONFIG, outcome
    assert key in outcome.status and "\n" not in outcome.status, outcome.status
    _nothing_written(Path(cfg.paths.output_dir))


def test_a_pair_template_must_place_the_pair(tmp_path: Path) -> None:
    cfg = compose_run_config(tmp_path, WORDS)
    with open_dict(cfg):
        cfg.data.task_specs.pairs.template = "First: {text}\nAnswer:"
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_CONFIG
    assert "data.task_specs.pairs.template=" in outcome.status and "{pair}" in outcome.status


def test_words_on_a_model_without_an_lm_head_exits_2(tmp_path: Path, monkeypatch) -> None:
    from transformers import LlamaForCausalLM

    monkeypatch.setattr(LlamaForCausalLM, "get_output_embeddings", lambda self: None)
    cfg = _tiny(tmp_path)
    outcome = run_job(cfg, [], multirun=False)
    assert outcome.exit_code == EXIT_CONFIG
    assert "head=words" in outcome.status and "LM head" in outcome.status
    _nothing_written(Path(cfg.paths.output_dir))


def test_the_command_line_refuses_a_short_word_list_in_one_line(tmp_path: Path) -> None:
    done = run_cli(
        [*WORDS, "data.task_specs.reviews.label_words=[' great']"], tmp_path, timeout=300
    )
    assert done.returncode == EXIT_CONFIG, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.task_specs.reviews.label_words=" in errors[0], errors
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "logs" / "runs").exists() or not any(
        (tmp_path / "logs" / "runs").iterdir()
    )


def test_a_bad_head_setting_is_refused_before_anything_loads(tmp_path: Path) -> None:
    from curlora.checks.config import ConfigError, validate_config

    cfg = _tiny(tmp_path)
    with open_dict(cfg):
        cfg.head.name = {"not": "valid"}
    with pytest.raises(ConfigError, match="name="):
        validate_config(cfg, check_model=False)
