"""``curlora-report`` on files someone else made: every number a file can hold ends in one
line naming the file (never a traceback), and no string in it can drive the terminal."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from curlora.reporting.console import main, wall_time
from curlora.reporting.grid import GridRun, Rules
from curlora.reporting.results import load_results, validate_results
from curlora.reporting.sweep import summarize_sweep
from curlora.reporting.untrusted import is_safe_name, shown

HUGE = 10**400  # a valid JSON int past float's range: float() raises OverflowError
INJECTED = "completed\x1b[7A\r  after sst2   0.999   0.999   0.999\x1b[7B\r"
CONTROL = ("\x1b", "\r", "\x9b", "\u202e")  # ESC, CR, the C1 CSI, a bidi override


def _write(directory: Path, results: Any, text: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "results.json"
    path.write_text(text if text is not None else json.dumps(results), encoding="utf-8")
    return path


def _report(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """curlora-report in-process: an uncaught exception fails the test as the traceback."""
    code = main([str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_naming(err: str, path: Path) -> None:
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert str(path) in err and "Traceback" not in err


def _no_control(text: str) -> bool:
    return not any(char in text for char in CONTROL)


def _set(results: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = results
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return results


# Numbers: every field a reader turns into a float.


@pytest.mark.parametrize(
    "field",
    ["perplexity.initial", "metrics.bwt", "metrics.ppl_ratio_final", "probe.bwt"],
)
@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["+10**400", "-10**400"])
def test_an_int_past_float_range_is_a_damaged_file(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: int,
) -> None:
    results = make_results(probe_matrix=[[0.5, 0.5, 0.5]] * 3)
    path = _write(tmp_path / "run", _set(results, field, value))
    code, out, err = _report(path.parent, capsys)
    assert code == 1 and out == ""
    _assert_one_line_naming(err, path)
    assert any(field.split(".")[-1] in p for p in validate_results(json.loads(path.read_text())))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("head.exact_match_bwt", "abc"),  # formatted as a number by the table
        ("head.exact_match_bwt", HUGE),
        ("validation.majority_baseline", 5),  # iterated by the reader
    ],
    ids=["em-bwt-text", "em-bwt-10**400", "validation-majority-int"],
)
def test_fields_the_table_reads_are_checked(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: Any,
) -> None:
    tasks = make_results()["tasks"]
    head = {
        "name": "words",
        "prompts": {t: {"template": "{text}", "label_words": [" no", " yes"]} for t in tasks},
        "exact_match_matrix": [[0.5] * 3] * 3,
        "initial_exact_match": [0.0] * 3,
    }
    validation = {"accuracy_matrix": [[0.5] * 3] * 3, "majority_baseline": [0.5] * 3}
    results = make_results(head=head, validation=validation)
    path = _write(tmp_path / "run", _set(results, field, value))
    code, _out, err = _report(path.parent, capsys)
    assert code == 1
    _assert_one_line_naming(err, path)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda text: text.replace('"seed": 1311', '"seed": ' + "9" * 5000), "4300 digits"),
        (lambda _text: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["5000-digit int", "deep nesting"],
)
def test_json_past_what_a_reader_can_parse_is_one_line(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[str], str],
    why: str,
) -> None:
    text = damage(json.dumps(make_results()))
    path = _write(tmp_path / "run", None, text)
    code, _out, err = _report(path.parent, capsys)
    assert code == 1
    _assert_one_line_naming(err, path)
    assert why in err


def test_a_damaged_run_in_a_sweep_is_skipped_and_named(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write(tmp_path / "0", make_results())
    _write(tmp_path / "1", _set(make_results(), "perplexity.initial", HUGE))
    _write(tmp_path / "2", None, '{"seed": ' + "9" * 5000 + "}")
    summary = summarize_sweep(tmp_path, write=False)
    assert [p.parent.name for p, _ in summary.skipped] == ["1", "2"]
    code, out, _err = _report(tmp_path, capsys)
    assert code == 0 and "## Sweep: 1 runs" in out and "Skipped" in out


@pytest.mark.parametrize(
    "text",
    [
        '{"elapsed_s": ' + "1" + "0" * 400 + "}",  # OverflowError in float()
        '{"elapsed_s": ' + "9" * 5000 + "}",  # ValueError: the int digit limit
        "[" * 100_000,  # RecursionError
    ],
    ids=["10**400", "5000 digits", "deep nesting"],
)
def test_a_damaged_wall_time_is_unknown_not_a_crash(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    text: str,
) -> None:
    run = _write(tmp_path / "run", make_results()).parent
    (run / "progress.json").write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="curlora"):
        assert wall_time(run) is None
    assert str(run / "progress.json") in caplog.text
    code, out, _err = _report(run, capsys)
    assert code == 0 and "wall time -" in out
    grid_run = GridRun(run, load_results(run / "results.json"))
    assert grid_run.elapsed_s() == 0.0  # the reproduction report's job times


def test_grid_rules_past_float_range_are_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(f"margins:\n  accuracy: {HUGE}\n", encoding="utf-8")
    assert Rules.read(path) == Rules()


# Strings: whatever a file holds is printed as data.


def test_strings_of_the_file_cannot_drive_the_terminal(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warning = {
        "task": "sst2",
        "evaluated_after": 1,
        "reason": "single_class",
        "accuracy": 0.5,
        "majority_baseline": 0.5,
        "top_class_share": 1.0,
        "detail": "one class\x1b]0;title\x07\u202eesrever",
    }
    results = make_results(status=INJECTED, warnings=[warning])
    run = _write(tmp_path / "run\x1b[2J", results).parent  # a received directory's name too
    code, out, err = _report(run, capsys)
    assert code == 0 and err == ""
    assert _no_control(out) and "\x07" not in out
    assert "status completed\\x1b[7A\\r  after sst2" in out  # shown, escaped, on its line
    assert "one class\\x1b]0;title\\x07\\u202eesrever" in out
    assert "run\\x1b[2J" in out


@pytest.mark.parametrize("field", ["method", "tasks", "retention.tasks"])
def test_names_with_control_characters_are_refused(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
) -> None:
    retention = {
        "tasks": ["wiki_cloze"],
        "n": [100],
        "acc": [[0.5]] * 4,
        "acc_norm": [[0.5]] * 4,
    }
    results = make_results(retention=retention)
    name = "lora\x1b[1A\r  after mrpc  0.999"
    value = name if field == "method" else ["mrpc", "sst2", name]
    if field == "retention.tasks":
        value = [name]
    path = _write(tmp_path / "run", _set(results, field, value))
    code, out, err = _report(path.parent, capsys)
    assert code == 1 and out == ""
    _assert_one_line_naming(err, path)
    assert _no_control(err)


def test_sweep_markdown_and_csv_show_strings_as_data(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for seed, value in ((1, "plain"), (2, "red\x1b[31m\rX")):
        config = {"method": {"name": "curlora"}, "note\x1b[2J": value}
        _write(tmp_path / str(seed), make_results(seed=seed, status=INJECTED, config=config))
    summary = summarize_sweep(tmp_path)
    assert summary.csv_path is not None and summary.markdown_path is not None
    csv_text = summary.csv_path.read_text(encoding="utf-8")
    for text in (summary.markdown, summary.markdown_path.read_text(encoding="utf-8"), csv_text):
        assert _no_control(text)
        assert "red\\x1b[31m\\rX" in text and "note\\x1b[2J" in text
    rows = list(csv.DictReader(summary.csv_path.open(encoding="utf-8", newline="")))
    assert [row["seed"] for row in rows] == ["1", "2"]  # the CSV still reads as a table
    assert rows[0]["sst2/acc"] == repr(0.85)  # numbers at full precision, as before
    code, out, _err = _report(tmp_path, capsys)
    assert code == 0 and _no_control(out)


def test_shown_escapes_only_what_cannot_be_printed() -> None:
    plain = "curlora r16 (lr 0.001) | ± ü 中"
    assert shown(plain) is plain  # ordinary text unchanged: committed reports stay as they are
    assert shown("a\x1b[2Jb\rc\nd\te\x7f\x9b\u202e") == "a\\x1b[2Jb\\rc\\nd\\te\\x7f\\x9b\\u202e"
    assert shown(Path("x\x1b")) == "x\\x1b"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("curlora", True),
        ("lora_paper", True),
        ("movie_reviews", True),
        ("my task-2.v1", True),
        ("", False),
        (" x", False),
        ("a\x1b[2J", False),
        ("a\rb", False),
        ("a\nb", False),
        ("\u202eevil", False),
        ("x" * 201, False),
        (3, False),
    ],
)
def test_safe_names(name: Any, safe: bool) -> None:
    assert is_safe_name(name) is safe


def test_config_strings_a_reproduction_report_prints_are_shown(
    make_results: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    from curlora.reporting.reproduction import _devices

    config = {
        "method": {"name": "curlora", "sampling": "inverted\x1b[2J"},
        "strategy": {"_target_": "curlora.strategies.\x1b[1Aewc.EWC"},
        "trainer": {"accelerator": "cpu\r\x1b[2K"},
    }
    run = GridRun(tmp_path, make_results(config=config))
    assert run.sampling == "inverted\\x1b[2J" and run.strategy == "\\x1b[1Aewc"
    assert _no_control(_devices([run]))
    assert GridRun(tmp_path, make_results()).sampling is None  # the default stays the default


def test_a_grid_run_whose_learning_rate_cannot_be_read_is_left_out_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A committed run, copied twice: one as stored, one whose config names a rate that is no
    # number (float() would raise in the report's rate selection).
    import shutil

    from curlora.reporting.grid import load_grid
    from tests.conftest import REPO_ROOT

    source = next(
        (REPO_ROOT / "docs" / "reproduction" / "table2_words" / "runs").rglob("results.json")
    )
    for name, lr in (("good", None), ("bad", "fast"), ("huge", "1e999")):
        run = tmp_path / name
        shutil.copytree(source.parent, run)
        if lr is not None:
            results = json.loads((run / "results.json").read_text())
            results["config"]["optimizer"]["lr"] = lr
            (run / "results.json").write_text(json.dumps(results))
    with caplog.at_level("WARNING", logger="curlora"):
        runs = load_grid(tmp_path)
    assert [r.path.name for r in runs] == ["good"]
    assert caplog.text.count("config.optimizer.lr is not a finite number") == 2
