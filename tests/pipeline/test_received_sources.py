"""A received run directory names no place on the receiver's disk, no Hub kernel, and no
YAML that expands while it is read.

Each test tampers the saved config of a real ``debug=tiny`` run as a sender could: a data
or model source pointed at the receiver's files (``resume=`` would train and evaluate on
them and write per-example results the receiver may send back), an attention
implementation naming a Hub repository (its code would be downloaded and imported), an
aliased YAML file that takes minutes to read. The resume, and the README's reload recipe
(``load_received_config``), must refuse it in one line naming the key or the file.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import curlora.models.hub as hub
from curlora.checks.config import ConfigError, validate_config
from curlora.models.backbone import load_backbone
from curlora.run.guard import RUN_CONFIG_FILE, load_received_config, save_run_config
from curlora.run.received import MAX_CONFIG_BYTES, PATHS_VARIABLE
from curlora.train import run
from tests.conftest import REPO_ROOT, TINY, compose_run_config, run_cli
from tests.pipeline import faults
from tests.pipeline.tiny_runs import CRASH_IN_REVIEWS, copy_run, crashed_tiny_run

PRIVATE = "sentence1,sentence2,label\nthe receiver's secret,indeed the same,1\n"
KERNEL = "kernels-community/flash-attn2"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``debug=tiny`` run that crashed in its second task: a resume would train and
    evaluate on whatever its saved data sources name."""
    return crashed_tiny_run(tmp_path_factory.mktemp("crashed"))


def _received(source: Path, tmp_path: Path) -> Path:
    return copy_run(source, tmp_path / "received")


def _saved(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / RUN_CONFIG_FILE).read_text())


def _write(run_dir: Path, saved: dict) -> None:
    (run_dir / RUN_CONFIG_FILE).write_text(yaml.safe_dump(saved))


def _private_file(tmp_path: Path) -> Path:
    private = tmp_path / "mine" / "private.csv"
    private.parent.mkdir(exist_ok=True)
    private.write_text(PRIVATE)
    return private


def _hub_task(**fields: object) -> dict:
    return {"_target_": "curlora.data.sources.hub.HubTask", "path": None, "name": None,
            "revision": None, "data_files": None, **fields}  # fmt: skip


def _hub_model(name_or_path: str, **fields: object) -> dict:
    return {"_target_": "curlora.models.hub.HubModel", "name_or_path": name_or_path,
            "revision": None, "dtype": "auto", "trust_remote_code": False, "hf_cache_dir": None,
            "attn_implementation": None, "gradient_checkpointing": False, "quantization": None,
            **fields}  # fmt: skip


# ------------------------------------------------------------ no place on the receiver's disk
def _pairs_csv(path: Path, cue: str) -> Path:
    """A ``pairs``-shaped CSV (sentence1, sentence2, label) of 40 rows."""
    rows = ["sentence1,sentence2,label"]
    rows += [f"the film was {cue},{'indeed' if i % 2 else 'however'} the same,{i % 2}"
             for i in range(40)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def crashed_on_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ``debug=tiny`` run whose first task reads a CSV at a path of the sender's choosing
    (``data_files``), crashed in its second task: ``(run dir, that path)``. Its saved config
    and fingerprints are consistent: nothing was edited after the run."""
    root = tmp_path_factory.mktemp("crashed_on_files")
    chosen = _pairs_csv(root / "x" / "private.csv", "great")
    cfg = compose_run_config(root, [*TINY, CRASH_IN_REVIEWS % (root / "crashed")])
    source = _hub_task(data_files={"train": str(chosen), "validation": str(chosen)})
    cfg.data.task_specs.pairs.source = source
    with pytest.raises(faults.SimulatedCrash):
        run(cfg)
    return Path(cfg.paths.output_dir), chosen


def test_a_received_data_file_of_the_receivers_is_refused_before_the_run(
    crashed_on_files, tmp_path
) -> None:
    """The audit's case: a received run whose source names a path that, on the receiver's
    machine, is the receiver's private file. ``resume=`` stops in one line (exit 2) naming
    the key and the file; the run directory is left as it was: the private file is never
    trained on, evaluated on, or recorded in ``outcomes.json``."""
    source, chosen = crashed_on_files
    run_dir = _received(source, tmp_path)
    _pairs_csv(chosen, "terrible")  # the receiver's own file at that path
    before = _run_files(run_dir)
    done = run_cli([f"resume={run_dir}"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for word in ("data.task_specs.pairs.source.data_files.train", str(chosen), PATHS_VARIABLE):
        assert word in errors[0], errors[0]
    assert _run_files(run_dir) == before, "the resume trained, evaluated or recorded"


def _run_files(run_dir: Path) -> dict[str, bytes]:
    """What the run recorded: every file but Hydra's own (its log and ``.hydra/``, which
    it writes into a resumed directory as it starts)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.suffix != ".log" and ".hydra" not in p.parts
    }


