"""The words grid's report (``curlora.reporting.words_report``) on fabricated runs: the
protocol check's lines, the zero-shot control in "learned", the em question beside the
acc one, the references and the retention ratio in Table 2, and the forgetting curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from curlora.reporting import words_report
from curlora.reporting.protocol_check import RULE, ProtocolCheck, record
from tests.reporting.test_protocol_check import FORGETS, KEEPS, _run


def _store(tmp_path: Path, fallback_overrides: list[str] | None = None) -> Path:
    """An empty results store with its grid.yaml."""
    store = tmp_path / "store"
    (store / "runs").mkdir(parents=True)
    _grid(store, fallback_overrides or [])
    return store


def _report(store: Path, out: Path) -> str:
    return words_report.write_words_report(
        store, out, "words", "cmd", words_report.read_grid(store / "grid.yaml")
    ).read_text()


def _grid(root: Path, fallback_overrides: list[str]) -> None:
    grid = {
        "name": "words",
        "control": "zero_shot",
        "selection": {"score": "final mean accuracy over the validation carves"},
        "seeds": [1, 2, 3],
        "ranks": [16],
        "lrs": {"curlora": [1e-3], "lora": [1e-3]},
        "headline_methods": ["curlora", "lora"],
        "references": {"method": "lora", "strategies": ["replay"]},
        "margins": {"accuracy": 0.02, "ppl_ratio": 1.05},
        "bootstrap": {"replicates": 200, "seed": 0},
        "protocol_check": {
            "method": "lora",
            "measurable": RULE,
            "fallback_overrides": fallback_overrides,
        },
    }
    (root / "grid.yaml").write_text(yaml.safe_dump(grid))


def _as(run, method: str, strategy: str = "sequential", retention: float = 0.8):
    results = json.loads(json.dumps(run.results))
    results["method"] = method
    bwt = -0.25 if results["accuracy_matrix"] == FORGETS else 0.0  # mean of R[2][j] − R[j][j]
    results["metrics"]["bwt"] = bwt
    results["head"]["exact_match_bwt"] = bwt
    results["config"]["strategy"] = {"_target_": f"curlora.strategies.{strategy}.X"}
    results["retention"] = {
        "tasks": ["k"],
        "n": [100],
        "acc": [[0.8], None, None, [retention]],
        "acc_norm": [[0.8], None, None, [retention]],
    }
    return type(run)(run.path, results)


# A check that found no forgetting: mean 0, its interval ±0.1 over three seeds.
NOT_RESOLVED = {"n": 3, "mean": 0.0, "std": 0.0, "low": -0.1, "high": 0.1, "test_noise": True}


def _first_check_not_measurable(
    store: Path, monkeypatch: pytest.MonkeyPatch, runs: list
) -> ProtocolCheck:
    """The store's stored runs are ``runs``, and its first check decided "not measurable"."""
    monkeypatch.setattr(words_report, "load_grid", lambda root: runs)
    check = ProtocolCheck("first", "lora", 1e-3, [1, 2, 3], NOT_RESOLVED, NOT_RESOLVED, 0.02, False)
    record(store, [check])
    return check


