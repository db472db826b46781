"""REPORT.md of a reproduction grid (``curlora-reproduce``), from its stored runs alone.

Reads every completed job below the grid's results directory (``results.json`` and the
per-example ``outcomes.json``; ``curlora.grid.results``) and the rules in ``grid.yaml``
(fixed before the runs), and writes, in order:

- **a summary**: the verdicts in one paragraph (the answer before the method);
- what ran: stored runs against the planned count, their wall time;
- the rules: learning-rate selection, margins, how intervals are formed;
- the learning rates chosen on validation, with every candidate's score and the seeds
  each was compared on;
- **the headline question** (``curlora.reporting.claims.headline``): CURLoRA against each
  LoRA, paired by seed and test example;
- **Table 1** at the chosen rates (the table rank), with the majority-class rate, the
  ``head_only`` control, BWT over all and over learned tasks;
- the **claims** C1, C2, C3a, C3b, C4 and C5 (ours);
- the **parameter-matched controls** (TinyLoRA, VeRA) beside CURLoRA;
- the **rank sweep** (table and ``ranks.png``);
- the **stability–plasticity frontier** over every method's learning rates;
- the **sampling ablation**.

The same stored files always give the same bytes: the bootstrap's seed is fixed and
nothing reads the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from curlora.reporting.claims import (
    bwt_task_names,
    claims,
    headline,
    inert_methods,
    learned_tasks,
    question_rows,
)
from curlora.reporting.frontier import (
    EQUAL_PLASTICITY,
    equal_plasticity,
    frontier_points,
    frontier_table,
    plot_frontier,
)
from curlora.reporting.grid import (
    GridRun,
    Rules,
    Setting,
    choose_learning_rates,
    load_grid,
    lr_grid_runs,
    table_settings,
)
from curlora.reporting.left_out import left_out_lines
from curlora.reporting.regular_file import read_text
from curlora.reporting.row_counts import leave_out_odd_row_counts
from curlora.reporting.tables import (
    TABLE_ONE_CAPTION,
    comparison_table,
    final_average_accuracy,
    markdown,
    plot_ranks,
    sampling_settings,
    selection_table,
    table_one,
)
from curlora.reporting.untrusted import shown
from curlora.reporting.words_report import is_words_grid, read_grid, write_words_report
from curlora.run.atomic import atomic_write_text

__all__ = ["choose_grid_rates", "choose_learning_rates", "load_grid", "write_report"]
GRID_FILE = "grid.yaml"
SUMMARY_FILE = "summary.md"


def choose_grid_rates(runs: Sequence[GridRun], grid_file: Path) -> dict[str, float]:
    """Each method's learning rate by the grid's selection rule (``choose_learning_rates``:
    best mean final validation accuracy on the seeds every candidate finished, ties to the
    smaller rate), on the grid's own seeds and ranks (``lr_grid_runs``)."""
    return choose_learning_rates(lr_grid_runs(runs, Rules.read(grid_file)))


def planned_runs(grid_file: Path) -> int | None:
    """How many runs the grid in ``grid.yaml`` (written by curlora-reproduce) asks for."""
    try:
        grid = yaml.safe_load(read_text(grid_file))  # a link or a FIFO: OSError, below
        seeds, ranks = len(grid["seeds"]), len(grid["ranks"])
        controls = len(grid.get("controls") or [])
        adapters = sum(len(lrs) for lrs in grid["lrs"].values()) * ranks
        sampling = len(grid.get("sampling") or []) * ranks if "curlora" in grid["lrs"] else 0
        extra = [s for s in grid.get("headline_seeds") or [] if s not in grid["seeds"]]
        headline = len(extra) * (controls + len(grid.get("headline_methods") or []))
        sweep = grid.get("rank_sweep") or {}
        rank_runs = len(sweep.get("ranks") or []) * len(sweep.get("methods") or []) * seeds
    # ValueError: not UTF-8, or an int past Python's digit limit; RecursionError: nesting
    except (
        OSError,
        ValueError,
        RecursionError,
        yaml.YAMLError,
        KeyError,
        TypeError,
        AttributeError,
    ):
        return None
    return seeds * (controls + adapters + sampling) + headline + rank_runs


