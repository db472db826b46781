"""A grid of runs (``curlora-reproduce``) beyond the single run.

- ``guard``: the grid's arguments, its exclusive lock, no stale report.
- ``results``: the committed store of finished jobs' small files, restored before a grid
  runs so committed jobs are skipped.
"""
