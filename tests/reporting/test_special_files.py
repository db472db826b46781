"""Every file a report opens is a regular file reached without a symbolic link: a FIFO in
its place (reading it would wait forever) or a link (the report would read, and print,
whatever it points to) is named in one line, like any file the report cannot use, and
the report goes on, or ends, as it does for a damaged one."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from curlora.reporting.console import main
from curlora.reporting.grid import GridRun, load_grid
from curlora.reporting.results import load_results
from tests.reporting.report_copies import TINY_WORDS, copy_store, no_hang, report_only


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _link_to_copy(path: Path) -> None:
    """``path`` made a link to a copy of itself: the same bytes, reached through a link."""
    target = path.with_name(path.name + ".elsewhere")
    path.rename(target)
    path.symlink_to(target.name)


def _dangling(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("nowhere.json")


KINDS: dict[str, Callable[[Path], None]] = {
    "fifo": _fifo,
    "link": _link_to_copy,
    "dangling link": _dangling,
}
SAID = {"fifo": "a FIFO", "link": "symbolic link", "dangling link": "symbolic link"}


def _run(directory: Path, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return directory


def test_read_text_reads_a_regular_file_and_nothing_else(tmp_path: Path) -> None:
    from curlora.reporting.regular_file import NotRegularFile, read_text

    path = tmp_path / "file.json"
    path.write_bytes(b'{"a": 1}\r\n')
    assert read_text(path) == path.read_text(encoding="utf-8")  # as Path.read_text reads
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "missing.json")
    (tmp_path / "dir.json").mkdir()
    entries = {"dir.json": "a directory"}
    for kind, make in KINDS.items():
        entry = tmp_path / f"{kind}.json"
        entry.write_text("{}", encoding="utf-8")
        make(entry)
        entries[entry.name] = SAID[kind]
    for name, said in entries.items():
        with no_hang(), pytest.raises(NotRegularFile) as raised:
            read_text(tmp_path / name)
        assert said in str(raised.value) and isinstance(raised.value, OSError)
    with pytest.raises(UnicodeDecodeError):
        (tmp_path / "bytes.json").write_bytes(b"\xff")
        read_text(tmp_path / "bytes.json")


@pytest.mark.parametrize("kind", KINDS)
def test_curlora_report_names_a_results_json_it_will_not_open(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    run = _run(tmp_path / "run", make_results(seed=4242))
    KINDS[kind](run / "results.json")
    with no_hang():
        code = main([str(run)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""  # nothing read through the link is printed
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert str(run / "results.json") in captured.err and SAID[kind] in captured.err


def _special_progress(run: Path, kind: str) -> None:
    """A genuine ``progress.json`` (an hour of wall time) turned into ``kind``: what a
    reader that opened it anyway would wait on, or follow to the hour."""
    (run / "progress.json").write_text('{"elapsed_s": 3600}', encoding="utf-8")
    KINDS[kind](run / "progress.json")


@pytest.mark.parametrize("kind", KINDS)
def test_curlora_report_never_waits_on_or_follows_progress_json(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    run = _run(tmp_path / "run", make_results())
    _special_progress(run, kind)
    with no_hang(), caplog.at_level(logging.WARNING, logger="curlora"):
        code = main([str(run)])
    assert code == 0 and "wall time -" in capsys.readouterr().out  # not the linked 60m00s
    assert str(run / "progress.json") in caplog.text and SAID[kind] in caplog.text


def test_a_sweep_skips_and_names_what_it_will_not_open(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a dangling link too: the search lists it though there is nothing behind it
    kinds = list(KINDS)
    for seed, kind in enumerate(["", *kinds]):
        run = _run(tmp_path / str(seed), make_results(seed=seed))
        if kind:
            KINDS[kind](run / "results.json")
    with no_hang():
        code = main([str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "## Sweep: 1 runs" in out
    for seed, kind in enumerate(kinds, start=1):
        assert f"{tmp_path / str(seed) / 'results.json'}: " in out and SAID[kind] in out


@pytest.mark.parametrize("kind", KINDS)
def test_a_grid_runs_wall_time_never_waits_on_or_follows_progress_json(
    make_results: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    # What the grid report sums for "their wall time adds up to": a FIFO once hung it.
    run = _run(tmp_path / "run", make_results())
    _special_progress(run, kind)
    with no_hang(), caplog.at_level(logging.WARNING, logger="curlora"):
        assert GridRun(run, load_results(run / "results.json")).elapsed_s() == 0.0
    assert str(run / "progress.json") in caplog.text and SAID[kind] in caplog.text


def test_a_grid_report_names_each_file_it_will_not_open_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    store = copy_store(TINY_WORDS, tmp_path)
    with caplog.at_level(logging.WARNING, logger="curlora"):  # as stored: no warning
        assert report_only("tiny_words", store, tmp_path / "genuine") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Warning" not in (tmp_path / "genuine" / "REPORT.md").read_text(encoding="utf-8")
    caplog.clear()
    runs = sorted(path.parent for path in store.rglob("results.json"))
    unusable = {
        runs[0] / "outcomes.json": _link_to_copy,  # the same outcomes, through a link
        runs[1] / "results.json": _fifo,  # once hung --report-only
        runs[2] / "results.json": _link_to_copy,
    }
    for path, make in unusable.items():
        make(path)
    with no_hang(), caplog.at_level(logging.WARNING, logger="curlora"):
        code = report_only("tiny_words", store, tmp_path / "report")
    assert code == 0, capsys.readouterr().err
    for path in unusable:
        named = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
        assert named and all("\n" not in line for line in named), path
    report = (tmp_path / "report" / "REPORT.md").read_text(encoding="utf-8")
    link = (runs[0] / "outcomes.json").relative_to(store)
    assert f"per-example outcomes left out of 1 run(s): `{link}` (damaged: " in report


def test_a_grid_names_each_results_json_it_will_not_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A dangling link is no file to rglob: it once left its run out without a word.
    store = copy_store(TINY_WORDS, tmp_path)
    paths = dict(zip(KINDS, sorted(store.rglob("results.json")), strict=False))
    for kind, path in paths.items():
        KINDS[kind](path)
    with no_hang(), caplog.at_level(logging.WARNING, logger="curlora"):
        runs = load_grid(store)
    assert not {path.parent for path in paths.values()} & {run.path for run in runs}
    for kind, path in paths.items():
        named = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
        assert len(named) == 1 and SAID[kind] in named[0], kind
        assert "left out of the report" in named[0], kind


@pytest.mark.parametrize("kind", ["fifo", "link"])
@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("grid.yaml", "**Warning:** `grid.yaml` is damaged ("),  # the default rules
        ("protocol_check.json", "protocol_check.json is damaged"),  # no check decided
    ],
)
def test_a_grid_file_the_report_will_not_open_is_damaged_by_name(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    name: str,
    said: str,
) -> None:
    store = copy_store(TINY_WORDS, tmp_path)
    KINDS[kind](store / name)
    with no_hang(), caplog.at_level(logging.WARNING, logger="curlora"):
        code = report_only("tiny_words", store, tmp_path / "report")
    assert code == 0, capsys.readouterr().err
    assert f"{store / name} is damaged" in caplog.text and SAID[kind] in caplog.text
    assert said in (tmp_path / "report" / "REPORT.md").read_text(encoding="utf-8")