def _rules_text(rules: Rules) -> list[str]:
    selection = "; ".join(f"{k}: {v}" for k, v in rules.selection) or "as configured"
    return [
        "## Rules (fixed in the grid config before the runs)",
        "",
        f"- Learning rate: {selection}. Never the test split.",
        f'- Margins: accuracy {rules.accuracy_margin:g} ("keeps", "as well as", '
        f'"above head_only", "learned"); perplexity ratio {rules.ppl_margin:g} ("keeps '
        'perplexity").',
        "- A task is *learned* in a comparison when every method compared beats the "
        "majority-class rate and `head_only` on it by the accuracy margin (mean over seeds "
        "of the accuracy right after its training); forgetting (BWT) is counted on that one "
        "task set for every method compared, and BWT over all tasks is shown beside it. "
        "The set is read from the same test accuracies BWT subtracts (the runs record "
        "validation accuracy only after the last task), so a task that clears its bar by "
        "chance high is counted and its BWT leans towards more forgetting; BWT over all "
        "tasks has no such selection.",
        "- Intervals (95 %): mean ± t(0.975, n − 1) · √(s²/n + v_test), s² the variance "
        "over seeds and v_test the variance of the mean under a bootstrap of the test "
        f"examples ({rules.replicates} replicates, seed {rules.bootstrap_seed}; the same "
        "rows for every seed and both methods of a paired difference). Every seed is scored "
        "on the same test subset, so the spread over seeds alone leaves the test-sample "
        "noise out. The two variances overlap in part and t keeps n − 1 degrees of "
        "freedom even where v_test dominates, so the intervals are conservative (wider, not "
        "narrower). Perplexity ratios: geometric means, intervals on the log scale over "
        "seeds, conditional on the evaluation corpus: every run is scored on the same "
        "tokens, and the runs store no per-token likelihoods, so the corpus's own sampling "
        "noise is not in these intervals (paired differences, same corpus on both sides, "
        "are the least affected).",
        "- A verdict holds when its interval lies entirely on the claim's side of the "
        "margin and does not hold when it lies entirely on the other side; otherwise, and "
        'for a difference whose interval contains zero, there is "no evidence of a '
        'difference", followed by what the interval still allows ("equivalent" when it '
        "lies within ±margin). A difference that excludes zero says whether it also clears "
        "the margin. With 3 seeds or fewer (t with ≤ 2 degrees of freedom) each seed's own "
        "value is printed beside the verdict.",
        "- BWT over the learned tasks covers the learned tasks before the last one (the "
        "last task is never revisited, so it has no BWT); each table names them.",
        "",
    ]


def summary_block(
    grid_name: str,
    runs: Sequence[GridRun],
    planned: int | None,
    rows: Sequence[tuple[str, str, str]],
    settings: Sequence[Setting],
    rules: Rules,
    learned: Sequence[int],
    unused: Sequence[str] = (),
) -> str:
    """The README's summary of the grid (``summary.md`` beside the report): the headline
    answers and the chosen settings' numbers, generated so the README cannot drift.
    ``unused``: what the report could not use (``left_out_lines``), said here too."""
    from curlora.reporting.claims import bwt_summary, ppl_summary

    status = f"{len(runs)} of {planned} planned runs" if planned else f"{len(runs)} runs"
    if planned and len(runs) < planned:
        status += ", **not finished: provisional**"
    tasks = settings[0].tasks if settings else []
    lines = [f"`{grid_name}` ({status}):", "", *unused]
    note = unserved_data_note(runs[0]) if runs else None
    if note:
        lines += [note, ""]
    if rows:
        lines += [markdown(["question", "answer", "numbers"], rows), ""]
    if settings:
        majority = " / ".join(f"{m:.3f}" for m in settings[0].majority)
        table = []
        for s in settings:
            diag = " / ".join(
                str(s.summary(lambda r, j=j: r.diagonal()[j])) for j in range(len(tasks))
            )
            ratio = ppl_summary(s)
            table.append(
                [
                    s.label,
                    _seeds_of(s),
                    diag,
                    str(final_average_accuracy(s)),
                    str(bwt_summary(rules, s, learned)),
                    f"{ratio} {ratio.interval()}",
                ]
            )
        lines += [
            markdown(
                [
                    "setting",
                    "seeds",
                    f"accuracy right after each task ({' / '.join(tasks)}; majority {majority})",
                    "final average accuracy",
                    f"BWT (learned tasks: {bwt_task_names(tasks, learned)})",
                    "perplexity ratio (geometric mean, 95 % CI)",
                ],
                table,
            ),
            "",
        ]
    return "\n".join(lines)


