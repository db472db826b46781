"""A run directory from someone else can neither run code nor change a number.

Each test places what an attacker or a failing disk would (a pickle payload, an edited
config, a flipped byte) and checks the run refuses it in one line or falls back to a good
file with a warning naming it; payloads touch a marker file, and the marker must not exist.
"""

from __future__ import annotations

import io
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from curlora.checks.config import ConfigError
from curlora.checks.targets import TRUST_VARIABLE, UntrustedTarget, check_targets
from curlora.cli import EXIT_CONFIG, run_job
from curlora.run.checksum import sidecar, write_checksum
from curlora.run.state import AtomicCheckpointIO, step_checkpoint, task_checkpoint
from curlora.train import run
from tests.conftest import FAST, compose_run_config
from tests.pipeline import faults

SHORT = ["trainer.max_epochs=1", "logger=none"]
CRASH = (
    "+callbacks.fault={_target_: tests.pipeline.faults.CrashOnce, task: %s, step: %d, marker: '%s'}"
)


class Payload:
    """Unpickling this creates ``marker`` (``builtins.open(marker, "w")``): code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.marker, "w")


def _pickle_checkpoint(path: Path, marker: Path) -> None:
    """A torch file whose unpickling runs the payload, with a matching checksum beside it
    (so only ``weights_only=True`` stands between it and the code)."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "payload": Payload(marker)}, buffer, pickle_protocol=2)
    path.write_bytes(buffer.getvalue())
    write_checksum(path)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fast run crashed in its second task after a step checkpoint (every resume file)."""
    root = tmp_path_factory.mktemp("crashed")
    cfg = compose_run_config(root, [*FAST, *SHORT, CRASH % ("reviews", 22, root / "crashed")])
    with pytest.raises(faults.SimulatedCrash):
        run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert step_checkpoint(run_dir, 1).exists() and task_checkpoint(run_dir, 0).exists()
    return run_dir


def _copy(crashed: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(crashed, run_dir)
    return run_dir


def _resume(tmp_path: Path, run_dir: Path) -> dict[str, Any]:
    return run(compose_run_config(tmp_path, [*FAST, *SHORT, f"resume={run_dir}"]))


def _warned(caplog: pytest.LogCaptureFixture, *words: str) -> bool:
    return any(all(w in r.getMessage() for w in words) for r in caplog.records)


# ---------------------------------------------------------------- no pickle runs
def test_a_pickle_placed_as_the_step_checkpoint_never_runs(
    crashed: Path, tmp_path: Path, caplog
) -> None:
    run_dir = _copy(crashed, tmp_path)
    marker = tmp_path / "payload-ran"
    _pickle_checkpoint(step_checkpoint(run_dir, 1), marker)
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert not marker.exists(), "the pickle in last.ckpt ran code on resume="
    assert _warned(caplog, "last.ckpt", "damaged", "restarting task 2")


def test_a_pickle_placed_as_a_task_checkpoint_never_runs(
    crashed: Path, tmp_path: Path, caplog
) -> None:
    run_dir = _copy(crashed, tmp_path)
    marker = tmp_path / "payload-ran"
    _pickle_checkpoint(task_checkpoint(run_dir, 0), marker)
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert not marker.exists()
    assert _warned(caplog, "task_0.ckpt", "damaged")


def test_lightning_reads_checkpoints_as_data_whatever_it_asks(tmp_path: Path) -> None:
    """Lightning's own read (``fit(ckpt_path=...)``) goes through AtomicCheckpointIO, which
    loads tensors and plain values only, even when asked for ``weights_only=False``."""
    path, marker = tmp_path / "last.ckpt", tmp_path / "payload-ran"
    _pickle_checkpoint(path, marker)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


def test_no_source_file_unpickles_with_weights_only_false() -> None:
    """The invariant the tests above sample, over the whole package."""
    src = Path(__file__).resolve().parents[2] / "src"
    offenders = [p for p in src.rglob("*.py") if "weights_only=False" in p.read_text("utf-8")]
    assert offenders == []


# ---------------------------------------------------------------- checksums
def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_step_checkpoint_falls_back_with_a_warning(
    crashed: Path, tmp_path: Path, caplog
) -> None:
    """Without a checksum, a flipped byte inside a tensor loads and changes the numbers
    (the issue measured perplexity 71.649112 → 71.649115 with exit 0)."""
    run_dir = _copy(crashed, tmp_path)
    _flip_middle_byte(step_checkpoint(run_dir, 1))
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert _warned(caplog, "last.ckpt", "checksum", "restarting task 2")


def test_a_flipped_byte_in_a_task_checkpoint_falls_back_with_a_warning(
    crashed: Path, tmp_path: Path, caplog
) -> None:
    run_dir = _copy(crashed, tmp_path)
    _flip_middle_byte(task_checkpoint(run_dir, 0))
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert _warned(caplog, "task_0.ckpt", "checksum")


def test_a_checkpoint_without_its_checksum_is_not_trusted(
    crashed: Path, tmp_path: Path, caplog
) -> None:
    run_dir = _copy(crashed, tmp_path)
    sidecar(step_checkpoint(run_dir, 1)).unlink()
    assert _resume(tmp_path, run_dir)["status"] == "completed"
    assert _warned(caplog, "last.ckpt", "no checksum")


# ---------------------------------------------------------------- run_config.yaml is data
def _edit_config(run_dir: Path, edit) -> None:
    path = run_dir / "run_config.yaml"
    tree = yaml.safe_load(path.read_text())
    edit(tree)
    path.write_text(yaml.safe_dump(tree))


PAYLOADS = {
    "nested-in-optimizer": lambda tree, marker: tree["optimizer"].__setitem__(
        "weight_decay", {"_target_": "builtins.open", "_args_": [str(marker), "w"]}
    ),
    "torch-load": lambda tree, marker: tree["callbacks"].__setitem__(
        "evil", {"_target_": "torch.load", "f": str(marker), "weights_only": False}
    ),
    "in-a-list": lambda tree, marker: tree.__setitem__(
        "tasks", [*tree["tasks"], {"_target_": "pathlib.Path.touch", "self": str(marker)}]
    ),
}


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_resume_refuses_a_target_outside_the_allowlist_before_anything_runs(
    crashed: Path, tmp_path: Path, payload: str, monkeypatch
) -> None:
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)  # no opt-in: only the shipped targets
    run_dir = _copy(crashed, tmp_path)
    # The crashed run names a test callback (CrashOnce): drop it, so only the payload is new.
    _edit_config(run_dir, lambda tree: tree["callbacks"].pop("fault"))
    marker = tmp_path / "payload-ran"
    _edit_config(run_dir, lambda tree: PAYLOADS[payload](tree, marker))
    cfg = compose_run_config(tmp_path, [*FAST, *SHORT, f"resume={run_dir}"])
    outcome = run_job(cfg, [f"resume={run_dir}"], multirun=False)
    assert outcome.exit_code == EXIT_CONFIG
    assert "run_config.yaml" in outcome.status and "_target_" in outcome.status
    assert "\n" not in outcome.status
    assert not marker.exists()


def test_the_refusal_names_the_nested_key_path(tmp_path: Path) -> None:
    tree = {"optimizer": {"lr": 0.1, "weight_decay": {"_target_": "os.system", "_args_": ["x"]}}}
    with pytest.raises(UntrustedTarget, match=r"optimizer\.weight_decay\._target_='os\.system'"):
        check_targets(tree, "run_config.yaml")


def test_an_interpolation_in_a_saved_config_is_refused(crashed: Path, tmp_path: Path) -> None:
    """``oc.decode`` would build a new ``_target_`` while the config is read, after the
    check; a saved config is resolved, so any interpolation means an edited file."""
    run_dir = _copy(crashed, tmp_path)
    decode = "${oc.decode:'{_target_: builtins.open, _args_: [x, w]}'}"
    _edit_config(run_dir, lambda tree: tree["optimizer"].__setitem__("weight_decay", decode))
    with pytest.raises(ConfigError, match=r"optimizer\.weight_decay.*interpolation"):
        _resume(tmp_path, run_dir)


def test_the_allowlist_holds_what_the_shipped_configs_build(monkeypatch) -> None:
    """Every shipped config resumes: its targets are allowed without any opt-in; the opt-in
    is a prefix of one's own code, never a file's say."""
    from curlora.checks.targets import is_allowed, shipped_targets

    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    found = shipped_targets()
    # Source: grep -rh "_target_" configs/ (lightning's Trainer and CSVLogger, AdamW, ...)
    assert {"lightning.pytorch.Trainer", "torch.optim.AdamW"} <= found
    assert "curlora.adapters.curlora.CURLoRAMethod" in found
    assert not is_allowed("curlora.run.atomic.atomic_write_text")  # project code, not a class
    assert not is_allowed("tests.pipeline.faults.CrashOnce")
    monkeypatch.setenv(TRUST_VARIABLE, "tests.")
    assert is_allowed("tests.pipeline.faults.CrashOnce")


# ---------------------------------------------------------------- a shared evaluation cache
def _poison(entry: dict[str, Any], rechecksum: bool) -> None:
    """accuracy 0.45 -> 0.95, as in a shared cache someone edited; with ``rechecksum`` the
    editor also recomputed the entry's sha256 (only the outcomes then give it away)."""
    import hashlib
    import json

    score = next(iter(entry["record"]["initial"]["scores"].values()))
    score["accuracy"] = 0.95
    if rechecksum:
        text = json.dumps(entry["record"], sort_keys=True).encode("utf-8")
        entry["sha256"] = hashlib.sha256(text).hexdigest()


