"""How a task's answer is read from the backbone: the ``head`` config group.

A head object (built from ``configs/head/<name>.yaml`` by its ``_target_``, like methods
and strategies) decides four things, and the module, the loop and every strategy go
through it, so the task loop is the same for both protocols:

- ``make_heads``: one module per task mapping the features ``[B, H]`` to class logits
  ``[B, C]`` (``ContinualLitModule.heads``; strategies read it as ``module.heads[task]``);
- ``read_index``: where the features are read in each sequence (``[B]`` positions);
- ``loss``: the training loss of a batch from its hidden states;
- ``exact_match``: per example, whether the answer is right over the whole vocabulary
  (None where the protocol has no such score).

``linear`` (the paper's protocol, the default): a fresh ``Linear(H, C)`` per task on the
last text token. ``words`` (the LLM continual-learning literature's): the language model
answers in words through its own frozen LM head (``curlora.models.heads.words``).
"""

from __future__ import annotations

from typing import Any

from curlora.models.heads.base import Head, last_token_index
from curlora.models.heads.linear import LinearHeads
from curlora.registry import build

__all__ = ["HEADS_PACKAGE", "Head", "LinearHeads", "build_head", "last_token_index"]

HEADS_PACKAGE = "curlora.models.heads"


def build_head(cfg: Any) -> Head:
    """The head a ``head`` config node names (``linear`` when the config has none)."""
    if cfg is None:
        return LinearHeads()
    return build(cfg, Head, "head", HEADS_PACKAGE)
