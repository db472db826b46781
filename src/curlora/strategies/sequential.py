"""Sequential fine-tuning: the CURLoRA paper's protocol and the default strategy.

Tasks are trained one after another with nothing added: no penalty, no replay, no
distillation (Fawi 2024, "CURLoRA", arXiv 2408.14572: each task is fine-tuned in turn and
all earlier tasks are re-evaluated). Whatever protection against forgetting a run has then
comes from the ``method`` alone, which is what the paper measures.
"""

from __future__ import annotations

from curlora.strategies.base import Strategy


class Sequential(Strategy):
    """Plain fine-tuning task after task; every hook is the base class's no-op.

    A class of its own (rather than ``Strategy`` itself) so that the config names it like
    any other strategy: ``_target_: curlora.strategies.sequential.Sequential``. It has no
    settings and no state.
    """

    name = "sequential"