def _tamper(saved: dict, where: str, value: object, tmp_path: Path) -> str:
    """Set the source field ``where`` names; returns the dotted key the refusal must name."""
    task = saved["data"]["task_specs"]["pairs"]
    if where == "task.data_files":
        task["source"] = _hub_task(data_files={"train": [str(value)], "validation": str(value)})
        return "data.task_specs.pairs.source.data_files.train[0]"
    if where == "task.path":
        task["source"] = _hub_task(path=value)
        return "data.task_specs.pairs.source.path"
    if where == "corpus.data_files":
        saved["data"]["corpus"] = {**_hub_task(data_files={"test": str(value)}), "split": "test"}
        saved["data"]["corpus"]["_target_"] = "curlora.data.sources.hub.HubCorpus"
        return "data.corpus.data_files.test"
    if where == "corpus.path":
        saved["data"]["corpus"] = {**_hub_task(path=value), "split": "test"}
        saved["data"]["corpus"]["_target_"] = "curlora.data.sources.hub.HubCorpus"
        return "data.corpus.path"
    if where == "model.gguf_path":
        saved["model"] = {**yaml.safe_load((CONFIGS / "model" / "smollm2_135m.yaml").read_text()),
                          "gguf_path": str(value)}  # fmt: skip
        return "model.gguf_path"
    assert where == "model.name_or_path"
    saved["model"] = _hub_model(str(value))
    return "model.name_or_path"


CONFIGS = REPO_ROOT / "src" / "curlora" / "configs"
LOCAL = [
    ("task.data_files", "file"),
    ("task.path", "folder"),  # datasets loads a local folder's data files
    ("task.path", "mine"),  # a relative folder that exists where the command runs
    ("task.path", "csv"),  # datasets' csv builder reads the data files of the cwd
    ("task.path", "../elsewhere/data"),
    ("corpus.data_files", "file"),
    ("corpus.path", "~/corpus"),
    ("model.gguf_path", "file"),
    ("model.name_or_path", "folder"),  # transformers loads a local folder
    ("model.name_or_path", "./model"),
    ("model.name_or_path", "mine"),
]


@pytest.mark.parametrize(("where", "value"), LOCAL, ids=[f"{w}={v}" for w, v in LOCAL])
def test_every_local_place_a_source_can_name_is_refused(
    crashed, tmp_path, monkeypatch, where: str, value: str
) -> None:
    """Each key of the data and model sources that can name a file or folder is refused
    in one line naming the key, its value and the file, unless the receiver opts in."""
    monkeypatch.chdir(tmp_path)  # the working directory holds the receiver's folder mine/
    private = _private_file(tmp_path)
    value = {"file": str(private), "folder": str(private.parent)}.get(value, value)
    run_dir = _received(crashed, tmp_path)
    saved = _saved(run_dir)
    key = _tamper(saved, where, value, tmp_path)
    _write(run_dir, saved)
    with pytest.raises(ConfigError) as refused:
        load_received_config(run_dir)
    message = str(refused.value)
    assert f"{key}=" in message and str(value) in message, message
    assert str(run_dir / RUN_CONFIG_FILE) in message and PATHS_VARIABLE in message, message
    assert "\n" not in message
    monkeypatch.setenv(PATHS_VARIABLE, "1")  # the receiver's own files, chosen by them
    assert OmegaConf.select(load_received_config(run_dir), key.split("[")[0]) is not None


def _shipped_saved_configs(tmp_path: Path) -> list[Path]:
    """The run directories the check must accept: every saved config in docs/reproduction
    (real runs of the offline data and the GGUF model) and, saved as a run saves them, the
    paper's and the Standard CL benchmark's Hub data, Mistral-7B and a Hub model by id."""
    found = sorted(p.parent for p in (REPO_ROOT / "docs" / "reproduction").rglob(RUN_CONFIG_FILE))
    for index, overrides in enumerate(
        [
            ["data=paper"],
            ["data=standard_cl"],
            ["model=mistral_7b", "data=paper"],
            ["model=hub", "model.name_or_path=HuggingFaceTB/SmolLM2-135M"],
        ]
    ):
        run_dir = tmp_path / f"composed{index}"
        run_dir.mkdir()
        save_run_config(compose_run_config(tmp_path, overrides), run_dir)
        found.append(run_dir)
    return found


def test_shipped_configs_load_and_their_local_twins_do_not(tmp_path, monkeypatch) -> None:
    """Hub ids (``nyu-mll/glue``, ``mistralai/Mistral-7B-v0.3``) and the offline sources
    pass; the same config with its model pointed at a file of the receiver's is refused."""
    monkeypatch.chdir(tmp_path)
    private = _private_file(tmp_path)
    shipped = _shipped_saved_configs(tmp_path)
    assert len(shipped) > 50
    for run_dir in shipped:
        load_received_config(run_dir)
        twin = tmp_path / "twin"
        shutil.rmtree(twin, ignore_errors=True)
        twin.mkdir()
        saved = _saved(run_dir)
        field = "gguf_path" if "gguf_path" in saved["model"] else "name_or_path"
        saved["model"][field] = str(private)
        _write(twin, saved)
        with pytest.raises(ConfigError, match=rf"model\.{field}="):
            load_received_config(twin)


