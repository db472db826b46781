"""Metrics as pure functions, tested alone; callbacks call them.

- ``continual``: accuracy-matrix metrics (ACC, BWT, forgetting, FWT, ...; no torch).
- ``perplexity``: sliding-window perplexity of a causal LM over a whole corpus.
- ``degenerate``: flags heads that predict one class or score at/below the majority baseline.

Nothing is re-exported here so that importing the pure metrics does not import torch.
"""