@pytest.mark.parametrize("rechecksum", [False, True], ids=["edited", "edited-and-rehashed"])
def test_a_poisoned_cache_entry_is_named_and_recomputed(
    tmp_path: Path, rechecksum: bool, caplog
) -> None:
    import json

    def config(name: str):
        cfg = compose_run_config(tmp_path, [*FAST, *SHORT, "tasks=[pairs]"])
        cfg.paths.output_dir = str(tmp_path / name)
        return cfg

    first = run(config("first"))
    (entry_path,) = (tmp_path / "cache" / "evaluations").glob("*.json")
    entry = json.loads(entry_path.read_text())
    _poison(entry, rechecksum)
    entry_path.write_text(json.dumps(entry))
    second = run(config("second"))
    assert second["initial_accuracy"] == first["initial_accuracy"]  # not 0.95
    assert _warned(caplog, entry_path.name, "recomputing")
    # The entry is rewritten with what was measured: the next run reuses good numbers.
    stored = json.loads(entry_path.read_text())["record"]["initial"]["scores"]
    assert next(iter(stored.values()))["accuracy"] != 0.95


def test_a_poisoned_exact_match_is_named_and_recomputed(tmp_path: Path, caplog) -> None:
    """head=words: the zero-shot exact match edited and the entry rehashed; its per-example
    exact matches give it away."""
    import hashlib
    import json

    def config(name: str):
        cfg = compose_run_config(tmp_path, [*FAST, *SHORT, "tasks=[pairs]", "head=words"])
        cfg.paths.output_dir = str(tmp_path / name)
        return cfg

    first = run(config("first"))
    (entry_path,) = (tmp_path / "cache" / "evaluations").glob("*.json")
    entry = json.loads(entry_path.read_text())
    next(iter(entry["record"]["initial"]["scores"].values()))["exact_match"] = 0.95
    text = json.dumps(entry["record"], sort_keys=True).encode("utf-8")
    entry["sha256"] = hashlib.sha256(text).hexdigest()
    entry_path.write_text(json.dumps(entry))
    second = run(config("second"))
    assert second["head"]["initial_exact_match"] == first["head"]["initial_exact_match"]
    assert _warned(caplog, entry_path.name, "exact match 0.95 disagrees")


# ---------------------------------------------------------------- reports read data only
def test_curlora_report_builds_nothing_a_received_run_names(tmp_path: Path, capsys) -> None:
    """A run directory whose results.json and run_config.yaml name a payload: the report
    reads plain values (the payload's strategy target is shown as text, never called)."""
    from curlora.reporting import console
    from curlora.reporting.results import build_results, write_results
    from tests.reporting.conftest import results_kwargs

    marker = tmp_path / "payload-ran"
    payload = {"_target_": "builtins.open", "_args_": [str(marker), "w"]}
    config = {"method": {"name": "curlora"}, "strategy": payload, "optimizer": payload}
    run_dir = tmp_path / "run"
    write_results(run_dir / "results.json", build_results(**results_kwargs(config=config)))
    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(config))
    assert console.main([str(run_dir)]) == 0
    assert console.main([str(tmp_path)]) == 0  # as a sweep of one run
    assert "curlora" in capsys.readouterr().out
    assert not marker.exists()
