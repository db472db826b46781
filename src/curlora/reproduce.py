"""``curlora-reproduce``: the reproduction grid, one command, resumable, ending in REPORT.md.

    curlora-reproduce [reproduce=table1_cpu] [key=value ...]     (also: make reproduce)
    curlora-reproduce --report-only [reproduce=...]             rebuild the report, run nothing
    curlora-reproduce --status [reproduce=...]                  how far the grid has got

The grid is a config of the ``reproduce`` group (``configs/reproduce/<name>.yaml``): seeds,
ranks, learning rates per method, controls, the sampling modes to ablate, the extra seeds
of the headline comparison, the rank sweep, and the selection rule and margins, all fixed
before anything runs. It runs as Hydra multiruns (``python -m curlora.cli -m ...``), one
per part, each in a fixed sweep directory under the grid's working ``dir``:

1. ``lr_grid/s<seed>/<method>``: seed by seed, the controls (``head_only``), then each
   method × its learning rates × ranks (the parameter-matched controls among them).
2. The learning rate of each method is chosen on the validation carves of the training
   data by the grid's ``selection`` rule (``curlora.reporting.grid``). Never the test split.
3. At the chosen rates: ``headline/s<seed>/...`` (the extra seeds of the headline
   comparison, controls included), ``ranks/<method>`` (the rank sweep) and ``sampling``
   (CURLoRA's sampling modes).
4. ``REPORT.md`` and figures (``curlora.reporting.reproduction``), built from the grid's
   committed results directory alone (``curlora.grid.results``).

The question comes first, so a grid stopped early holds the most useful runs: the rate
grid of the question's methods (the first two headline methods) and the controls over
every seed, then their headline seeds; the same for the other headline methods; then the
references, the rest of the rate grid, the rank sweep and the sampling ablation.

Every completed job's small files are copied into ``results_dir`` (committed) after each
part, and copied back into the working directory before the grid runs, so a fresh clone
skips every committed job. Running the same command again is safe: a job whose directory
holds the same experiment is skipped when it completed and resumed from its checkpoints
otherwise (``curlora.run.guard``). Extra ``key=value`` arguments are added to every job
(they are part of the experiments, so change them only with a new grid name).

``workers: N`` runs N parts at once, each process limited to its share of the cores
(``OMP_NUM_THREADS``); ``benchmarks/grid_throughput.py`` measures which is faster. The
order above is the order parts start in, not a barrier (``curlora.grid.schedule``): a
free worker takes the first part that can start, so while the last job of a method's rate
grid runs, the other workers go on with later parts; a part that needs a chosen rate (the
headline seeds, the references, the rank sweep) starts only once every job of the rate
grid it is chosen from has ended.

Before anything is written, the grid's keys (``curlora.grid.settings``) and each way its
jobs compose (``curlora.grid.prechecks``: the run checks every job makes at its start) are
checked: bad input is one line at exit 2. A SIGTERM or SIGINT to the grid process is passed
on to its running jobs, which save their checkpoints; the grid then exits 143 or 130
(``curlora.grid.children``).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from curlora.grid import children
from curlora.grid.children import GridInterrupted
from curlora.grid.parts import (
    Part,
    first_methods,
    grid_parts,
    headline_groups,
    headline_parts,
    job_count,
    part_method,
    reference_parts,
    split_jobs,
    sweep_parts,
    under,
)
from curlora.grid.schedule import Step, run_steps

log = logging.getLogger("curlora")
REPORT_ONLY = "--report-only"
STATUS = "--status"
MACHINE_KEYS = ("dir", "results_dir", "report_dir", "readme", "workers")


def compose(overrides: Sequence[str]) -> DictConfig:
    """The run config with the grid (``cfg.reproduce``) as ``curlora.cli`` composes it."""
    from curlora.grid.guard import compose_grid

    cfg = compose_grid(overrides)  # GridRefused: one line, exit 2
    if not cfg.get("reproduce"):
        grids = Path(__file__).with_name("configs") / "reproduce"
        names = sorted(p.stem for p in grids.glob("*.yaml"))
        raise SystemExit(f"error: no grid chosen: reproduce=<name>, one of {names}")
    return cfg


def multirun(sweep_dir: Path, overrides: Sequence[str], threads: int | None = None) -> int:
    """One Hydra multirun in ``sweep_dir``; returns its exit code (1: some job failed). It
    runs in its own process group: a signal to the grid is passed on to it
    (``curlora.grid.children``)."""
    command = [
        sys.executable,
        "-m",
        "curlora.cli",
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log.info("running: %s", " ".join(command[3:]))
    return children.CHILDREN.run(command, env)


def run_part(sweep_dir: Path, overrides: Sequence[str], threads: int | None = None) -> bool:
    """One part of the grid; True when every job completed. An interrupted part stops the
    grid (a scheduler's SIGTERM, Ctrl+C): the next parts would only be killed too."""
    code = multirun(sweep_dir, overrides, threads)
    if code >= 128:
        raise GridInterrupted(code)
    return code == 0


def run_parts(grid: DictConfig, root: Path, results_dir: Path, parts: Sequence[Part]) -> int:
    """Run ``parts`` (``grid.workers`` at a time), storing finished jobs after each;
    returns how many parts had jobs that did not complete. A part whose every job is
    stored already is not started at all."""
    return run_grid_steps(grid, root, results_dir, [Step("parts", lambda: parts)])


def run_grid_steps(grid: DictConfig, root: Path, results_dir: Path, steps: Sequence[Step]) -> int:
    """Run the grid's ``steps`` (``curlora.grid.schedule``: ``grid.workers`` parts at a
    time, each step's parts built once the steps it needs have finished), storing finished
    jobs after each part; returns how many parts had jobs that did not complete. A part
    whose every job is stored already is not started at all."""
    from curlora.grid.results import RUNS, finished_jobs, publish

    workers = int(grid.get("workers", 1))  # an integer >= 1: curlora.grid.settings
    threads = None if workers == 1 else max(1, (os.cpu_count() or workers) // workers)

    def one(part: Part) -> bool:
        subdir, overrides = part
        if children.CHILDREN.signum is not None:  # a signal arrived: start no further part
            raise GridInterrupted(128 + children.CHILDREN.signum)
        stored = len(finished_jobs(results_dir / RUNS / subdir))
        if stored >= job_count(overrides):
            log.info("%s: all %d job(s) stored; nothing to run", subdir, stored)
            return True
        try:
            return run_part(root / subdir, overrides, threads)
        finally:
            publish(root, results_dir)

    if grid.get("split_jobs"):
        steps = split_steps(steps)
    # An interrupt (or a part stopped by a signal) starts no further part; the parts
    # already running were passed the signal (curlora.grid.children) and end once their
    # jobs saved their checkpoints.
    return run_steps(steps, workers, one)


def split_steps(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with each part built as single-job parts (``split_jobs``)."""
    return [Step(s.name, lambda s=s: split_jobs(s.build()), s.needs) for s in steps]


def chosen_rates(results_dir: Path, prefix: str) -> dict[str, float]:
    """Each method's rate chosen on validation (the grid's ``selection`` rule) from the
    stored runs of the protocol the grid runs under (``prefix``: "" or ``fallback``)."""
    from curlora.grid.results import RUNS
    from curlora.reporting.protocol_check import protocol_runs
    from curlora.reporting.reproduction import choose_grid_rates, load_grid

    runs = protocol_runs(load_grid(results_dir), results_dir / RUNS, fallback=bool(prefix))
    return choose_grid_rates(runs, results_dir / "grid.yaml")


def grid_steps(
    grid: DictConfig,
    lr_parts: Sequence[Part],
    prefix: str,
    extra: Sequence[str],
    rates: Callable[[], dict[str, float]],
) -> list[Step]:
    """The grid's steps in the order their parts start (``curlora.grid.schedule``): each
    headline group's rate grid, then its headline seeds at the rates chosen from it (the
    question's group first); the references, once their method's rate is chosen; the rest
    of the rate grid (the matched controls); the rank sweep and the sampling ablation, once
    every rate is chosen. ``rates()`` reads the chosen rates from the stored runs; a
    method's rate depends on its own runs only, so a step needs only its methods' grid."""
    steps: list[Step] = []
    lr_names: list[str] = []  # the headline groups' rate-grid steps
    grid_of: dict[str, str] = {}  # method -> the rate-grid step that holds it
    for index, group in enumerate(headline_groups(grid)):
        lr_name = f"lr_grid {index}"
        lr_names.append(lr_name)
        steps.append(Step(lr_name, lambda g=group: [p for p in lr_parts if part_method(p) in g]))
        steps.append(
            Step(
                f"headline {index}",
                lambda g=group: [
                    p
                    for p in under(prefix, headline_parts(grid, rates(), extra))
                    if part_method(p) in g
                ],
                (lr_name,),
            )
        )
        grid_of.update(dict.fromkeys(group, lr_name))  # the groups are disjoint
    refs = grid.get("references")
    # Without the references' method among the headline ones, reference_parts plans none.
    ref_needs = (grid_of[refs.method],) if refs and refs.method in grid_of else tuple(lr_names)
    first = first_methods(grid)
    steps += [
        Step("references", lambda: under(prefix, reference_parts(grid, rates(), extra)), ref_needs),
        Step("rest", lambda: [p for p in lr_parts if part_method(p) not in first]),
    ]

    def sweep() -> list[Part]:
        lrs = rates()
        log.info("learning rates chosen on validation: %s", lrs)
        return under(prefix, sweep_parts(grid, lrs, extra))

    steps.append(Step("sweep", sweep, (*lr_names, "rest")))
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    from curlora.grid.guard import GridRefused, release_grid_locks
    from curlora.run.atomic import OutputError

    signum: int | None = None
    try:
        with children.passing_signals_on() as running:
            try:
                code = _main(argv)
            finally:
                signum = running.signum
            if signum is not None:  # the grid's last part ended as the signal arrived
                raise GridInterrupted(128 + signum)
            return code
    except GridRefused as refused:  # bad arguments, an unknown grid, a grid in use
        print(f"error: {refused}", file=sys.stderr)
        return 2
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:  # SIGINT before its handler was installed
        code = 130
    except GridInterrupted as interrupt:
        # The signal the grid received, whatever its jobs exited with.
        code = 128 + signum if signum is not None else interrupt.exit_code
    finally:
        release_grid_locks()
    print(
        "error: the grid was interrupted; run the same command again to continue "
        "(finished jobs are skipped, interrupted ones resume from their checkpoints)",
        file=sys.stderr,
    )
    return code


def grid_paths(grid: DictConfig) -> tuple[Path, Path, Path]:
    """The working directory, the committed results directory and the report's folder."""
    root = Path(str(grid.dir)).absolute()
    results_dir = Path(str(grid.get("results_dir") or root)).absolute()
    report_dir = Path(str(grid.get("report_dir") or results_dir)).absolute()
    return root, results_dir, report_dir


def _report(
    grid: DictConfig, paths: tuple[Path, Path, Path], command: str, start: str
) -> Path | None:
    """REPORT.md from the stored runs, and the README's block of this grid (``readme``);
    None (said in one line, a previous report moved aside) when no job completed, the grid
    never ran (``start``: the command that runs it) or the report failed
    (``curlora.grid.guard.write_grid_report``)."""
    from curlora.grid.guard import write_grid_report
    from curlora.reporting.reproduction import SUMMARY_FILE, write_report

    root, results_dir, report_dir = paths
    report = write_grid_report(
        results_dir,
        lambda: write_report(results_dir, report_dir, grid_name=str(grid.name), command=command),
        report_dir=report_dir,
        work_dir=root,
        start=start,
    )
    readme = grid.get("readme")
    if report is not None and readme:
        _update_readme(Path(str(readme)), str(grid.name), report_dir / SUMMARY_FILE)
    return report


def _update_readme(readme: Path, grid_name: str, summary_file: Path) -> None:
    """Copy ``summary.md`` into the README's block of the grid; what prevents it (a README
    without the block, a file that cannot be read) is one warning naming the file, and the
    README is left as it was (the report stands)."""
    from curlora.reporting.readme_block import ReadmeError, write_block

    try:
        summary = summary_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        log.warning("README not updated: cannot read %s (%s)", summary_file, error)
        return
    # Every summary starts with the grid's name and ends with a line break: anything else
    # is not what write_report wrote, and is not copied.
    if not (summary.startswith(f"`{grid_name}`") and summary.endswith("\n")):
        log.warning("README not updated: %s is not a summary of grid %s", summary_file, grid_name)
        return
    try:
        updated = write_block(readme, grid_name, summary)
    except ReadmeError as error:
        log.warning("README not updated: %s", error)
        return
    if not updated:
        log.warning("README not updated: %s has no generated block of grid %s", readme, grid_name)


def _protocol_check(
    grid: DictConfig, root: Path, results_dir: Path, extra: Sequence[str]
) -> str | None:
    """Run the grid's protocol check (its method's whole rate grid), first under the grid's
    protocol and, when forgetting is not measurable there, once under the fallback one.
    Returns the part prefix the rest of the grid runs under ("" or ``fallback``), or None
    when the check's jobs did not all complete (nothing decided). A decision already in
    ``protocol_check.json`` is kept, never re-made."""
    from curlora.grid.guard import GridRefused
    from curlora.grid.results import RUNS
    from curlora.reporting.protocol_check import (
        FALLBACK,
        DamagedCheck,
        decide,
        protocol_runs,
        read_checks,
        record,
    )
    from curlora.reporting.reproduction import load_grid

    check = grid.protocol_check
    try:
        checks = read_checks(results_dir)
    except DamagedCheck as error:
        raise GridRefused(str(error)) from None
    for protocol, prefix in (("first", ""), ("fallback", FALLBACK)):
        done = [c for c in checks if c.protocol == protocol]
        if done:
            decided = done[0]
        else:
            settings = [*extra, *(check.fallback_overrides if prefix else [])]
            parts = [p for p in grid_parts(grid, settings) if part_method(p) == check.method]
            if run_parts(grid, root, results_dir, under(prefix, parts)):
                log.error(
                    "protocol check (%s protocol): some of %s's jobs did not complete; "
                    "nothing decided: run the same command again",
                    protocol,
                    check.method,
                )
                return None
            runs = protocol_runs(load_grid(results_dir), results_dir / RUNS, bool(prefix))
            decided = decide(runs, results_dir / "grid.yaml", protocol, str(check.method))
            checks.append(decided)
            record(results_dir, checks)
        log.info("%s", decided.line())
        if decided.measurable:
            return prefix
    # Not measurable under either protocol: the grid goes on under the fallback one and the
    # report says that forgetting was not measurable there.
    return FALLBACK


def _check_before_writing(
    grid: DictConfig, extra: Sequence[str], root: Path, results_dir: Path
) -> None:
    """GridRefused, before anything is written, for a place that cannot hold the grid, a
    grid another process runs (its lock probed without writing), or a setting a job would
    refuse at its start (``curlora.grid.prechecks``: a few seconds, torch imported)."""
    from curlora.composition import unusable_directory
    from curlora.grid.guard import GridRefused, in_use
    from curlora.grid.prechecks import check_jobs
    from curlora.grid.status import grid_running

    for place in (root, results_dir):
        if (problem := unusable_directory(place)) is not None:
            key = "reproduce.dir" if place == root else "reproduce.results_dir"
            raise GridRefused(f"{key}={place} cannot hold the grid: {problem}")
        if (holder := grid_running(place)) is not None:  # refused now, not after the checks
            raise in_use(place, holder)
    check_jobs(grid, extra, root)


def _main(argv: Sequence[str] | None) -> int:
    from curlora.grid.guard import (
        check_arguments,
        check_choices,
        check_grid,
        check_shared_settings,
        hold_grid_lock,
    )
    from curlora.grid.results import restore
    from curlora.run.atomic import atomic_write_text

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    )
    args = list(sys.argv[1:] if argv is None else argv)
    flags = (REPORT_ONLY, STATUS)
    if (early := check_arguments(args, __doc__ or "", flags=flags)) is not None:
        return early  # --help, or an argument that is not key=value
    check_choices(args, flags)  # two modes, or two grids: one line, exit 2
    report_only, status = REPORT_ONLY in args, STATUS in args
    args = [a for a in args if a not in flags]
    start = shlex.join(["curlora-reproduce", *args])  # the command that runs this grid
    chosen = [a for a in args if a.startswith("reproduce=")] or ["reproduce=table1_cpu"]
    # reproduce.<key>=... changes the grid (e.g. reproduce.workers=2); the rest every job.
    settings = [a for a in args if a.startswith("reproduce.")]
    extra = [a for a in args if not a.startswith(("reproduce=", "reproduce."))]
    # The grid alone first (its keys checked), then as its jobs compose: the grid's own
    # overrides before the extra ones (a grid's overrides may change a group, its logger).
    shared = check_grid(compose([*chosen, *settings]))
    cfg = compose([*chosen, *settings, *shared, *extra])
    check_shared_settings(cfg)
    grid = cfg.reproduce
    paths = grid_paths(grid)
    root, results_dir, _report_dir = paths
    command = "curlora-reproduce " + " ".join(chosen + extra)
    if status:  # reads the grid's files; runs, locks and writes nothing
        from curlora.grid.status import grid_status

        print(grid_status(grid, extra, root, results_dir), end="")
        return 0
    if report_only:
        report = _report(grid, paths, command, start)
        if report is None:
            return 1
        print(f"report: {report}")
        return 0
    _check_before_writing(grid, extra, root, results_dir)
    root.mkdir(parents=True, exist_ok=True)
    hold_grid_lock(root)  # one invocation per grid; main releases it
    if results_dir != root:
        # Two grids in different working directories may share one results store (the
        # CPU and GPU grids); each would run every job and overwrite the other's files.
        results_dir.mkdir(parents=True, exist_ok=True)
        hold_grid_lock(results_dir)
    # The grid as it was fixed before the runs: the report reads its rule and margins.
    fixed = OmegaConf.to_container(grid, resolve=True)
    for where in MACHINE_KEYS:  # this machine's folders: not part of the grid's rules
        fixed.pop(where, None)
    atomic_write_text(results_dir / "grid.yaml", OmegaConf.to_yaml(OmegaConf.create(fixed)))
    restore(results_dir, root)
    # The question first, so that a grid stopped early holds the most useful runs: the
    # rate grid of the question's methods and the controls (every seed), their headline
    # seeds at their chosen rates, the same for the other headline methods, the
    # references, the rest of the rate grid (the matched controls), then the rank sweep
    # and the sampling ablation. A method's rate depends on its own runs only.
    prefix = ""
    if grid.get("protocol_check"):
        decided = _protocol_check(grid, root, results_dir, extra)
        if decided is None:
            return 1  # the check's own jobs did not all complete: said in the log
        prefix = decided
        if prefix:
            extra = [*extra, *grid.protocol_check.fallback_overrides]

    lr_parts = under(prefix, grid_parts(grid, extra))
    steps = grid_steps(grid, lr_parts, prefix, extra, lambda: chosen_rates(results_dir, prefix))
    failed = run_grid_steps(grid, root, results_dir, steps)
    report = _report(grid, paths, command, start)
    if report is None:  # nothing completed, or the report failed: said in one line
        return 1
    print(f"report: {report}")
    if failed:
        print(
            f"error: {failed} part(s) of the grid had jobs that did not complete", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