def test_the_reload_recipe_never_takes_the_senders_download_cache(crashed, tmp_path) -> None:
    """``model.hf_cache_dir`` says where the receiver's Hub downloads go: the config the
    recipe reads holds null (Hugging Face's own cache), never the sender's folder."""
    run_dir = _received(crashed, tmp_path)
    saved = _saved(run_dir)
    saved["model"] = _hub_model("HuggingFaceTB/SmolLM2-135M", hf_cache_dir=str(tmp_path / "x"))
    _write(run_dir, saved)
    assert load_received_config(run_dir).model.hf_cache_dir is None


# ------------------------------------------------------------ no Hub kernel
def test_a_hub_kernel_as_attention_is_refused_before_the_model_is_read(
    crashed, tmp_path, monkeypatch
) -> None:
    """``model.attn_implementation`` naming a Hub repository: transformers would download
    and import its code. Refused naming the key and the valid values, by the config check
    (every run, resumed or not), and by the model source itself (the reload recipe), before
    any of the model's files is asked for."""

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model's files were asked for")

    for loader in (hub.AutoConfig, hub.AutoTokenizer, hub.AutoModelForCausalLM):
        monkeypatch.setattr(loader, "from_pretrained", reached)
    run_dir = _received(crashed, tmp_path)
    saved = _saved(run_dir)
    saved["model"] = _hub_model("HuggingFaceTB/SmolLM2-135M", attn_implementation=KERNEL)
    _write(run_dir, saved)
    cfg = load_received_config(run_dir)
    with pytest.raises(ValueError, match=r"model\.attn_implementation=.*valid: .*'sdpa'"):
        load_backbone(cfg.model, tmp_path / "cache")
    overrides = ["model=hub", "model.name_or_path=org/name", f"model.attn_implementation={KERNEL}"]
    with pytest.raises(ConfigError, match=r"model\.attn_implementation=.*'eager'") as refused:
        validate_config(compose_run_config(tmp_path, [*TINY, *overrides]))
    assert KERNEL in str(refused.value) and "\n" not in str(refused.value)


def test_flash_attention_only_with_its_own_package(monkeypatch) -> None:
    """Without the flash-attn package usable here, transformers loads a Hub kernel in its
    place (use_kernels=False does not stop that): refused; with it, accepted."""
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    with pytest.raises(ValueError, match=r"model\.attn_implementation='flash_attention_2'"):
        hub.HubModel(name_or_path="org/name", attn_implementation="flash_attention_2")
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)
    hub.HubModel(name_or_path="org/name", attn_implementation="flash_attention_2")
    for name in (None, "eager", "sdpa", "flex_attention"):
        hub.HubModel(name_or_path="org/name", attn_implementation=name)


# ------------------------------------------------------------ YAML that expands as it is read
def _alias_bomb(levels: int) -> str:
    """``levels`` nested lists of ten aliases each: 10^levels leaves once read."""
    lines = ["bomb:", "  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


BAD_YAML = {
    "alias": (lambda text: text + _alias_bomb(5), "alias"),
    "size": (lambda text: text + "#" * MAX_CONFIG_BYTES + "\n", "1 MiB"),
    "depth": (lambda text: text + "deep: " + "[" * 40 + "]" * 40 + "\n", "nests deeper"),
}


@pytest.mark.parametrize("kind", list(BAD_YAML))
def test_a_run_config_no_run_could_have_saved_is_refused_before_it_is_parsed(
    crashed, tmp_path, kind: str
) -> None:
    """A saved config is a few KiB, five levels deep, with no anchor or alias (a run writes
    it with ``OmegaConf.to_yaml``: every node a fresh object). Anything else is refused in
    one line naming the file, before YAML builds it: an alias bomb at once, not minutes."""
    run_dir = _received(crashed, tmp_path)
    path = run_dir / RUN_CONFIG_FILE
    text = path.read_text()
    events = list(yaml.parse(text))
    assert not [e for e in events if getattr(e, "anchor", None) is not None]
    tamper, words = BAD_YAML[kind]
    path.write_text(tamper(text))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=words) as refused:
        load_received_config(run_dir)
    assert time.monotonic() - started < 5
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_the_cli_refuses_an_alias_bomb_in_one_line(crashed, tmp_path) -> None:
    """The audit's file (eight levels of ten aliases: 10^8 nodes) ends ``resume=`` at once."""
    run_dir = _received(crashed, tmp_path)
    path = run_dir / RUN_CONFIG_FILE
    path.write_text(path.read_text() + _alias_bomb(8))
    try:
        done = run_cli([f"resume={run_dir}"], cwd=tmp_path, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("resume= hung reading an aliased run_config.yaml")
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0] and "alias" in errors[0], errors
