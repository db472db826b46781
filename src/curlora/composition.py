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

It then makes every job's own checks on the config Hydra will give the job
(``curlora.job_checks``): an interpolation that does not resolve, a bad value (the run's
``validate_config``), a ``resume=`` that the run would refuse (compared with the run's saved
config). A sweep with one bad job among good ones is refused whole, before its first job
trains; a refused ``resume=`` writes nothing into the run it names.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from curlora.job_checks import (
    Job,
    checked_job,
    does_not_resolve,
    quiet_console,
    refused_before_loading,
    resume_problem,
    settings_problem,
)

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
# The sweeper whose jobs are the command line's values (what job_overrides composes), and
# the launchers that run a sweep's jobs on this machine, where a job's checks (an
# accelerator present, a writable place) judge what the job itself will meet. Other
# sweepers (Optuna's) choose their values as they go, and other launchers (SLURM's) run
# the jobs elsewhere: those jobs check their values themselves when they start.
_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_LAUNCHERS_HERE = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
)

Composed = tuple[list[str], DictConfig]
"""One job: its overrides and its config as Hydra composes it (Hydra's own node included)."""


class CommandLineError(ValueError):
    """A command line Hydra would take but misread, or fail on with a traceback (one line)."""


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
            choices.append([override.input_line])  # as typed: ~rank stays ~rank
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


def compose_jobs(overrides: Sequence[str], multirun: bool) -> list[Composed]:
    """Compose every job of ``job_overrides`` (with Hydra's own config), the first first.
    Raises Hydra's composition errors (``hydra.errors.HydraException``), and
    :class:`CommandLineError` for a config group given a value Hydra misreads
    (:func:`group_choice_problem`)."""
    from hydra import compose, initialize_config_module

    composed = []
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for job in job_overrides(overrides, multirun):
            problem = group_choice_problem(job, multirun)
            if problem is not None:
                raise CommandLineError(problem)
            composed.append((job, compose(CONFIG_NAME, overrides=job, return_hydra_config=True)))
    return composed


