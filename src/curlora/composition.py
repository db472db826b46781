"""The command line checked before Hydra creates anything: composition and output places.

``@hydra.main`` composes the config, creates the run directory and opens ``train.log`` in
it before the run's own checks start, and it reports its composition errors (an unknown
choice ``strategy=sii``, an unknown key ``optimizer.lrr=1``, a malformed override) as a
multi-line message with exit code 1. :func:`check_command_line` composes every job's config
first with Hydra's compose API, so those errors become one line naming the key (exit 2 in
``curlora.cli``; an unknown key with the valid keys of its node, where Hydra would advise
adding it with ``+``), and checks that the directory Hydra is about to create can be
created: a run directory that is a file, or a read-only place, is refused before anything
is written, and so is a ``hydra.job.name`` that cannot name Hydra's log file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

CONFIG_MODULE = "curlora.configs"
CONFIG_NAME = "train"
# Hydra's modes, of which a command line takes at most one: (flag, argparse name).
_MODES = (
    ("--run", "run"),
    ("--multirun", "multirun"),
    ("--cfg", "cfg"),
    ("--info", "info"),
    ("--shell-completion", "shell_completion"),
)
# Hydra options that change what the command does (print help or the config, another
# config source): Hydra handles those itself, so the check steps aside.
_HYDRA_OWN = (
    "help",
    "hydra_help",
    "cfg",
    "info",
    "shell_completion",
    "config_path",
    "config_name",
    "config_dir",
    "experimental_rerun",
)


def describe_composition_error(error: BaseException) -> str:
    """Hydra's composition error as one line: what is wrong, and the valid options."""
    text = str(error).split("\nConfig search path:", 1)[0]
    head, _, options = text.partition("\n\nAvailable options in ")
    if options:
        group, _, listed = options.partition(":")
        text = f"{head}; valid options in {group}: {', '.join(listed.split())}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("See https://")]
    cause = error.__cause__
    if cause is not None:
        lines.append(f"({str(cause).splitlines()[0]})")
    return " ".join(lines)


def job_overrides(overrides: Sequence[str], multirun: bool) -> list[list[str]]:
    """The override lists whose compositions cover every value of a sweep.

    A run: the overrides as given. A multirun: the first job, and for every other value of
    each swept key one job that differs from the first in that key only (enough to meet
    every unknown choice or key; the full product would be the whole sweep). Sweeps that
    are not a list of values (Optuna's ``interval(...)``, ``glob(...)``) keep their default
    here; Hydra checks them when it expands them.
    """
    if not multirun:
        return [list(overrides)]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices: list[list[str]] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices.append([f"{key}={override.get_value_element_as_str()}"])
        elif override.is_discrete_sweep():
            try:
                values = list(override.sweep_string_iterator())
            except HydraException:  # glob(...): only the loaded config can expand it
                continue
            choices.append([f"{key}={value}" for value in values])
    first = [values[0] for values in choices]
    jobs = [first]
    for i, values in enumerate(choices):
        jobs += [[*first[:i], value, *first[i + 1 :]] for value in values[1:]]
    return jobs


def compose_jobs(overrides: Sequence[str], multirun: bool) -> DictConfig:
    """Compose every job of ``job_overrides`` (with Hydra's own config); returns the first.
    Raises Hydra's composition errors (``hydra.errors.HydraException``)."""
    from hydra import compose, initialize_config_module

    composed = []
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for job in job_overrides(overrides, multirun):
            composed.append(compose(CONFIG_NAME, overrides=job, return_hydra_config=True))
    return composed[0]


def _too_long(path: Path) -> str | None:
    """Why ``path`` is a name no file system here takes (``os.stat`` would raise)."""
    limit = 255  # NAME_MAX of ext4, xfs, btrfs, tmpfs, NFS
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            size = len(os.fsencode(part))
            return f"its part '{part[:24]}...' is {size} bytes long (at most {limit})"
    return None


def unusable_directory(path: Path) -> str | None:
    """Why a directory cannot be created or written at ``path``; None when it can."""
    if (problem := _too_long(path)) is not None:
        return problem
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so no directory can be created below it"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    try:  # what Hydra does next, tried and undone (root passes os.access on any mount)
        os.rmdir(tempfile.mkdtemp(prefix=".curlora-probe-", dir=existing))
    except OSError as error:
        return f"no directory can be created in {existing} ({error.strerror or error})"
    return None