def test_the_words_report_reads_the_check_the_zero_shot_control_and_the_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    runs = []
    for seed in (1, 2, 3):
        runs.append(
            _as(_run(store / "runs" / "lora", seed, 1e-3, FORGETS, 0.8), "lora", retention=0.4)
        )
        runs.append(_as(_run(store / "runs" / "cur", seed, 1e-3, KEEPS, 0.8), "curlora"))
        runs.append(_as(_run(store / "runs" / "rep", seed, 1e-3, KEEPS, 0.8), "lora", "replay"))
    monkeypatch.setattr(words_report, "load_grid", lambda root: runs)
    summary = {"n": 3, "mean": -0.25, "std": 0.0, "low": -0.3, "high": -0.2, "test_noise": True}
    record(store, [ProtocolCheck("first", "lora", 1e-3, [1, 2, 3], summary, summary, 0.02, True)])
    report = _report(store, tmp_path)
    assert "forgetting measurable by the rule" in report
    # The check's evidence, run by run: LoRA's three seeds at its rate.
    check = report[: report.index("## What ran")]
    assert check.count("| 0.001 | ") == 3 and "| -0.250 | -0.250 | ×1.000 |" in check
    assert "The rest of the grid runs under the first protocol." in report
    # The check's table carries its controls: the majority rate and the zero-shot row (em).
    assert "| majority | - | 0.500 / 0.500 / 0.500 | - | - | - |" in report
    assert "| zero-shot | - | 0.500 / 0.500 / 0.500 (em 0.400 / 0.400 / 0.400) |" in report
    # Every task beats the zero-shot 0.5 (and majority 0.5) by the margin: all learned.
    assert "zero-shot accuracy by 0.02; the last task has no BWT): a, b." in report
    # CURLoRA keeps (BWT 0), LoRA forgets (−0.25): both questions say CURLoRA forgets less.
    acc_row = next(line for line in report.splitlines() if "(r16, BWT difference" in line)
    em_row = next(line for line in report.splitlines() if "em-BWT difference" in line)
    assert "CURLoRA forgets less, beyond the 0.02 margin" in acc_row
    assert "CURLoRA forgets less, beyond the 0.02 margin" in em_row
    kept = next(line for line in report.splitlines() if "keep more of what the base" in line)
    assert "CURLoRA keeps more, beyond the 0.02 margin" in kept  # 0.8 against LoRA's 0.4
    table = report[report.index("## Table 2") :]
    assert "| lora + replay (lr 0.001) | 1,2,3 |" in table
    assert "| zero-shot (before training) | - | 0.500 / 0.500 / 0.500 (em 0.400 / 0.400" in table
    lora = next(line for line in table.splitlines() if line.startswith("| lora r16"))
    assert lora.split("|")[-2].strip().startswith("0.500")  # retention 0.4 / 0.8
    assert (tmp_path / words_report.FIGURE).stat().st_size > 0
    assert (tmp_path / "summary.md").read_text().startswith("`words` (9 completed runs of the 9")


def test_a_grid_that_switched_to_the_fallback_says_so_and_lists_its_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check decided "not measurable" and nothing has run under the fallback yet: the
    # summary (the README line) names the switch and the protocol it switched to.
    store = _store(tmp_path, ["trainer.max_epochs=3"])
    runs = [_as(_run(store / "runs" / "lora", s, 1e-3, KEEPS, 0.8), "lora") for s in (1, 2, 3)]
    _first_check_not_measurable(store, monkeypatch, runs)
    report = _report(store, tmp_path)
    assert "acc-BWT 0.000 ± 0.000 (95 % CI [-0.100, +0.100])" in report
    assert "written in the config before any run: `trainer.max_epochs=3`)" in report
    line = (tmp_path / "summary.md").read_text()
    assert "not measurable" in line and "no headline run yet" in line
    assert "the grid goes on under the fallback protocol (`trainer.max_epochs=3`)" in line


def test_runs_under_the_fallback_keep_the_switch_in_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first check decided "not measurable"; one fallback run has completed, the
    # fallback's own check is not decided: the README line still says where the grid is.
    store = _store(tmp_path, ["trainer.max_epochs=3"])
    first = [_as(_run(store / "runs" / "lora", s, 1e-3, KEEPS, 0.8), "lora") for s in (1, 2, 3)]
    later = _as(_run(store / "runs" / "fallback" / "lora", 1, 1e-3, KEEPS, 0.8), "lora")
    _first_check_not_measurable(store, monkeypatch, [*first, later])
    _report(store, tmp_path)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    assert lines[0] == (
        "`words` (1 completed runs of the 9 planned under the fallback protocol (besides the "
        "first protocol's 3), provisional):"
    )
    assert lines[3] == (
        "- the grid goes on under the fallback protocol (`trainer.max_epochs=3`); its protocol "
        "check decides when lora's whole rate grid there has completed"
    )


