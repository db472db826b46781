"""A run's life on disk, from its directory to its report.

- ``dirs``: which run or sweep directory a job gets (Hydra callback), and the sweep's
  summary of its jobs' outcomes.
- ``guard``: what the directory allows (new run, continue, ``resume=``, refuse) and its
  exclusive lock (``file_lock``).
- ``state``: checkpoints, ``progress.json`` and what a continued run reads back.
- ``record``: the typed ``RunRecord`` of every evaluation the loop files.
- ``report``: ``results.json``, the plots and the logger summary, also for a run that stopped.
- ``interrupts``: SIGTERM/SIGINT turned into a clean stop with a checkpoint.
- ``atomic``: the one file writer (a temporary file renamed over the target).
- ``evaluation_cache``: the evaluation before training, shared between runs it is the same for.
"""
