"""The words head (``curlora.models.heads.words``) against the plain causal LM it reads.

Reference for every number: the tiny Llama's own full forward, ``model(input_ids).logits``
``[B, T, V]`` (what the words head must never build), from which the answer loss, the rank
classification and the exact match are computed the textbook way and compared.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from curlora.adapters import apply_adapter
from curlora.adapters.lora import LoRAMethod
from curlora.models.heads import words as words_module
from curlora.models.heads.words import LabelWords, label_token_ids
from curlora.models.module import ContinualLitModule
from curlora.models.tiny import load

WORDS = {"reviews": [" terrible", " great"], "pairs": [" wrong", " true", " same"]}


def _module() -> tuple[ContinualLitModule, dict[str, list[list[int]]], object]:
    backbone, tokenizer = load({}, cache_dir=Path("."))
    apply_adapter(backbone, LoRAMethod(rank=4, seed=0))
    head = LabelWords()
    head.prepare_backbone(backbone)
    tokens = label_token_ids(WORDS, tokenizer)
    module = ContinualLitModule(
        backbone,
        {"reviews": 2, "pairs": 3},
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
        head=head,
        answer_tokens=tokens,
    )
    return module.eval(), tokens, tokenizer


def _batch(
    prompts: list[list[int]], answers: list[list[int]], labels: list[int], left: bool = False
) -> dict[str, torch.Tensor]:
    """Prompt + answer ids padded with 0 on the right (or the left)."""
    rows = [p + a for p, a in zip(prompts, answers, strict=True)]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = torch.tensor(row), 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor(labels),
        "answer_length": torch.tensor([len(a) for a in answers]),
    }


PROMPTS = [[2, 10, 11, 12, 13], [2, 14, 15], [2, 16, 17, 18, 19, 20, 21]]


def test_answer_loss_is_the_causal_lm_loss_of_the_answer_tokens_only() -> None:
    module, tokens, _ = _module()
    # A two-token answer for the last row: every answer token counts, no prompt token does.
    answers = [tokens["pairs"][0], tokens["pairs"][1], [*tokens["pairs"][2], 30]]
    batch = _batch(PROMPTS, answers, [0, 1, 2])
    loss, logits = module.task_loss(batch, "pairs")
    # Textbook: full logits [B, T, V], labels -100 everywhere but the answer tokens.
    full = module.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    targets = torch.full_like(batch["input_ids"], -100)
    for i, (prompt, answer) in enumerate(zip(PROMPTS, answers, strict=True)):
        targets[i, len(prompt) : len(prompt) + len(answer)] = torch.tensor(answer)
    expected = F.cross_entropy(
        full.logits[:, :-1].flatten(0, 1).float(), targets[:, 1:].flatten(), ignore_index=-100
    )
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert logits.shape == (3, 3)


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_acc_ranks_the_words_and_em_takes_the_whole_vocabulary(left: bool) -> None:
    module, tokens, _ = _module()
    answers = [tokens["pairs"][label] for label in (0, 1, 2)]
    batch = _batch(PROMPTS, answers, [0, 1, 2], left=left)
    features = module.features(batch)
    logits = module.heads["pairs"](features)  # [B, 3]
    exact = module.head.exact_match(
        module.backbone, module.heads["pairs"], features, batch["labels"]
    )
    full = module.backbone(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
    width = batch["input_ids"].shape[1]
    for i, prompt in enumerate(PROMPTS):
        # The answer position is the last prompt token, wherever the padding sits.
        at = width - len(answers[i]) - 1 if left else len(prompt) - 1
        log_probs = full[i, at].float().log_softmax(-1)  # [V]
        firsts = torch.tensor([ids[0] for ids in tokens["pairs"]])
        torch.testing.assert_close(
            logits[i].log_softmax(-1), log_probs[firsts].log_softmax(-1), rtol=1e-5, atol=1e-5
        )
        assert int(logits[i].argmax()) == int(log_probs[firsts].argmax())
        assert bool(exact[i]) == (int(log_probs.argmax()) == int(firsts[i]))


def test_no_batch_by_length_by_vocabulary_tensor_is_ever_built(monkeypatch) -> None:
    """The LM head is applied only at answer positions: [N, H] inputs, never [B, T, H]."""
    module, tokens, _ = _module()
    shapes: list[tuple[int, ...]] = []
    real = words_module.lm_logits

    def recording(layer, hidden, rows=None):
        shapes.append(tuple(hidden.shape))
        return real(layer, hidden, rows)

    monkeypatch.setattr(words_module, "lm_logits", recording)
    called: list[int] = []
    module.backbone.get_output_embeddings().register_forward_hook(lambda *a: called.append(1))
    batch = _batch(PROMPTS, [tokens["reviews"][1]] * 3, [1, 1, 1])
    module.task_loss(batch, "reviews")
    features = module.features(batch)
    module.head.exact_match(module.backbone, module.heads["reviews"], features, batch["labels"])
    assert shapes and all(len(s) == 2 for s in shapes), shapes
    assert not called, "the LM head module ran on whole sequences"


def test_the_lm_head_and_embeddings_are_frozen_and_no_head_has_parameters() -> None:
    module, _, _ = _module()
    backbone = module.backbone
    assert not backbone.get_output_embeddings().weight.requires_grad
    assert not backbone.get_input_embeddings().weight.requires_grad
    assert not list(module.heads.parameters())
    trainable = [n for n, _ in module.trainable_named_parameters()]
    assert trainable and all("lora_" in n for n in trainable), trainable


def test_words_sharing_a_first_token_are_refused_naming_the_key() -> None:
    _, tokenizer = load({}, cache_dir=Path("."))
    from curlora.checks.config import ConfigError

    with pytest.raises(ConfigError, match=r"data\.task_specs\.reviews\.label_words="):
        label_token_ids({"reviews": [" great", " great fun"]}, tokenizer)
    # Two words the tiny vocabulary lacks both encode as [UNK]: the same first token.
    with pytest.raises(ConfigError, match="share their first token"):
        label_token_ids({"reviews": [" negative", " positive"]}, tokenizer)