def test_the_check_says_what_not_measurable_leaves_open_and_what_comes_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both checks decided "not measurable": the report says the headline question is then
    # asked where the checked method's own forgetting was not resolved.
    store = _store(tmp_path, ["trainer.max_epochs=3"])
    first = [_as(_run(store / "runs" / "lora", s, 1e-3, KEEPS, 0.8), "lora") for s in (1, 2, 3)]
    check = _first_check_not_measurable(store, monkeypatch, first)
    summary = check.acc_bwt
    pending = _report(store, tmp_path)
    assert "Its own check decides when lora's whole rate grid there has completed" in pending
    assert "the grid still goes on under the fallback protocol" in pending
    # The power of the rule with these seeds: half-width 0.1, so only below -0.12.
    assert "half-width is 0.100, so the rule resolves only a mean acc-BWT below -0.120" in (pending)
    second = ProtocolCheck("fallback", "lora", 1e-3, [1, 2, 3], summary, summary, 0.02, False)
    record(store, [check, second])
    both = _report(store, tmp_path)
    assert "Neither check resolved forgetting" in both
    # The README's first-screen block says it too, not only REPORT.md.
    summary_md = (tmp_path / words_report.SUMMARY_FILE).read_text()
    assert "neither check resolved sequential lora's forgetting" in summary_md


def test_exact_match_note_names_only_runs_whose_answers_left_the_label_words(
    tmp_path: Path,
) -> None:
    same = _run(tmp_path / "same", 1, 1e-3, FORGETS, 0.8)
    same.results["head"]["exact_match_matrix"] = [list(r) for r in FORGETS]
    collapsed = _run(tmp_path / "gone", 2, 1e-3, FORGETS, 0.8)
    em = [list(r) for r in FORGETS]
    em[2][0] = 0.05  # task a after task c: its answers went to other words (acc 0.6)
    em[0][1] = 0.0  # task b before it was trained: not forgetting, not counted
    collapsed.results["head"]["exact_match_matrix"] = em
    note = " ".join(words_report.exact_match_note([("first", same), ("first", collapsed)], 0.02))
    assert "within 0.02 of accuracy in 1 of the 2 runs above" in note
    assert "(largest gap: lr 0.001 seed 2: a after c, em 0.050 against acc 0.600)" in note
    assert "seed 1:" not in note and "b after a" not in note


def test_exact_match_note_names_the_protocol_when_runs_span_two(tmp_path: Path) -> None:
    """The same rate and seed ran under both protocols: each named gap says which."""
    em = [list(r) for r in FORGETS]
    em[2][0] = 0.05
    pairs = []
    for protocol in ("fallback", "first"):
        run = _run(tmp_path / protocol, 2, 1e-3, FORGETS, 0.8)
        run.results["head"]["exact_match_matrix"] = em
        pairs.append((protocol, run))
    note = " ".join(words_report.exact_match_note(pairs, 0.02))
    assert (
        "(largest gap: first protocol, lr 0.001 seed 2: a after c, em 0.050 against acc 0.600; "
        "fallback protocol, lr 0.001 seed 2: a after c" in note
    )


def test_two_seeds_give_no_interval_and_accuracies_stay_in_0_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curlora.reporting.stats import interval_text, summarize

    assert interval_text(summarize([0.82, 0.89])) == "n/a (2 seeds)"
    high = summarize([0.97, 0.99, 1.0])  # its t-interval runs past 1
    assert high.high is not None and high.high > 1
    assert interval_text(high, (0.0, 1.0)).endswith("+1.000]")
    assert interval_text(high) == high.interval()  # no bounds: the interval as computed


def test_the_rate_choice_says_what_it_rests_on(tmp_path: Path) -> None:
    # Rate 3e-3 has only seed 1 so far: the rule compares on seed 1 alone (provisional);
    # the validation carves' majority rates say what a score near them means.
    runs = [_run(tmp_path / "a", s, 1e-3, KEEPS, 0.8) for s in (1, 2, 3)]
    runs.append(_run(tmp_path / "b", 1, 3e-3, KEEPS, 0.7))
    for run in runs:
        run.results["validation"]["majority_baseline"] = [0.57, 0.53, 0.51]
    rules = words_report.Rules.read(_store(tmp_path) / "grid.yaml")
    note = "\n".join(words_report.selection_note(runs, rules))
    assert "- lora: decided on seed(s) 1 of 3, the seeds every rate has finished" in note
    assert "majority rates (a / b / c): 0.57 / 0.53 / 0.51" in note
