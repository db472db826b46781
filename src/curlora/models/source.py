"""The model extension point: where a backbone and its tokenizer come from.

A ``ModelSource`` is a small dataclass built from ``configs/model/<name>.yaml`` by its
``_target_`` (``curlora.registry``); its fields are the YAML's keys. ``architecture`` is
cheap (a config, no weights) so that a run's settings are checked against the real layer
shapes before anything heavy loads; ``load`` returns the model in eval mode and its
tokenizer. A new model family is one subclass plus one YAML.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


@dataclasses.dataclass
class ModelSource:
    # Recompute each decoder layer's activations in the backward pass instead of keeping
    # them: less memory for long inputs or 7B models, ~30 % more compute, the same numbers.
    gradient_checkpointing: bool = dataclasses.field(default=False, kw_only=True)

    def as_config(self) -> dict[str, Any]:
        """The fields as the mapping the loader functions read."""
        return dataclasses.asdict(self)

    def architecture(self, cache_dir: Path) -> PretrainedConfig:
        raise NotImplementedError

    def load(self, cache_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        raise NotImplementedError