def unserved_data_note(run: GridRun) -> str | None:
    """One line naming the tasks of ``run`` whose archive the registry no longer serves: a
    rerun from scratch needs the archive dropped in by hand (the stored results need none)."""
    from curlora.data.sources.offline import NO_LONGER_SERVED, unserved_archive

    specs = run.results["config"].get("data", {}).get("task_specs", {})
    gone: dict[str, list[str]] = {}
    for task in run.tasks:
        source = (specs.get(task) or {}).get("source") or {}
        asset = unserved_archive(str(source.get("dataset", "")))
        if asset is not None and str(source.get("_target_", "")).endswith(".OfflineTask"):
            gone.setdefault(asset.filename, []).append(task)
    if not gone:
        return None
    named = "; ".join(
        f"{', '.join(tasks)}: `{name}` (not served since {NO_LONGER_SERVED[name]})"
        for name, tasks in gone.items()
    )
    return (
        f"Data no longer served by the package registry — {named}. This report rebuilds "
        "from the committed results; rerunning the grid from scratch needs the archive "
        "dropped into `<cache>/downloads/` by hand."
    )


def _seeds_of(setting: Setting) -> str:
    return ",".join(str(seed) for seed in sorted(setting.runs))


def write_report(root: Path, report_dir: Path, grid_name: str, command: str) -> Path:
    """Write ``REPORT.md``, ``summary.md`` (the README's block) and the figures in
    ``report_dir`` from the runs stored below ``root`` (the grid's results directory);
    returns the report's path."""
    store, out = Path(root), Path(report_dir)
    grid = read_grid(store / GRID_FILE)
    if is_words_grid(grid):  # the words protocol: its own report
        return write_words_report(store, out, grid_name, command, grid)
    runs = load_grid(store)
    leave_out_odd_row_counts(runs)  # before any run is paired by test example
    rules = Rules.read(store / GRID_FILE)  # read once: a damaged file is named once
    lrs = choose_learning_rates(lr_grid_runs(runs, rules))  # choose_grid_rates' rule
    table_rank = rules.ranks[0] if rules.ranks else 16
    headline_settings = table_settings(runs, lrs, rules.headline_methods, [table_rank])
    unused = left_out_lines(rules, runs, store)
    parts = [f"# Reproduction: {grid_name}", "", f"Command: `{command}`", "", *unused]
    if not headline_settings:
        parts.append("No completed run yet.")
        atomic_write_text(out / SUMMARY_FILE, f"`{grid_name}`: no completed run yet.\n")
        return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")
    head = next((s for s in headline_settings if s.method == "head_only"), None)
    wall = sum(r.elapsed_s() for r in runs)
    planned = planned_runs(store / GRID_FILE)
    of_planned = f" of the {planned} the grid plans" if planned else ""
    unfinished = planned is not None and len(runs) < planned
    rows, learned, notes = headline(rules, headline_settings, head)
    tasks = headline_settings[0].tasks
    claim_rows = claims(rules, headline_settings, head, learned, notes)
    parts += [
        "## Summary",
        "",
        summary_paragraph(rows, claim_rows, headline_settings, tasks, learned, len(runs), planned),
        "",
        f"{len(runs)} completed runs{of_planned}; their wall time adds up to "
        f"{wall / 3600:.1f} h ({wall / 60 / max(len(runs), 1):.1f} min per run). "
        f"Where they ran (`trainer.accelerator`; a CPU and a GPU run the same experiment "
        f"up to float rounding): {_devices(runs)}."
        + (
            " **The grid is not finished**: every number below is over the seeds that have "
            "run (named in each table) and will change as the grid completes."
            if unfinished
            else ""
        ),
        "",
        *([note, ""] if (note := unserved_data_note(runs[0])) else []),
        *_rules_text(rules),
        "## Learning rates chosen on validation",
        "",
        selection_table(lr_grid_runs(runs, rules), lrs),
        "",
    ]
    parts += [
        "## The question: does CURLoRA forget less than LoRA?",
        "",
        "Paired by seed (and by test example). BWT difference > 0: CURLoRA forgets less; "
        "log perplexity-ratio difference < 0: CURLoRA's language model drifts less. "
        f"Learned tasks: {_learned_text(tasks, learned, notes)}.",
        "",
        markdown(["question", "answer", "numbers"], rows) if rows else "No pair to compare yet.",
        "",
        "## Table 1",
        "",
        TABLE_ONE_CAPTION,
        "",
        table_one(headline_settings, rules, learned),
        "",
        "## The paper's claims",
        "",
        markdown(["claim", "verdict", "numbers"], claim_rows),
        "",
    ]
    atomic_write_text(
        out / SUMMARY_FILE,
        summary_block(grid_name, runs, planned, rows, headline_settings, rules, learned, unused),
    )
    inert = inert_methods(headline_settings, rules)
    if inert:
        parts += [f"Warning (inert adapter): {', '.join(inert)} beat head_only on no task.", ""]
    parts += _matched(runs, lrs, rules, table_rank, headline_settings, learned)
    parts += _ranks(runs, lrs, rules, head, out)
    parts += _frontier(lr_grid_runs(runs, rules), learned, table_rank, out)
    parts += _sampling(runs, lrs, rules, table_rank, learned)
    return atomic_write_text(out / "REPORT.md", "\n".join(parts) + "\n")


