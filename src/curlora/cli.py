"""Hydra entry point shared by ``python train.py`` and the ``curlora-train`` script.

Exit codes (also in the README):

    0    the run completed (or had already completed in its directory)
    1    an unexpected error, a bug (traceback in the log); in a multirun: some job did not
         complete; a worker process of a multi-process run died (one line; resume= continues)
    2    invalid configuration or data: nothing was trained (one line names the key or the
         file): also Hydra's composition errors, unusable output places, values that do not
         resolve or that a job would refuse (every job of a sweep; a resume compared with
         the run's saved config), refused before Hydra creates anything
         (``curlora.composition``)
    3    a model or data set cannot be fetched here (the message says what to use instead)
    4    stopped by a non-finite loss (results.json holds what was measured before)
    5    an output could not be written (disk full, read-only, permissions): one line names
         the file and the cause
    130  interrupted by SIGINT (Ctrl+C); 143 interrupted by SIGTERM (e.g. SLURM pre-emption)
         — results.json and the checkpoints are saved: ``resume=<run dir>`` continues. A
         SIGTERM after the run completed interrupts nothing: exit 0, and a line says so

In a multirun, a job that fails is recorded and the sweep goes on; at the end one line per
job that did not complete, and exit code 1. An interrupt stops the whole sweep.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from curlora.job_checks import refused_before_loading
from curlora.run.dirs import JOB_OUTCOMES, SWEEP_FAILURES, JobOutcome
from curlora.run.guard import remove_if_unused

# torch, Lightning and datasets are imported by the job (run_job) once its config passed the
# checks, not here: a command line refused before Hydra starts (an unknown choice) or by the
# checks (a typo'd key, a bad value) answers in about a second.

CONFIG_PATH = "pkg://curlora.configs"  # package data: works from a checkout and installed
log = logging.getLogger("curlora")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_STOPPED, EXIT_OUTPUT = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Outcome:
    """How one run ended: its exit code, a one-line status and the results (if any)."""

    exit_code: int
    status: str
    results: dict[str, Any] | None = None


def run_job(cfg: DictConfig, overrides: Sequence[str], multirun: bool) -> Outcome:
    """Run one experiment and classify how it ended (see the module docstring)."""
    refused = refused_before_loading(cfg)  # made before Hydra started too; cheap again
    if refused is not None:
        return Outcome(EXIT_CONFIG, f"invalid configuration: {refused}")
    from curlora.checks.config import ConfigError
    from curlora.data.assets import AssetError
    from curlora.data.sources.hub import HubUnreachableError
    from curlora.data.validation import DataError
    from curlora.distributed import WorkerLost
    from curlora.run.atomic import OutputError
    from curlora.run.interrupts import RunInterrupted
    from curlora.train import run

    try:
        results = run(cfg, overrides)
    except (ConfigError, DataError) as error:
        kind = "configuration" if isinstance(error, ConfigError) else "data"
        return Outcome(EXIT_CONFIG, f"invalid {kind}: {error}")
    except (HubUnreachableError, AssetError) as error:
        return Outcome(EXIT_UNREACHABLE, str(error))
    except OutputError as error:
        return Outcome(EXIT_OUTPUT, str(error))
    except RunInterrupted as interrupt:
        return Outcome(interrupt.exit_code, f"{interrupt}; continue with resume=<run dir>")
    except WorkerLost as lost:  # not a bug here: a process of the run was killed
        return Outcome(EXIT_ERROR, str(lost))
    except Exception as error:
        if not multirun:
            raise  # a bug: the traceback is what helps
        log.exception("job failed")
        return Outcome(EXIT_ERROR, f"failed: {type(error).__name__}: {error}")
    status = str(results["status"])
    code = EXIT_OK if status == "completed" else EXIT_STOPPED
    return Outcome(code, status, results)


def _record_in_log_files(status: str) -> None:
    """Write how the run ended into the run's log file (Hydra's file handlers), not to the
    console: the terminal gets the one ``error:`` line on stderr, not that line twice."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (status,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = Path(hydra_cfg.runtime.output_dir)
    _group_sweep_runs(cfg, hydra_cfg)
    task_overrides = _task_overrides(hydra_cfg)
    outcome = run_job(cfg, task_overrides, multirun)
    removed = False
    if outcome.exit_code in (EXIT_CONFIG, EXIT_UNREACHABLE) and not multirun:
        # Refused before it started: leave no empty run dir (only one this process made).
        removed = remove_if_unused(output_dir, task_overrides)
    if outcome.exit_code != EXIT_OK:
        if not removed:
            _record_in_log_files(outcome.status)
        print(f"error: {outcome.status}", file=sys.stderr)  # the terminal's one line
    if multirun:
        overrides = tuple(task_overrides)
        JOB_OUTCOMES.append(
            JobOutcome(str(output_dir), overrides, outcome.status, outcome.exit_code)
        )
        if outcome.exit_code >= 128:
            sys.exit(outcome.exit_code)  # an interrupt stops the whole sweep
    elif outcome.exit_code != EXIT_OK:
        sys.exit(outcome.exit_code)
    # The sweep objective (Optuna and friends maximise what main returns): computed on the
    # validation carves, never the test split; none unless the config names one.
    objective = cfg.get("objective")
    if objective is None:
        return None
    from curlora.objective import objective_value

    value = objective_value(outcome.results or {}, objective)
    return -math.inf if value is None else value  # a failed trial is the worst one


