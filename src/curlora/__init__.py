"""CURLoRA: continual fine-tuning of language models with parameter-efficient adapters."""

__version__ = "0.1.0"
