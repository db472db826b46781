"""The package works installed: the wheel carries the configs, and ``curlora-train`` runs
from a directory outside the checkout."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_wheel_installed_in_a_fresh_venv_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO_ROOT)],
        check=True, timeout=600,
    )  # fmt: skip
    (wheel,) = dist.glob("curlora-*.whl")
    # Every YAML the package reads at run time is in the wheel, at any depth (Hydra's
    # launcher configs sit three levels down: configs/hydra/launcher/*.yaml).
    package_dir = REPO_ROOT / "src" / "curlora"
    shipped = {p.relative_to(package_dir.parent).as_posix() for p in package_dir.rglob("*.yaml")}
    assert shipped, package_dir
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(shipped - in_wheel) == []
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    # The dependencies (torch, lightning, ...) come from this environment's site-packages,
    # added as a plain path: its editable-install hook for the checkout is not loaded, so
    # the only curlora the fresh venv can import is the one from the wheel.
    (purelib,) = (venv / "lib").glob("python*/site-packages")
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=600)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import curlora; print(curlora.__file__)"],
        cwd=outside, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(purelib)), where.stdout
    done = subprocess.run(
        [str(venv / "bin" / "curlora-train"), "debug=fast", "trainer.max_epochs=1"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = (outside / "logs" / "runs").glob("*/results.json")
    assert json.loads(results.read_text())["status"] == "completed"
