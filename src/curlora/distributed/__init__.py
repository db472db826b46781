"""Several processes on one machine (``trainer=ddp``, ``trainer=ddp_cpu``): Lightning's DDP,
with the run's other processes started on the run directory.

How a run with N processes goes:

- The command starts process 0, which owns the run: it decides what the run directory
  allows (``curlora.run.guard``), locks it and writes every file (``results.json``,
  ``progress.json``, checkpoints, adapter, loggers).
- At its first Trainer call, Lightning's launcher starts processes 1..N-1. Lightning's own
  launcher re-runs the command line (with Hydra: ``python train.py <overrides>
  hydra.run.dir=...``); in a multirun that starts the sweep again, and each copy would plan
  and lock a run directory of its own. :class:`RunDirectoryLauncher` starts
  ``python -m curlora.distributed.worker <run dir>`` instead: the worker reads the config
  process 0 runs with (``.worker_config.yaml`` in the run directory), builds the same
  objects, continues from the same checkpoints, makes the same sequence of Trainer calls
  and writes nothing. Process 0 hands each worker the SHA-256 of that file in its
  environment, and the worker refuses a file with another digest: a run directory received
  from someone else, or edited while the run starts, never chooses what the workers build.
- Lightning's DDP strategy does the distribution (gradient all-reduce, the process group).
  Each process trains on its share of the current task and scores its share of every eval
  split (``curlora.data.sampling``); torchmetrics sums the confusion counts; process 0
  measures the perplexity and broadcasts it; a signal or a non-finite loss on any process
  stops all of them after the same batch.
- When the run ends, process 0 waits for the others, closes the process group and restores
  the environment (:class:`ProcessGroupScope`), so that the next run in the same process
  (a multirun job) starts a group of its own.

Lightning's watcher thread stays: if a worker dies, process 0 is killed too (it would
otherwise wait forever in a collective); files already written are complete (atomic).

:class:`RunDirectoryLauncher` subclasses Lightning's launcher, which is private API (as are
the watcher and the thread-count helper it reuses): checked against the Lightning range in
``pyproject.toml`` by ``tests/pipeline/test_distributed.py``, which fails if it changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

from curlora.run.atomic import atomic_write_text

log = logging.getLogger(__name__)

WORKER_CONFIG = ".worker_config.yaml"
# Set in the environment of processes 1..N-1 only: the run directory they serve.
WORKER_ENV = "CURLORA_WORKER_RUN_DIR"
# Set beside it: the SHA-256 (hex) of the worker config process 0 wrote for this start.
WORKER_DIGEST_ENV = "CURLORA_WORKER_CONFIG_SHA256"
# What Lightning's launcher sets in process 0's environment (restored when the run ends).
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
WORKER_MODULE = "curlora.distributed.worker"


def config_digest(data: bytes) -> str:
    """The SHA-256 (hex) by which a worker recognises the config process 0 wrote for it."""
    return hashlib.sha256(data).hexdigest()


def is_worker() -> bool:
    """True in processes 1..N-1 of a run (they write nothing)."""
    return WORKER_ENV in os.environ


class RunDirectoryLauncher(_SubprocessScriptLauncher):
    """Lightning's one-node subprocess launcher, except for the command the other processes
    run (``python -m curlora.distributed.worker <run dir>``; see the module docstring)."""

    def __init__(self, base: _SubprocessScriptLauncher, run_dir: Path, cfg: DictConfig) -> None:
        super().__init__(base.cluster_environment, base.num_processes, base.num_nodes)
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.observer: _ChildProcessObserver | None = None

    def launch(self, function: Any, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        """As Lightning's, keeping a handle on the watcher thread (see :meth:`release`)."""
        self.cluster_environment.validate_settings(
            num_devices=self.num_processes, num_nodes=self.num_nodes
        )
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = _ChildProcessObserver(main_pid=os.getpid(), child_processes=self.procs)
            self.observer.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def kill(self, signum: Any) -> None:
        """Lightning kills the workers on Ctrl+C; its watcher must not then kill this process
        before it saved what the run measured."""
        self._detach_observer()
        super().kill(signum)

    def _detach_observer(self) -> None:
        if self.observer is not None:
            self.observer._child_processes = []  # its next check finds nothing to watch

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        environment = self.cluster_environment
        os.environ["MASTER_ADDR"] = environment.main_address
        os.environ["MASTER_PORT"] = str(environment.main_port)
        os.environ["NODE_RANK"] = str(environment.node_rank())
        os.environ["LOCAL_RANK"] = str(environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        # The resolved config process 0 runs with; loggers are process 0's alone.
        worker_cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        worker_cfg.logger = None
        worker_yaml = OmegaConf.to_yaml(worker_cfg)
        atomic_write_text(self.run_dir / WORKER_CONFIG, worker_yaml)
        digest = config_digest(worker_yaml.encode("utf-8"))
        for local_rank in range(1, self.num_processes):
            env = {
                **os.environ,
                "LOCAL_RANK": str(local_rank),
                WORKER_ENV: str(self.run_dir),
                WORKER_DIGEST_ENV: digest,
            }
            command = [sys.executable, "-m", WORKER_MODULE, str(self.run_dir)]
            self.procs.append(subprocess.Popen(command, env=env, cwd=os.getcwd()))
        log.info("started %d worker process(es) for %s", len(self.procs), self.run_dir)

    def release(self, wait_s: float) -> list[int | None]:
        """Wait up to ``wait_s`` seconds for the workers to exit, kill those still running;
        their exit codes. The watcher thread is told first, so a killed worker does not
        take process 0 down with it."""
        self._detach_observer()
        codes: list[int | None] = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(wait_s, 0.01)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes


class WorkerLost(RuntimeError):
    """A worker process of the run died (killed, out of memory): the collective process 0
    was in failed. One line; the run continues with ``resume=`` from its checkpoints."""

    def __init__(self, lost: list[str], run_dir: Path) -> None:
        super().__init__(
            f"worker process {', '.join(lost)} died, so the run stopped; resume={run_dir} "
            "continues it from its last checkpoint"
        )


def _death(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class ProcessGroupScope:
    """Process 0's side of a run with several processes (a context manager): adopts the
    launcher of every Trainer of the run (:meth:`adopt`) and, when the run ends, waits for
    the workers, closes the process group and restores the environment."""

    def __init__(self, run_dir: Path, cfg: DictConfig) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.launchers: list[RunDirectoryLauncher] = []
        self._saved_env = {k: os.environ.get(k) for k in LAUNCH_ENV}
        self.completed = False
        """Set when the run walked every task: the workers are then about to exit on their
        own and are waited for; otherwise (a failure, an interrupt) they are stopped."""

    def __enter__(self) -> ProcessGroupScope:
        return self

    def adopt(self, trainer: Any) -> None:
        """Give ``trainer`` the run-directory launcher when it would start processes."""
        launcher = getattr(trainer.strategy, "_launcher", None)
        starts_processes = type(launcher) is _SubprocessScriptLauncher
        if is_worker() or trainer.world_size == 1 or not starts_processes:
            return
        ours = RunDirectoryLauncher(launcher, self.run_dir, self.cfg)
        trainer.strategy._launcher = ours
        self.launchers.append(ours)

    def stop_watching(self) -> None:
        """Process 0 caught an error and waits in no collective any more: Lightning's
        watcher must not kill it for a dead worker before it has saved what it measured."""
        for launcher in self.launchers:
            launcher._detach_observer()

    def lost_workers(self) -> list[str]:
        """The worker processes that died (``pid 123 (killed by SIGKILL)``)."""
        lost = []
        for launcher in self.launchers:
            for proc in launcher.procs:
                code = proc.poll()
                if code not in (None, 0):
                    lost.append(f"pid {proc.pid} ({_death(code)})")
        return lost

    def __exit__(self, *exc: object) -> None:
        wait_s = 300.0 if self.completed else 0.0
        for launcher in self.launchers:
            codes = launcher.release(wait_s)
            if self.completed and any(code != 0 for code in codes):
                log.warning("worker process exit codes: %s (None: stopped here)", codes)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / WORKER_CONFIG).unlink()
