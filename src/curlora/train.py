"""One experiment from a composed config: the recipe ``python train.py`` runs.

    validate the whole config (nothing loads before it passes)
    → decide what the run directory allows: new run, continue it, resume= it (run/guard.py)
    → lock the directory for this process
    → build the objects and walk the task sequence (loop.TaskLoop; with several processes
      the others start at the first Trainer call and stop with it: curlora.distributed)
    → results.json, plots, logger summary (run/report.py) — also when the run stops early

``run`` returns the results dict as written to ``results.json``; its ``status`` says how
the run ended (``completed``; ``stopped: ...`` for a non-finite loss; ``interrupted by
SIGTERM``/``SIGINT``; ``failed: ...``). ``curlora.cli`` turns that into the exit code.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from curlora.checks.config import ConfigError, validate_config
from curlora.data.assets import AssetError
from curlora.data.sources.hub import HubUnreachableError
from curlora.data.validation import DataError
from curlora.distributed import ProcessGroupScope, WorkerLost
from curlora.loop import TaskLoop
from curlora.models.module import NonFiniteLossError
from curlora.quiet import configure_console
from curlora.reporting.console import run_table
from curlora.reporting.results import ResultsError, load_results
from curlora.run.atomic import OutputError, remove_stale_temp_files
from curlora.run.guard import RunLock, forget_refused_run, plan_run, save_run_config
from curlora.run.interrupts import InterruptGuard, RunInterrupted
from curlora.run.report import RESULTS_FILE, complete_plots, write_run_report
from curlora.run.state import DamagedFile, read_progress

log = logging.getLogger("curlora")
# How a run is refused while its objects are built (bad data, a model or data set that
# cannot be fetched): nothing trained, so the run directory must not look like a run.
REFUSED = (ConfigError, DataError, HubUnreachableError, AssetError)


def _finished_results(run_dir: Any) -> dict[str, Any] | None:
    """The results of a run in ``run_dir`` that already completed, else None."""
    try:
        progress = read_progress(run_dir)
        if progress is None or progress.status != "completed":
            return None
        results = load_results(run_dir / RESULTS_FILE)
    except (DamagedFile, ResultsError, OSError):
        return None
    return results if results["status"] == "completed" else None


def run(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one experiment from a composed config; returns the results dict.

    ``overrides``: the command-line overrides (Hydra's ``overrides.task``), used to refuse
    a ``resume=`` whose overrides would change the experiment. Raises ``ConfigError`` or
    ``DataError`` before anything trains, ``OutputError`` when outputs cannot be written.
    """
    # For resume= the saved config is the experiment: it is the one to validate (the
    # composed defaults may name a model this machine has never fetched).
    plan, plan_warnings = plan_run(cfg, overrides)
    validate_config(plan.cfg)
    configure_console()
    for warning in plan_warnings:
        log.warning("%s", warning)
    cfg, run_dir = plan.cfg, plan.run_dir
    with RunLock(run_dir):
        if plan.mode != "new":
            finished = _finished_results(run_dir)
            if finished is not None:
                log.info("%s already completed this experiment; nothing to do", run_dir)
                complete_plots(finished, run_dir)
                return finished
            for stale in remove_stale_temp_files(run_dir):
                log.info("removed %s, left by an interrupted write", stale)
        else:
            save_run_config(cfg, run_dir)
        with InterruptGuard() as guard, ProcessGroupScope(run_dir, cfg) as scope:
            guard.check()  # a Ctrl+C while the config was composed: stop before loading
            try:
                loop = TaskLoop(cfg, run_dir, guard, scope)
            except REFUSED:
                if plan.mode == "new":  # nothing ran: the corrected command starts afresh
                    forget_refused_run(run_dir)
                raise
            if plan.mode != "new":
                try:
                    loop.restore()
                except DamagedFile as error:
                    raise ConfigError(f"resume: {error}") from None
            try:
                results = _run_and_report(loop, guard)
                if guard.received is not None:  # after the loop's last check: too late to stop
                    log.warning(
                        "received %s after the last task finished: the run %s; nothing was "
                        "interrupted",
                        signal.Signals(guard.received).name,
                        results["status"],
                    )
                return results
            except Exception as error:  # gloo's "Connection reset by peer": a worker died
                lost = scope.lost_workers()
                if not lost or isinstance(error, (*REFUSED, OutputError)):
                    raise
                raise WorkerLost(lost, run_dir) from error


def _run_and_report(loop: TaskLoop, guard: InterruptGuard) -> dict[str, Any]:
    """Walk the tasks; whatever happens, save progress and write results.json."""
    status = "failed"
    error: BaseException | None = None
    try:
        status = loop.run()
    except NonFiniteLossError as stop:
        status = f"stopped: {stop}"
        log.error("%s; the last good checkpoint is kept, results hold what is known", stop)
    except (RunInterrupted, KeyboardInterrupt, SystemExit) as caught:
        interrupt = guard.as_interrupt(caught)
        if interrupt is None:
            raise
        status, error = str(interrupt), interrupt
    except OutputError as caught:
        status, error = f"failed: {caught}", caught
    except Exception as caught:
        status = f"failed: {type(caught).__name__}: {caught}"
        if loop.scope is not None:
            loop.scope.stop_watching()  # nothing waits in a collective now: save, then stop
        raise
    finally:
        results, report_error = _report(loop, status)
    if error is not None:
        raise error
    if report_error is not None:
        raise report_error
    assert results is not None
    return results


def _report(loop: TaskLoop, status: str) -> tuple[dict[str, Any] | None, OutputError | None]:
    """progress.json, then results.json and the rest. A write that fails is logged in one
    line and returned (never raised here, so it cannot hide the error that ended the run)."""
    failure: OutputError | None = None
    try:
        loop.save_progress(status)
    except OutputError as error:
        log.error("%s", error)
        failure = error
    try:
        results = write_run_report(
            loop.cfg, loop.run_dir, loop.record, loop.context(), status, loop.loggers
        )
        # Before the loggers close: W&B keeps the console output up to its finish.
        log.info("\n%s", run_table(results, loop.run_dir, loop.elapsed_s()))
    except OutputError as error:
        log.error("%s", error)
        return None, failure or error
    finally:
        loop.close_loggers()
    return results, failure