def group_choice_problem(job: Sequence[str], multirun: bool) -> str | None:
    """One line refusing a config group given null (Hydra stops with a ValueError
    traceback), a list (``method=[lora,curlora]``: Hydra merges the configs into one, which
    no group of this project means; Hydra's own groups aside) or, in a single run, a sweep;
    None when every group gets one config. Runs inside Hydra's initialized context, which
    lists a group's configs."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    for override in OverridesParser.create().parse_overrides(list(job)):
        group = override.key_or_group
        options = [] if override.is_delete() else loader.get_group_options(group)
        if not options:
            continue  # not a config group: a value, which the run's own checks judge
        problem = _choice_problem(override.input_line, group, override.value(), multirun)
        if problem is not None:
            return f"{problem}; valid options in {group}: {', '.join(options)}"
    return None


def _choice_problem(line: str, group: str, value: object, multirun: bool) -> str | None:
    """Why ``line`` (an override of the config group ``group``) cannot choose its config."""
    from hydra.core.override_parser.types import Sweep

    if isinstance(value, Sweep):  # Hydra's own message would advise a list here
        if multirun:
            return None
        return f"{line} is a sweep: add -m for one run per config (a run takes one of {group})"
    if value is None:
        return (
            f"{line} is not valid: a config group takes the name of one of its configs "
            f"(leave {group} out for its default)"
        )
    if not isinstance(value, list) or group.startswith("hydra"):
        return None
    listed = f"{group}={','.join(str(v) for v in value)}"
    how = f"use a comma list: {listed}" if multirun else f"use -m and a comma list: -m {listed}"
    return (
        f"{line} is not valid: a run takes one config of {group}, and a list merges them "
        f"into one" + (f"; to run each, {how}" if value else "")
    )


def missing_comma_hint(error: BaseException, overrides: Sequence[str], multirun: bool) -> str:
    """``; did you mean method=curlora,lora?`` when Hydra could not parse a bare word that
    follows a ``key=value`` (a comma list typed with spaces: ``method=curlora lora``);
    otherwise an empty string."""
    for i, given in enumerate(overrides):
        words = list(itertools.takewhile(_bare_word, overrides[i + 1 :]))
        if "=" in given and words and f"override '{words[0]}'" in str(error):
            listed = ",".join([given, *words])
            return f"; did you mean {listed}?" if multirun else f"; did you mean -m {listed}?"
    return ""


def _bare_word(arg: str) -> bool:
    """An argument that is no override at all: no ``=``, not a deletion ``~key``."""
    return "=" not in arg and not arg.startswith(("~", "+", "-"))


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
        except Exception as error:  # Hydra would stop with a traceback resolving it
            return f"invalid configuration: {does_not_resolve(error, [])}"
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
    """None when Hydra can compose, place and start every job of ``argv`` and no job would
    refuse its config at its start (:func:`jobs_problem`); else one line saying why."""
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
    overrides, multirun = list(args.overrides), bool(args.multirun)
    try:
        jobs = compose_jobs(overrides, multirun)
        grid = sweeper_params(jobs[0][1])
        if grid:  # a sweep the config itself makes (hparams_search=ewc_lambda): its jobs too
            jobs = compose_jobs([*grid, *overrides], multirun=True)
    except HydraException as error:
        unknown = unknown_key(error, overrides, multirun)
        hint = missing_comma_hint(error, overrides, multirun)
        return f"invalid configuration: {unknown or describe_composition_error(error) + hint}"
    except ValueError as error:  # CommandLineError, or another ValueError of Hydra's
        return f"invalid configuration: {' '.join(str(error).split())}"
    return job_name_problem(jobs[0][1]) or jobs_problem(jobs, multirun)


def sweeper_params(cfg: DictConfig) -> list[str]:
    """The overrides that Hydra's basic sweeper adds from the config to the command line's
    (``hydra.sweeper.params``, e.g. the grid of ``hparams_search=ewc_lambda``), as it reads
    them; none for another sweeper (Optuna's chooses its values as it goes)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    if OmegaConf.select(cfg, "hydra.sweeper._target_") != _BASIC_SWEEPER or not params:
        return []
    return [f"{key}={value}" for key, value in params.items()]


def jobs_problem(jobs: Sequence[Composed], multirun: bool) -> str | None:
    """One line naming the first job that Hydra cannot start or that would refuse itself at
    its start, or None. Each job's config as the job gets it (``curlora.job_checks``) is
    checked in two passes: first what costs no import, for every job (what does not
    resolve, the first job's output place, the top-level settings), so that ``rank=8,abc``
    is refused at once; then each job's whole check, which builds a Trainer. A sweep's
    values are checked where its jobs are the command line's and run here."""
    from hydra.types import RunMode

    first = jobs[0][1]
    # A sweep that a config starts (hparams_search: hydra.mode=MULTIRUN) places its jobs
    # as -m does.
    multirun = multirun or OmegaConf.select(first, "hydra.mode") == RunMode.MULTIRUN
    values = not multirun or (
        OmegaConf.select(first, "hydra.sweeper._target_") == _BASIC_SWEEPER
        and OmegaConf.select(first, "hydra.launcher._target_") in _LAUNCHERS_HERE
    )
    for whole in (False, True) if values else (False,):
        for num, (overrides, cfg) in enumerate(jobs):
            with checked_job(cfg, overrides, num if multirun else None) as job:
                if whole:
                    line = _refusal(_value_problem(job, overrides, multirun), overrides, multirun)
                else:
                    line = _quick_problem(job, overrides, num, multirun, values)
            if line is not None:
                return line
    return None


def _quick_problem(
    job: Job, overrides: Sequence[str], num: int, multirun: bool, values: bool
) -> str | None:
    """The checks of a job that import nothing, as a whole line: what does not resolve,
    the output place Hydra creates first (the first job's), the top-level settings."""
    if job.unresolved is not None:
        return _refusal(job.unresolved, overrides, multirun)
    placed = output_place_problem(job.config, multirun) if num == 0 else None
    if placed is not None:
        return placed  # a line of its own, naming its key
    return _refusal(settings_problem(job.task) if values else None, overrides, multirun)


def _value_problem(job: Job, overrides: Sequence[str], multirun: bool) -> str | None:
    """The refusal the job would make of its values at its start, or None: under
    ``resume=``, the run's plan compared with its saved config; otherwise the run's checks.
    In a sweep the checks leave out what depends on the model's architecture (a rank above
    its layer sizes): such a job fails alone, recorded, and the sweep goes on past it."""
    if job.task.get("resume") is not None:
        return resume_problem(job.task, overrides)
    with quiet_console():
        return refused_before_loading(job.task, check_model=not multirun, unreachable_raises=True)


def _refusal(problem: str | None, overrides: Sequence[str], multirun: bool) -> str | None:
    """``problem`` as the command's line; a sweep's names the job (its overrides)."""
    if problem is None:
        return None
    where = f" (the sweep's job {' '.join(overrides)})" if multirun else ""
    return f"invalid configuration: {problem}{where}"


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
        cfg = compose_jobs(rest, multirun)[0][1]
    except (HydraException, CommandLineError):
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