def _learned_text(tasks: Sequence[str], learned: Sequence[int], notes: Sequence[str]) -> str:
    """The learned tasks by name, the ones their BWT covers, then why each other task is
    not counted."""
    names = ", ".join(tasks[j] for j in learned) or "none"
    covered = bwt_task_names(tasks, learned)
    text = f"{names} (BWT on them covers {covered}: the last task has no BWT)"
    return text + (f"; not counted: {'; '.join(notes)}" if notes else "")


def summary_paragraph(
    rows: Sequence[tuple[str, str, str]],
    claim_rows: Sequence[tuple[str, str, str]],
    settings: Sequence[Setting],
    tasks: Sequence[str],
    learned: Sequence[int],
    runs: int,
    planned: int | None,
) -> str:
    """The verdicts in one paragraph: each headline answer in full (it carries what the
    interval allows), the final average accuracy of each setting, and each claim's verdict
    (the claims table has what its interval allows)."""
    of = f"{runs} of {planned} planned runs" if planned else f"{runs} runs"
    provisional = "; the grid is not finished: provisional" if planned and runs < planned else ""
    sentences = [f"From {of}, at the learning rates chosen on validation{provisional}."]
    covered = bwt_task_names(tasks, learned)
    for question, answer, _numbers in rows:
        # "... (r16, BWT difference CURLoRA − lora)": the rank and the other method.
        where = question.rsplit("(", 1)[-1].rstrip(")")
        rank, other = where.split(",", 1)[0], where.rsplit("− ", 1)[-1]
        what = f"forgetting of {covered}" if "BWT" in where else "language-model drift"
        sentences.append(f"CURLoRA against {other} ({rank}), {what}: {answer}.")
    finals = ", ".join(f"{s.label} {final_average_accuracy(s)}" for s in settings)
    sentences.append(f"Final average accuracy over the {len(tasks)} tasks: {finals}.")
    others = {s.method for s in settings if s.method != "curlora"}
    verdicts = "; ".join(
        f"{claim.split(' ', 1)[0]}{_claim_subject(claim, others)} {verdict.split(':', 1)[0]}"
        for claim, verdict, _ in claim_rows
    )
    if verdicts:
        sentences.append(f"The paper's claims: {verdicts}.")
    return " ".join(sentences)


def _claim_subject(claim: str, others: set[str]) -> str:
    """ " (lora)" for a claim about another method (C2, C3b, C4), else ""."""
    for word in claim.split():
        name = word.rstrip(",.").removesuffix("'s")
        if name in others:
            return f" ({name})"
    return ""


def _devices(runs: Sequence[GridRun]) -> str:
    counts: dict[str, int] = {}
    for run in runs:
        # a config value printed in the report: shown() keeps it from driving a terminal
        accelerator = shown(run.results["config"].get("trainer", {}).get("accelerator", "?"))
        counts[accelerator] = counts.get(accelerator, 0) + 1
    names = {"gpu": "on a GPU", "auto": "auto (a CPU on a machine without a GPU)"}
    return ", ".join(f"{n} {names.get(k, k)}" for k, n in sorted(counts.items()))