def output_place_problem(cfg: DictConfig, multirun: bool) -> str | None:
    """Whether Hydra can create the run (or sweep) directory of ``cfg`` and write in it."""
    resume = cfg.get("resume")
    if resume and not multirun and (Path(str(resume)) / "run_config.yaml").is_file():
        key, place = "resume", str(resume)  # Hydra's files go into the run being resumed
        linked = received_link_problem(Path(place))
        if linked is not None:
            return linked
    else:
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        try:
            place = str(OmegaConf.select(cfg, key))
        except Exception:  # a resolver that needs Hydra's runtime: the run's own checks decide
            return None
    problem = unusable_directory(Path(place).absolute())
    if problem is None:
        return None if key == "resume" else continued_link_problem(Path(place), multirun)
    return (
        f"{key}={place} cannot hold the run: {problem}; choose another place "
        "(paths.log_dir=..., or hydra.run.dir=... / hydra.sweep.dir=...)"
    )


def continued_link_problem(place: Path, multirun: bool) -> str | None:
    """One line refusing a command that continues a run in place (its ``hydra.run.dir``, or
    a job of its ``hydra.sweep.dir``) when that run directory holds a symbolic link
    (``curlora.run.dirs.continued_link_problem``): checked here for the reason below."""
    from curlora.run.dirs import continued_link_problem as problem_of

    problem = problem_of(place.absolute(), multirun)
    return None if problem is None else f"invalid configuration: {problem}"


def received_link_problem(run_dir: Path) -> str | None:
    """One line refusing ``resume=run_dir`` when the directory holds a symbolic link
    (``curlora.run.dirs.resume_link_problem``), checked here because Hydra appends to
    ``train.log`` and writes ``.hydra/`` in the resumed directory as soon as it starts."""
    from curlora.run.dirs import resume_link_problem

    problem = resume_link_problem(run_dir)
    return None if problem is None else f"invalid configuration: {problem}"


def check_command_line(argv: Sequence[str]) -> str | None:
    """None when Hydra can compose and place the run of ``argv``; else one line saying why."""
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main itself uses

    args = get_args_parser().parse_args(list(argv))  # a bad option: argparse's usage, exit 2
    modes = [flag for flag, name in _MODES if getattr(args, name, None)]
    if len(modes) > 1:  # Hydra's own rule, which it reports with a traceback
        return (
            f"invalid command line: {' and '.join(modes)} cannot be combined; use one of "
            f"{', '.join(flag for flag, _ in _MODES)} (a sweep's config: --cfg job without -m)"
        )
    if any(getattr(args, name, None) for name in _HYDRA_OWN):
        return None
    try:
        cfg = compose_jobs(args.overrides, bool(args.multirun))
    except HydraException as error:
        unknown = unknown_key(error, args.overrides, bool(args.multirun))
        return f"invalid configuration: {unknown or describe_composition_error(error)}"
    return job_name_problem(cfg) or output_place_problem(cfg, bool(args.multirun))


_NOT_A_KEY = re.compile(r"Could not override '([^']+)'")


def unknown_key(error: BaseException, overrides: Sequence[str], multirun: bool) -> str | None:
    """``optimizer.lrr=1`` as one line with the valid keys of the node it names, or None
    when ``error`` is not an unknown key. Hydra's own line advises ``+optimizer.lrr=1``,
    which would add the typo to the config rather than fix it."""
    found = _NOT_A_KEY.search(str(error))
    if found is None or "not in struct" not in str(error.__cause__ or ""):
        return None
    key = found.group(1)
    given = next((o for o in overrides if o.split("=", 1)[0].lstrip("~+") == key), key)
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("~+") != key]
    try:  # the config without the typo, to read the node's real keys
        cfg = compose_jobs(rest, multirun)
    except HydraException:
        return None
    parts = key.split(".")
    node, where = cfg, []
    for part in parts[:-1]:  # the deepest node of the key that exists
        child = node.get(part) if isinstance(node, DictConfig) else None
        if not isinstance(child, DictConfig):
            break
        node, where = child, [*where, part]
    if not isinstance(node, DictConfig):
        return None
    missing = parts[len(where)]
    owner = ".".join(where) or "the top level"
    # _target_/_partial_ say what is built, not how: never what a user meant to set.
    valid = ", ".join(sorted(str(k) for k in node if not str(k).startswith("_")))
    return f"{given}: '{missing}' is not a key of {owner}; valid keys: {valid or 'none'}"


def job_name_problem(cfg: DictConfig) -> str | None:
    """``hydra.job.name`` names the log file Hydra opens in the run directory: a path
    separator (or an empty name) there ends in a logging traceback, so refuse it here."""
    name = OmegaConf.select(cfg, "hydra.job.name", default=None)
    if name is None or (str(name) and not any(sep in str(name) for sep in ("/", "\\"))):
        return None
    return (
        f"invalid configuration: hydra.job.name={name} is not valid; valid: a non-empty "
        "name without '/' or '\\' (it names the log file <name>.log in the run directory)"
    )
