"""The report names tasks whose archive the registry no longer serves (one line), and only
those: a grid on data that is still served gets no such line."""

from __future__ import annotations

from pathlib import Path

from curlora.reporting.grid import GridRun
from curlora.reporting.reproduction import unserved_data_note

OFFLINE = "curlora.data.sources.offline.OfflineTask"


def _run(datasets: dict[str, str], target: str = OFFLINE) -> GridRun:
    specs = {task: {"source": {"_target_": target, "dataset": ds}} for task, ds in datasets.items()}
    return GridRun(
        path=Path("run"),
        results={"tasks": list(datasets), "config": {"data": {"task_specs": specs}}},
    )


def test_a_task_on_a_retired_archive_is_named_with_the_archive_and_the_date() -> None:
    # bigbench-1.0.0.tar.gz is in offline.NO_LONGER_SERVED (found missing on 2026-12-05).
    note = unserved_data_note(
        _run({"winowhy": "winowhy", "movie_reviews": "movie_reviews", "tweets": "tweets"})
    )
    assert note is not None
    assert "winowhy: `bigbench-1.0.0.tar.gz` (not served since 2026-12-05)" in note
    assert "movie_reviews" not in note and "tweets" not in note


def test_served_data_and_other_sources_get_no_note() -> None:
    assert unserved_data_note(_run({"convention": "convention", "tweets": "tweets"})) is None
    # A Hub task that happens to share a name is not an offline archive.
    hub = "curlora.data.sources.hub.HubTask"
    assert unserved_data_note(_run({"winowhy": "winowhy"}, target=hub)) is None