def _task_overrides(hydra_cfg: Any) -> list[str]:
    """The command line's overrides as typed: iterating Hydra's list would resolve an
    interpolation inside one (``rank=${nope}``) and raise before the run can refuse it."""
    return [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]


def _group_sweep_runs(cfg: DictConfig, hydra_cfg: Any) -> None:
    """In a multirun, every job's W&B run in one group named after the sweep
    (``curlora.run.dirs.sweep_group``)."""
    from hydra.types import RunMode

    from curlora.run.dirs import sweep_group

    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if hydra_cfg.mode == RunMode.MULTIRUN and wandb_cfg is not None and not wandb_cfg.get("group"):
        group = sweep_group(
            Path(hydra_cfg.sweep.dir),
            Path(cfg.paths.log_dir),
            _task_overrides(hydra_cfg),
            list(hydra_cfg.job.config.override_dirname.exclude_keys),
        )
        with open_dict(cfg):
            cfg.logger.wandb.group = group


class SignalRecorder:
    """The process's SIGTERM handler outside a run's own ``InterruptGuard``: records the
    signal instead of dying with 143 and no word. Inside a run the guard takes over and
    inherits what was recorded (``received``); after a run completed, a late SIGTERM (a
    scheduler's, while the process was closing) interrupts nothing: exit 0, said so."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum


def main() -> None:
    # A full disk makes every line written to train.log fail; Python's logging would print a
    # traceback for each. The run's own error line (exit 5) says what could not be written.
    logging.raiseExceptions = False
    import signal
    import threading

    late = SignalRecorder()
    if threading.current_thread() is threading.main_thread():  # signal.signal's own rule
        signal.signal(signal.SIGTERM, late)
    from curlora.composition import check_command_line
    from curlora.data.unreachable import HubUnreachableError

    try:
        # The jobs' checks can take seconds (they build a Trainer): Ctrl+C is one line here too.
        try:
            problem = check_command_line(sys.argv[1:])
        except HubUnreachableError as error:  # a job's data or model: offline, not cached
            print(f"error: {error}", file=sys.stderr)  # before Hydra creates anything
            sys.exit(EXIT_UNREACHABLE)
        if problem is not None:  # refused before Hydra creates a directory or a log file
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        _hydra_main()
    except KeyboardInterrupt:  # Ctrl+C before a run started (imports, config loading)
        print("error: interrupted by SIGINT", file=sys.stderr)
        sys.exit(130)
    if late.received is not None and not SWEEP_FAILURES:
        # Only reached when every job completed: an interrupted job exits 143 itself.
        name = signal.Signals(late.received).name
        print(
            f"warning: received {name} after the run completed; nothing was interrupted",
            file=sys.stderr,
        )
    if SWEEP_FAILURES:
        print(
            f"error: {len(SWEEP_FAILURES)} job(s) of the sweep did not complete: "
            + "; ".join(f"{Path(o.directory).name}: {o.status}" for o in SWEEP_FAILURES),
            file=sys.stderr,
        )
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
