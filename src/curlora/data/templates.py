"""Instruction templates and label words: how a task is asked and answered under ``head=words``.

A task's ``template`` holds ``{text}`` (and ``{pair}`` for a sentence-pair task) and ends
where the answer begins, e.g. ``"Review: {text}\\nSentiment:"``; its ``label_words`` give one
answer per class in class-id order, e.g. ``[" negative", " positive"]``. A training or
evaluation example is the rendered template followed by the tokens of its class's word.
``str.format`` syntax: a literal brace is written ``{{`` or ``}}``.

The checks here need no tokenizer (they run before anything loads); the one that does
(distinct first tokens) is ``curlora.models.heads.words.label_token_ids``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

FIELDS = ("text", "pair")
"""The placeholders a template may hold."""


def template_fields(template: str) -> list[str]:
    """The placeholder names of ``template`` in order; ValueError when it does not parse."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def template_problem(template: object, paired: bool) -> str | None:
    """What is wrong with a task's template (None: it is sound). ``paired``: the task has a
    second text (``text_pair_field``), which the template must place with ``{pair}``."""
    if not isinstance(template, str) or not template.strip():
        return "a non-empty string"
    wanted = ["text", "pair"] if paired else ["text"]
    shape = "with {text} and {pair}" if paired else "with {text} (and no {pair})"
    try:
        fields = template_fields(template)
    except ValueError as error:  # an unmatched brace
        return f"a str.format template {shape} ({error}; write a literal brace as {{{{ or }}}})"
    if sorted(fields) != sorted(wanted):
        return f"a template {shape}, each once; it has {fields or 'no placeholder'}"
    return None


def label_words_problem(words: object, num_classes: int) -> str | None:
    """What is wrong with a task's label words (None: they are sound)."""
    if not isinstance(words, Sequence) or isinstance(words, str):
        return f"a list of {num_classes} words, one per class in class-id order"
    if len(words) != num_classes:
        return f"{num_classes} words (num_classes), one per class; it has {len(words)}"
    for word in words:
        if not isinstance(word, str) or not word.strip():
            return f"non-empty words; {word!r} is empty"
    if len(set(words)) != len(words):
        return "distinct words, one per class"
    return None


def render(template: str, text: str, pair: str | None) -> str:
    """The prompt of one example (the answer is appended to its tokens)."""
    return template.format(text=text) if pair is None else template.format(text=text, pair=pair)


def template_suffix(template: str) -> str:
    """The fixed text after the template's last placeholder (what a too-long prompt keeps at
    its end, so the question right before the answer is never cut)."""
    suffix = ""
    for literal, field, _, _ in string.Formatter().parse(template):
        # A chunk is (literal text, the field after it); an escaped brace splits literals.
        suffix = "" if field is not None else suffix + literal
    return suffix
