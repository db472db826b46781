"""``python -m curlora.distributed.worker <run dir>``: process 1..N-1 of a run with several
processes, started by process 0's launcher (``curlora.distributed``), never by hand.

It runs the config process 0 runs with (``<run dir>/.worker_config.yaml``), continues from
the same checkpoints and walks the same task loop, writing no file. It builds nothing from
that file unless its SHA-256 is the one process 0 put in this process's environment
(``CURLORA_WORKER_CONFIG_SHA256``): any other file (one that came with a received run
directory, or was changed after process 0 wrote it) is refused with exit code 2 before it
is parsed. Exit code 0 when the
loop ended the way process 0's did (completed, interrupted, stopped by a non-finite loss:
process 0 reports those); 1 on an error of its own (traceback on stderr), which makes
Lightning's watcher stop process 0 as well.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from curlora.distributed import WORKER_CONFIG, WORKER_DIGEST_ENV, WORKER_ENV, config_digest
from curlora.loop import TaskLoop
from curlora.models.module import NonFiniteLossError
from curlora.quiet import configure_console
from curlora.run.interrupts import InterruptGuard, RunInterrupted

log = logging.getLogger("curlora")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or WORKER_ENV not in os.environ:
        print(
            "usage: python -m curlora.distributed.worker <run dir> (started by a run with "
            "several processes, e.g. trainer=ddp_cpu; not a command to type)",
            file=sys.stderr,
        )
        return 2
    run_dir = Path(args[0])
    rank = os.environ.get("LOCAL_RANK", "?")
    logging.basicConfig(
        level=logging.INFO,
        format=f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s",
    )
    configure_console()
    path = run_dir / WORKER_CONFIG
    try:
        data = path.read_bytes()
    except OSError as error:
        print(f"error: {path}: cannot read the worker config ({error})", file=sys.stderr)
        return 2
    expected = os.environ.get(WORKER_DIGEST_ENV, "")
    if config_digest(data) != expected:
        print(
            f"error: {path} is not the config process 0 wrote for this start (its SHA-256 "
            f"differs from ${WORKER_DIGEST_ENV}): refused, nothing built",
            file=sys.stderr,
        )
        return 2
    cfg = OmegaConf.create(data.decode("utf-8"))
    with InterruptGuard() as guard:
        try:
            loop = TaskLoop(cfg, run_dir, guard)  # type: ignore[arg-type]
            loop.restore()
            loop.run()
        except NonFiniteLossError as stop:
            log.info("stopped with process 0: %s", stop)
        except (RunInterrupted, KeyboardInterrupt, SystemExit) as caught:
            if guard.as_interrupt(caught) is None:
                raise
            log.info("interrupted with process 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