def _matched(
    runs: Sequence[GridRun],
    lrs: dict[str, float],
    rules: Rules,
    rank: int,
    headline_settings: Sequence[Setting],
    learned: Sequence[int],
) -> list[str]:
    matched = table_settings(runs, lrs, rules.matched_controls, [rank])
    matched = [s for s in matched if s.method in rules.matched_controls]
    if not matched:
        return []
    cur = next((s for s in headline_settings if s.method == "curlora"), None)
    shown = [s for s in (cur, *matched) if s is not None]
    return [
        "## Parameter-matched controls (at their own chosen rates)",
        "",
        "Trainable parameters close to CURLoRA's (the `trainable` column), other "
        "directions: TinyLoRA trains exactly CURLoRA's k² per matrix between W's principal "
        "singular vectors; VeRA trains scaling vectors over frozen random projections. The "
        "last two columns are paired with CURLoRA by seed and test example, on the seeds "
        "both ran (so they need not equal the difference of the rows): BWT on the "
        "learned tasks minus CURLoRA's (> 0: forgets less than CURLoRA) and the log "
        "perplexity ratio minus CURLoRA's (< 0: drifts less than CURLoRA).",
        "",
        comparison_table(shown, lambda _: cur, rules, learned),
        "",
    ]


def _ranks(
    runs: Sequence[GridRun],
    lrs: dict[str, float],
    rules: Rules,
    head: Setting | None,
    out: Path,
) -> list[str]:
    """The mission's ``method=curlora,lora rank=8,16,24`` sweep at the chosen rates: a
    table and a plot against rank, and the headline question asked at every rank on one
    learned-task set (every setting of the sweep clears its bars on it)."""
    settings = [s for s in table_settings(runs, lrs, ("curlora", "lora")) if s.rank is not None]
    ranks = sorted({s.rank for s in settings if s.rank is not None})
    if len(ranks) < 2:
        return []
    settings.sort(key=lambda s: (s.method, s.rank or 0))
    learned, notes = learned_tasks(settings, head, rules.accuracy_margin)
    plot_ranks(settings, rules, learned, out / "ranks.png")

    def curlora_at(s: Setting) -> Setting | None:
        return next((c for c in settings if c.method == "curlora" and c.rank == s.rank), None)

    tasks = settings[0].tasks
    rows = question_rows(rules, settings, learned)
    return [
        f"## Rank sweep (ranks {', '.join(map(str, ranks))}, at the chosen rates)",
        "",
        "Each method at the learning rate chosen at the grid's rank. Learned tasks across "
        f"the sweep (every setting below clears the bars): "
        f"{_learned_text(tasks, learned, notes)}. The paired columns compare LoRA with "
        "CURLoRA at the same rank.",
        "",
        "![ranks](ranks.png)",
        "",
        comparison_table(settings, curlora_at, rules, learned),
        "",
        "The question at every rank (paired by seed and test example):",
        "",
        markdown(["question", "answer", "numbers"], rows) if rows else "No pair to compare yet.",
        "",
    ]


def _sampling(
    runs: Sequence[GridRun],
    lrs: dict[str, float],
    rules: Rules,
    rank: int,
    learned: Sequence[int],
) -> list[str]:
    """CURLoRA's column/row sampling modes at its chosen rate, each paired with the
    paper's inverted-probability sampling on the seeds both ran."""
    settings = sampling_settings(runs, lrs, rank)
    if not settings:
        return []
    inverted = settings[0]
    return [
        f"## CURLoRA sampling ablation (r{rank}, lr {lrs['curlora']:g})",
        "",
        "How C and R are drawn: `inverted` (the paper's, probability ∝ 1 / the column's or "
        "row's share of ‖W‖²), `inverted_smoothed` (the reference code's 1 / (share + "
        "0.001), near uniform on wide matrices), `leverage` (∝ the share, the classical "
        "CUR choice) and `uniform`. "
        "Learned tasks as in the headline question. The paired columns compare each mode "
        "with `inverted` on the seeds both ran.",
        "",
        comparison_table(settings, lambda _: inverted, rules, learned, against="inverted's"),
        "",
    ]


def _frontier(runs: Sequence[GridRun], learned: Sequence[int], rank: int, out: Path) -> list[str]:
    points = frontier_points(runs, learned, rank)
    if not points:
        return []
    covered = bwt_task_names(runs[0].tasks, learned)
    plot_frontier(points, out / "frontier.png")
    return [
        "## Stability–plasticity frontier",
        "",
        "Every method over its learning-rate grid (rank "
        f"{rank}), on the grid's seeds at every rate (the extra headline seeds left out, so "
        "every point of a method rests on the same seeds). Plasticity: mean gain over "
        "head_only right after each task, paired by seed.",
        "",
        "![frontier](frontier.png)",
        "",
        frontier_table(points, covered),
        "",
        f"{EQUAL_PLASTICITY}:",
        "",
        *equal_plasticity(points),
        "",
    ]
