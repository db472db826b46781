"""Entry point: ``python train.py [-m] key=value ...`` (Hydra; configs in ./configs)."""

from __future__ import annotations

import sys
from pathlib import Path

# Runs from a checkout without installing, too: the package lives in ./src.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

if __name__ == "__main__":
    try:
        from curlora.cli import main
    except KeyboardInterrupt:  # Ctrl+C while importing: nothing started, nothing to keep
        print("error: interrupted by SIGINT", file=sys.stderr)
        sys.exit(130)
    main()
