"""The order curlora-reproduce runs a grid's parts in: the question first.

The table1_cpu grid (configs/reproduce/table1_cpu.yaml) plans, per seed, head_only and five
methods × three rates; headline_methods are curlora, lora, lora_paper. A grid stopped
early must hold the runs the headline verdict needs: the rate grid of those methods and of
the controls, then the headline seeds at their chosen rates, before the rate grid of the
matched controls (tinylora, vera), the rank sweep and the sampling ablation; and within the
headline methods, the question's pair (curlora and lora, with head_only) over every seed
and its headline seeds before lora_paper's. No job runs here: ``multirun`` is replaced by
a recorder, and the grid's job pre-checks (every job's config composed and checked,
seconds; ``test_grid_prechecks`` covers them) are skipped: the order is the point here.
"""

from __future__ import annotations

import json
import threading
import time

from curlora import reproduce
from tests.conftest import skip_grid_job_prechecks

WORDS_RATES = {"curlora": 0.003, "lora": 0.001, "lora_paper": 2.5e-4, "o_lora": 0.001}
RATES = {"curlora": 0.003, "lora": 0.001, "lora_paper": 0.00025, "tinylora": 0.0003, "vera": 0.03}


def _recorded_grid(
    tmp_path, monkeypatch, grid: str, rates: dict, *settings: str, events: list | None = None
) -> list[tuple[str, list]]:
    """``reproduce=<grid>`` with a recorder for multirun (no job runs) and ``rates`` as
    the rates chosen on validation; returns (sweep subdirectory, overrides) per part, in
    the order they started. ``events``, when given, receives ("start" | "end", subdirectory)
    as parts start and end (several workers run parts from several threads)."""
    from curlora.reporting import reproduction

    started: list[tuple[str, list]] = []
    lock = threading.Lock()

    def record(sweep_dir, overrides, threads=None) -> int:
        where = str(sweep_dir.relative_to(tmp_path / "grid"))
        with lock:
            started.append((where, list(overrides)))
            if events is not None:
                events.append(("start", where))
        time.sleep(0.001)  # another worker may start a part meanwhile
        if events is not None:
            with lock:
                events.append(("end", where))
        return 0

    monkeypatch.setattr(reproduce, "multirun", record)
    skip_grid_job_prechecks(monkeypatch)
    monkeypatch.setattr(reproduction, "choose_grid_rates", lambda runs, grid_file: rates)
    monkeypatch.setattr(reproduce, "_report", lambda *args: tmp_path / "REPORT.md")
    code = reproduce.main(
        [
            f"reproduce={grid}",
            f"reproduce.dir={tmp_path / 'grid'}",
            f"reproduce.results_dir={tmp_path / 'results'}",
            f"reproduce.report_dir={tmp_path}",
            f"reproduce.readme={tmp_path / 'README.md'}",
            *settings,
        ]
    )
    assert code == 0
    return started


def test_the_headline_question_runs_before_matched_controls_and_ablations(
    tmp_path, monkeypatch
) -> None:
    started = [p for p, _ in _recorded_grid(tmp_path, monkeypatch, "table1_cpu", RATES)]

    def stage(part: str) -> int:
        where, *rest = part.split("/")
        method = rest[1] if where in ("lr_grid", "headline") else ""
        question = method in ("head_only", "curlora", "lora")  # the pair and the control
        if where == "lr_grid":
            return 0 if question else 2 if method == "lora_paper" else 4
        if where == "headline":
            return 1 if question else 3
        return {"ranks": 5, "sampling": 6}[where]

    stages = [stage(part) for part in started]
    assert stages == sorted(stages), started
    # Every planned job started once: the question's rate grid, 3 seeds × (head_only + 2
    # methods × 3 rates), and its 2 extra seeds × 3; lora_paper's 3 × 3 and 2 extra seeds;
    # the matched controls' 3 × 2 × 3; 2 methods × 2 ranks × 3 seeds; 3 sampling modes × 3.
    assert [stages.count(s) for s in range(7)] == [3 * 7, 2 * 3, 3 * 3, 2, 3 * 6, 12, 9]
    assert len(set(started)) == len(started) == 77
    # The headline seeds use the chosen rates.
    assert "headline/s1314/lora_paper/run" in started
    assert any(p.startswith("lr_grid/s1311/vera/") for p in started)


def test_part_method_reads_the_method_override() -> None:
    assert reproduce.part_method(("x", ["seed=1", "method=vera", "optimizer.lr=0.1"])) == "vera"
    assert reproduce.part_method(("x", ["seed=1"])) is None


