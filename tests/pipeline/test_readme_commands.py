"""Every ``python train.py ...`` command of the README's code blocks works as written.

Each command runs in a fresh working directory (its ``logs/`` go there) with only
``debug=tiny`` appended (tiny model, synthetic data, 32 training records per task); never a
``hydra.sweep.dir`` or any other flag a user would not type, which could hide a crash
(the headline sweep used to die resolving ``hydra.sweep.dir`` before any job started).
A README command missing from ``EXPECTED`` fails the test: the README cannot drift.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import torch

from tests.conftest import REPO_ROOT, TINY, run_cli

README = REPO_ROOT / "README.md"
NO_GPU = not torch.cuda.is_available()

HEADLINE = "python train.py -m method=curlora,lora rank=8,16,24"
# command as written -> (exit code, number of completed runs it leaves under logs/)
EXPECTED: dict[str, tuple[int, int]] = {
    "python train.py": (0, 1),
    "python train.py method=lora": (0, 1),
    "python train.py -m method=curlora,lora rank=8,16,24": (0, 6),
    # The paper's protocol needs a GPU: on a machine without one it is refused up front.
    "python train.py experiment=paper": (2, 0) if NO_GPU else (0, 1),
    "python train.py debug=fast": (0, 1),
    "python train.py hparams_search=ewc_lambda": (0, 5),
    "python train.py -m order=paper,reversed,rotated": (0, 3),
    "python train.py -m strategy=merge strategy.combination=linear,ties,dare_ties": (0, 3),
    "python train.py resume=logs/runs/<run dir>": (0, 0),  # the run above: already complete
    "python train.py trainer=gpu model.gradient_checkpointing=true": (2, 0) if NO_GPU else (0, 1),
    "python train.py experiment=paper trainer.precision=bf16-mixed": (2, 0) if NO_GPU else (0, 1),
    "python train.py trainer=ddp_cpu data.batch_size=8": (0, 1),
    "python train.py -m hydra/launcher=local seed=1311,1312,1313": (0, 3),
    "python train.py head=words": (0, 1),
}


# Commands another test runs exactly as written (with debug=tiny), so they are not run
# twice: command -> (test module, the argument list it runs).
RUN_ELSEWHERE = {
    "python train.py trainer=ddp_cpu data.batch_size=8": (
        "tests.pipeline.test_distributed",
        "TWO_PROCESSES",
    ),
    "python train.py -m hydra/launcher=local seed=1311,1312,1313": (
        "tests.pipeline.test_launchers",
        "SUBMITIT_SWEEP",
    ),
    "python train.py -m order=paper,reversed,rotated": (
        "tests.pipeline.test_task_orders",
        "ORDER_SWEEP",
    ),
    "python train.py -m strategy=merge strategy.combination=linear,ties,dare_ties": (
        "tests.pipeline.test_merge_sweep",
        "MERGE_SWEEP",
    ),
}


def readme_commands() -> list[str]:
    """The ``python train.py`` lines of the README's bash blocks, comments stripped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return list(dict.fromkeys(line for line in lines if line.startswith("python train.py")))


def test_every_readme_command_is_expected() -> None:
    assert set(readme_commands()) == set(EXPECTED)


def _completed(root: Path) -> list[Path]:
    found = sorted(root.rglob("results.json"))
    return [p for p in found if json.loads(p.read_text())["status"] == "completed"]


@pytest.mark.parametrize("command", list(RUN_ELSEWHERE))
def test_commands_run_elsewhere_are_run_as_written(command: str) -> None:
    module, name = RUN_ELSEWHERE[command]
    arguments = getattr(importlib.import_module(module), name)
    assert ["python", "train.py", *arguments] == [*command.split(), *TINY]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CompletedProcess[str]]:
    """``python train.py debug=tiny`` run once, in a fresh working directory: the README's
    first command, and the run that its resume command continues."""
    cwd = tmp_path_factory.mktemp("plain")
    return cwd, run_cli(TINY, cwd=cwd)


@pytest.mark.parametrize(
    "command", [c for c in EXPECTED if "<run dir>" not in c and c not in RUN_ELSEWHERE]
)
def test_readme_command_runs_as_written(
    command: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    code, runs = EXPECTED[command]
    if command == "python train.py":  # shared with the resume command's test
        tmp_path, done = request.getfixturevalue("plain_run")
    else:
        done = run_cli([*command.split()[2:], *TINY], cwd=tmp_path)
    assert done.returncode == code, done.stderr[-3000:]
    assert len(_completed(tmp_path / "logs")) == runs
    assert "Traceback" not in done.stderr
    if command == HEADLINE:  # jobs are named by what varies, in sweep order
        (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
        names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
        assert names == [
            f"{i}_method={m},rank={r}"
            for i, (m, r) in enumerate((m, r) for m in ("curlora", "lora") for r in (8, 16, 24))
        ]
    if code == 2:  # refused before anything loaded: one line, no run directory left
        assert "trainer.accelerator='gpu'" in done.stderr
        assert not list((tmp_path / "logs").rglob("run_config.yaml"))


def test_readme_resume_command_continues_a_run(
    plain_run: tuple[Path, CompletedProcess[str]],
) -> None:
    tmp_path, first = plain_run  # python train.py debug=tiny
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "runs").iterdir()
    command = "python train.py resume=logs/runs/<run dir>".replace("<run dir>", run_dir.name)
    done = run_cli([*command.split()[2:]], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already completed" in done.stderr + done.stdout
    # No second run directory: Hydra's files of the resume went into the run itself.
    assert list((tmp_path / "logs" / "runs").iterdir()) == [run_dir]
