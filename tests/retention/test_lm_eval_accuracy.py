"""lm-eval's accuracy on the in-memory adapted tiny model equals a by-hand log-likelihood
comparison of the same choices (the definition of lm-eval's multiple-choice ``acc``: the
choice whose continuation tokens have the highest summed log-probability given the query;
``acc_norm``: the same divided by the choice's length in characters)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from curlora.adapters import apply_adapter
from curlora.adapters.curlora import CURLoRAMethod
from curlora.data.sources.synthetic import FILLER, SUBJECTS, TOPICS, VERBS
from curlora.models.tiny import load
from curlora.retention.suite import evaluate

N_DOCS = 24


def _docs() -> list[dict]:
    """Queries and choices from the tiny tokenizer's vocabulary (no [UNK]): choices of
    1–3 words, so choices of several tokens and lengths test the summing and acc_norm."""
    rng = random.Random(0)
    words = [*TOPICS, *FILLER, *VERBS]
    docs = []
    for _ in range(N_DOCS):
        query = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(FILLER)}"
        choices = [" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(3)]
        docs.append({"query": query, "choices": choices, "label": rng.randrange(3)})
    return docs


def _task_config(path: Path) -> dict:
    return {
        "task": "tiny_choice",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        "metadata": {"version": 1.0},
    }


def _by_hand(model: torch.nn.Module, tokenizer, docs: list[dict]) -> tuple[float, float, str]:
    """Summed log p(choice tokens | query tokens) per choice, argmax vs the label: acc,
    acc_norm, and each row's acc as "1"/"0" in document order."""
    right = right_norm = 0
    rows = ""
    for doc in docs:
        context = tokenizer(doc["query"], add_special_tokens=False)["input_ids"]
        lls = []
        for choice in doc["choices"]:
            cont = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([context + cont])
            with torch.no_grad():
                logp = F.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]  # [L, V]
            # Position p predicts token p + 1: the continuation's tokens sit at the end.
            positions = range(len(context) - 1, len(context) + len(cont) - 1)
            lls.append(sum(float(logp[p, t]) for p, t in zip(positions, cont, strict=True)))
        norm = [ll / len(c) for ll, c in zip(lls, doc["choices"], strict=True)]
        hit = int(max(range(len(lls)), key=lls.__getitem__) == doc["label"])
        right += hit
        rows += str(hit)
        right_norm += int(max(range(len(norm)), key=norm.__getitem__) == doc["label"])
    return right / len(docs), right_norm / len(docs), rows


def test_lm_eval_accuracy_matches_a_direct_log_likelihood_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)  # outside any git checkout, as a user's run directory may be

    model, tokenizer = load({}, tmp_path)
    apply_adapter(model, CURLoRAMethod(name="curlora", rank=4, alpha=1.0, seed=0))
    # U starts at zero (the adapted model is the base); a non-zero U makes the adapter count.
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn_like(param, generator=torch.Generator().manual_seed(1)))
    model.eval()
    docs = _docs()
    data = tmp_path / "tiny_choice.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = TaskManager(include_defaults=False).load([_task_config(data)])["tasks"]

    before = (random.getstate(), torch.get_rng_state())
    scores = evaluate(model, tokenizer, {"tiny": tasks["tiny_choice"]}, N_DOCS, batch_size=5)
    # lm-eval seeds the global generators; evaluate leaves them as it found them.
    assert random.getstate() == before[0] and torch.equal(torch.get_rng_state(), before[1])
    # ... and asks git for a commit it never uses: skipped, so nothing prints "fatal: ...".
    assert "not a git repository" not in capfd.readouterr().err
    acc, acc_norm, rows = _by_hand(model, tokenizer, docs)

    assert scores["tiny"].n == N_DOCS
    assert scores["tiny"].acc == pytest.approx(acc, abs=1e-9)
    assert scores["tiny"].acc_norm == pytest.approx(acc_norm, abs=1e-9)
    # Row by row (what the report's intervals resample), and acc is exactly their share.
    assert scores["tiny"].correct == rows
    assert scores["tiny"].acc == rows.count("1") / N_DOCS
    assert 0 < rows.count("1") < N_DOCS  # both outcomes occur, so the order is checked
    # The two rules disagree on some document here, so each comparison checks its own rule.
    assert acc != acc_norm
