"""Entry point: ``python train.py [-m] key=value ...`` (Hydra; configs in ./configs)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

# Runs from a checkout without installing, too: the package lives in ./src.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


class EarlyInterrupt:
    """SIGINT handler for the seconds before the run's own guard is installed.

    Python's default handler raises ``KeyboardInterrupt`` in whatever frame runs; during
    imports that is often a ``__del__``, where Python prints "Exception ignored" and goes
    on, so a Ctrl+C would be lost. This handler also records the signal: the run's
    ``InterruptGuard`` takes ``received`` over when it replaces this handler.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum
        raise KeyboardInterrupt


def _interrupted_before_start() -> None:
    print("error: interrupted by SIGINT", file=sys.stderr)
    sys.exit(130)  # nothing started, nothing to keep


if __name__ == "__main__":
    early = EarlyInterrupt()
    signal.signal(signal.SIGINT, early)
    try:
        from curlora.cli import main
    except KeyboardInterrupt:
        _interrupted_before_start()
    if early.received is not None:  # raised inside a __del__ and swallowed there
        _interrupted_before_start()
    main()
