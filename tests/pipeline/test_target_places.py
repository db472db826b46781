"""A ``_target_`` read from a file is allowed only where the shipped configs put it.

Hydra's ``instantiate`` builds every nested node of ``data``, ``trainer``, ``optimizer``,
``scheduler`` and each ``callbacks.*``, so a class that is harmless in its own place (the
W&B logger under ``logger``) runs with the sender's arguments when a received
``run_config.yaml`` nests it anywhere else. Each test plants a shipped class (or code under
a trusted prefix) where no shipped config names it and checks the refusal names the key
path and where the class may stand; a payload's file outside the run must not appear.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from curlora.checks.config import ConfigError
from curlora.checks.targets import TRUST_VARIABLE, UntrustedTarget, check_targets
from curlora.train import run
from tests.conftest import CONFIG_DIR, TINY, compose_run_config, run_cli

LOGGER = "curlora.loggers.WandbLogger"
# Every option of the groups that hold a _target_, as a run saves it under either head.
GROUPS = ("method", "strategy", "data", "model", "head", "logger", "callbacks", "trainer")


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The saved config of a real ``debug=tiny`` run, as a sender would edit it."""
    root = tmp_path_factory.mktemp("sent")
    cfg = compose_run_config(root, TINY)
    assert run(cfg)["status"] == "completed"
    return yaml.safe_load((Path(cfg.paths.output_dir) / "run_config.yaml").read_text())


def _saved_trees() -> list[tuple[str, dict[str, Any]]]:
    """``(overrides, tree)`` of each shipped option, resolved as ``run_config.yaml`` is."""
    trees = []
    for group in GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            extra = ["model.name_or_path=some/model"] if path.stem == "hub" else []
            for head in ("linear", "words"):
                overrides = [f"{group}={path.stem}", f"head={head}", *extra]
                if group != "model":
                    overrides.append("model=tiny_llama")
                cfg = compose_run_config(Path("/nonexistent"), overrides)
                with open_dict(cfg):
                    cfg.paths.root_dir = "/nonexistent"
                trees.append((" ".join(overrides), OmegaConf.to_container(cfg, resolve=True)))
    return trees


def _targets(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["_target_"]} if isinstance(node.get("_target_"), str) else set()
        return found.union(*(_targets(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_targets(v) for v in node))
    return set()


def test_every_shipped_config_passes_and_its_targets_pass_nowhere_else(monkeypatch) -> None:
    """Each shipped option, saved as a run saves it, passes the check unchanged; each of its
    classes planted at ``trainer.profiler`` (Lightning builds what stands there) is refused,
    naming the key and where the class may stand."""
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    seen: set[str] = set()
    for overrides, tree in _saved_trees():
        check_targets(tree, overrides)  # raises, naming the key, if a real config fails
        seen |= _targets(tree)
    assert {LOGGER, "curlora.data.sources.hub.HubTask", "lightning.pytorch.Trainer"} <= seen
    for target in sorted(seen):
        tree = {"trainer": {"_target_": "lightning.pytorch.Trainer", "profiler": {}}}
        tree["trainer"]["profiler"]["_target_"] = target
        with pytest.raises(UntrustedTarget) as refused:
            check_targets(tree, "run_config.yaml")
        message = str(refused.value)
        assert f"trainer.profiler._target_='{target}' is refused at trainer.profiler" in message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("where", "place", "command"),
    [
        ("data.task_specs.pairs.source.sizes.zz", "data.task_specs.<task>.source.sizes.zz", True),
        # The same refusal in-process (the command line's path is the first case's).
        ("callbacks.evil", "callbacks.<callback>", False),
        ("trainer.profiler", "trainer.profiler", False),
    ],
)
def test_a_received_logger_nested_in_what_a_resume_builds_writes_nothing(
    sent: dict[str, Any], tmp_path: Path, where: str, place: str, command: bool
) -> None:
    """The W&B logger is a class of the project, allowed under ``logger``; nested in a data
    source, as a callback or as the Trainer's profiler it would be built with the sender's
    ``run_dir`` and write there. The resume of a directory that holds only the edited
    ``run_config.yaml`` (nothing to check a fingerprint against: it trains from the start)
    is refused in one line (exit 2) before that."""
    run_dir = tmp_path / "received"
    run_dir.mkdir()
    victim = tmp_path / "victim_home"
    tree = copy.deepcopy(sent)
    *parents, last = where.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[last] = {"_target_": LOGGER, "run_dir": str(victim)}
    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(tree))
    if command:
        done = run_cli([f"resume={run_dir}"], cwd=tmp_path, WANDB_MODE="disabled")
        assert done.returncode == 2, done.stderr[-3000:]
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        message = errors[0]
    else:
        with pytest.raises(ConfigError) as refused:
            run(compose_run_config(tmp_path, [*TINY, f"resume={run_dir}"]))
        message = str(refused.value)
        assert "\n" not in message
    assert f"{where}._target_='{LOGGER}' is refused at {place}" in message, message
    assert "logger.<logger>" in message, message  # where the class may stand
    assert not victim.exists(), "the sender's run_dir was written"


def test_trusted_code_stands_only_where_a_shipped_config_names_a_target(monkeypatch) -> None:
    """``CURLORA_TRUSTED_TARGETS`` is for a method, strategy, callback ... of one's own: it
    stands where the shipped configs put one, never nested in the arguments of another."""
    monkeypatch.setenv(TRUST_VARIABLE, "mylab.")
    check_targets({"callbacks": {"mine": {"_target_": "mylab.Callback"}}}, "run_config.yaml")
    check_targets({"method": {"_target_": "mylab.Method", "rank": 4}}, "run_config.yaml")
    for tree, path in [
        ({"callbacks": {"mine": {"_target_": "mylab.C", "f": {"_target_": "mylab.D"}}}}, "mine.f"),
        ({"optimizer": {"weight_decay": {"_target_": "mylab.D"}}}, "optimizer.weight_decay"),
        ({"tasks": [{"_target_": "mylab.D"}]}, "tasks[0]"),
    ]:
        with pytest.raises(
            UntrustedTarget, match=re.escape(f"{path}._target_='mylab.D' is refused")
        ):
            check_targets(tree, "run_config.yaml")


def test_a_key_with_dots_is_one_key_not_a_nested_place(monkeypatch) -> None:
    """``{"task_specs.x": {"source": ...}}`` under ``data`` is not ``data.task_specs.x``:
    places compare key by key, never as dotted text."""
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    source = {"_target_": "curlora.data.sources.hub.HubTask", "path": "x"}
    with pytest.raises(
        UntrustedTarget, match=r"HubTask' is refused at data\.task_specs\.x\.source"
    ):
        check_targets({"data": {"task_specs.x": {"source": source}}}, "run_config.yaml")
    check_targets({"data": {"task_specs": {"x": {"source": source}}}}, "run_config.yaml")


def test_an_adapter_config_names_a_method_and_nothing_inside_it(monkeypatch) -> None:
    """``adapter_config.json`` is one method's config: its ``_target_`` stands at
    ``method``, and nothing nested in it is built."""
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    check_targets({"_target_": "curlora.adapters.lora.LoRAMethod", "rank": 4}, "a.json")
    with pytest.raises(UntrustedTarget, match=r"_target_='torch\.optim\.SGD' is refused at method"):
        check_targets({"_target_": "torch.optim.SGD", "params": []}, "a.json")
    nested = {"_target_": "curlora.adapters.lora.LoRAMethod", "rank": {"_target_": LOGGER}}
    with pytest.raises(UntrustedTarget, match=r"rank\._target_=.*refused at method\.rank"):
        check_targets(nested, "a.json")
