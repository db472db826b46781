"""CURLoRA: continual fine-tuning of language models with parameter-efficient adapters."""

from curlora.resolvers import register_resolvers

__version__ = "0.1.0"

# The configs interpolate ${curlora.*}; any code that composes them imports this package.
register_resolvers()