def _words_grid(
    tmp_path, monkeypatch, measurable: dict[str, bool], *settings: str, events: list | None = None
) -> list[tuple[str, list]]:
    """table2_words with a recorder for multirun; the protocol check's verdict per protocol
    given by ``measurable``; one worker unless ``settings`` say otherwise, so that the
    parts start in exactly the grid's order."""
    from curlora.reporting import protocol_check

    def decide(runs, grid_file, protocol, method):
        summary = {"n": 0, "mean": 0.0, "std": None, "low": None, "high": None}
        return protocol_check.ProtocolCheck(
            protocol, "lora", 1e-3, [1311], summary, None, 0.02, measurable[protocol]
        )

    monkeypatch.setattr(protocol_check, "decide", decide)
    settings = ("reproduce.workers=1", *settings)
    return _recorded_grid(
        tmp_path, monkeypatch, "table2_words", WORDS_RATES, *settings, events=events
    )


def test_the_words_grid_checks_its_protocol_before_any_other_method(tmp_path, monkeypatch) -> None:
    started = _words_grid(tmp_path, monkeypatch, {"first": True, "fallback": True})
    parts = [p for p, _ in started]
    # The check: LoRA's 3 rates × 3 seeds, before anything else.
    assert all("/lora/" in p for p in parts[:9]) and len(set(parts[:9])) == 9
    assert not any(p.startswith("fallback/") for p in parts)
    # The references run at LoRA's chosen rate, 3 seeds × (replay, joint), after the
    # headline seeds.
    refs = [(p, o) for p, o in started if p.startswith("references/")]
    assert len(refs) == 6
    assert all("optimizer.lr=0.001" in o and "method=lora" in o for _, o in refs)
    assert parts.index(refs[0][0]) > max(
        i for i, p in enumerate(parts) if p.startswith("headline/")
    )
    assert {o for _, o in refs for o in o if o.startswith("strategy=")} == {
        "strategy=replay",
        "strategy=joint",
    }
    decided = json.loads((tmp_path / "results" / "protocol_check.json").read_text())
    assert [c["protocol"] for c in decided] == ["first"]


def test_an_unmeasurable_protocol_switches_once_to_the_fallback(tmp_path, monkeypatch) -> None:
    started = _words_grid(tmp_path, monkeypatch, {"first": False, "fallback": True})
    parts = [p for p, _ in started]
    # The first check (9 LoRA jobs), then everything under fallback/ with its overrides.
    assert not any(p.startswith("fallback/") for p in parts[:9])
    assert all(p.startswith("fallback/") for p in parts[9:]) and len(parts) > 18
    assert all("trainer.max_epochs=3" in o for _, o in started[9:])
    assert not any("trainer.max_epochs=3" in o for _, o in started[:9])
    decided = json.loads((tmp_path / "results" / "protocol_check.json").read_text())
    assert [c["protocol"] for c in decided] == ["first", "fallback"]


def test_two_workers_start_a_part_once_the_parts_it_needs_have_ended(tmp_path, monkeypatch) -> None:
    """table2_words at its own two workers: no stage barrier, but a headline seed still
    starts only after its method's whole rate grid ended (its rate is chosen from it), and
    a reference only after LoRA's; every planned part starts once."""
    events: list[tuple[str, str]] = []
    started = _words_grid(
        tmp_path,
        monkeypatch,
        {"first": False, "fallback": True},
        "reproduce.workers=2",
        events=events,
    )
    at = {(kind, where): i for i, (kind, where) in enumerate(events)}
    # Nothing is stored here, so LoRA's rate grid starts again after the protocol check
    # (a real grid skips those jobs as stored); the events keep each part's last start.
    parts = list(dict.fromkeys(p for p, _ in started))

    def method(part: str) -> str:
        return part.split("/")[3]  # fallback/<stage>/s<seed>/<method>/...

    grid_parts = [p for p in parts if p.startswith("fallback/lr_grid/")]
    for part in parts:
        if part.startswith("fallback/headline/"):
            needed = [g for g in grid_parts if method(g) == method(part)]
        elif part.startswith("fallback/references/"):
            needed = [g for g in grid_parts if method(g) == "lora"]
        else:
            continue
        assert needed
        assert all(at[("end", g)] < at[("start", part)] for g in needed), part
    assert len(started) == len(parts) + 9
    assert sum(p.startswith("fallback/headline/") for p in parts) == 2 * 4
    assert sum(p.startswith("fallback/references/") for p in parts) == 6
