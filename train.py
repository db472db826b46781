"""Entry point: ``python train.py [-m] key=value ...`` (Hydra; configs in ./configs)."""

from __future__ import annotations

import sys
from pathlib import Path

# Runs from a checkout without installing, too: the package lives in ./src.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from curlora.cli import main

if __name__ == "__main__":
    main()
