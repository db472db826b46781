"""Hugging Face Hub tasks and corpus (the paper's data), loaded with ``datasets.load_dataset``.

Task source ``HubTask`` (fields):
    path / name / revision: the Hub dataset (``nyu-mll/glue``, ``mrpc``); ``revision``
        pins a branch, tag or commit (Sentiment140 needs ``refs/convert/parquet``: its
        loading script no longer runs with datasets >= 4, the parquet conversion does).
    data_files: local override, used instead of the Hub when set: a mapping
        ``{split: path or [paths]}`` of parquet/JSON(L)/CSV files with the Hub schema (tests,
        or a machine without the Hub). ``format`` (parquet/json/csv) defaults to the first
        file's extension.
    split_names: optional ``{our split: Hub split}`` renames.

Corpus source ``HubCorpus``: the same fields, plus ``split`` (default ``test``),
``text_field`` (default ``text``) and ``join`` (default two newlines, as the Hugging Face
perplexity guide does for WikiText-2).

Datasets are cached under ``<cache_dir>/hf_datasets`` so a run's cache holds everything it
downloaded. When the Hub cannot be reached the loaders raise :class:`HubUnreachableError`,
which names ``data=offline`` and ``data_files`` as the ways forward; with offline mode set
and the data not in that cache, the config check raises the same error before anything
loads (each source's ``offline_problem``).
"""

from __future__ import annotations

import codecs
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from curlora.data.sources import CorpusSource, TaskSource
from curlora.data.unreachable import HubUnreachableError
from curlora.data.validation import DataError

if TYPE_CHECKING:
    from curlora.data.tasks import TaskSpec

_FORMATS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def is_offline_error(error: BaseException) -> bool:
    """True when ``error`` (or its cause chain) says the Hub was unreachable or offline mode
    is on: connection errors, time-outs and huggingface_hub's offline/cache-miss errors."""
    seen: BaseException | None = error
    while seen is not None:
        name = type(seen).__name__
        if isinstance(seen, ConnectionError | TimeoutError) or name in {
            "OfflineModeIsEnabled",
            "LocalEntryNotFoundError",
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
        }:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def offline_switch() -> str | None:
    """How offline mode is set (``HF_HUB_OFFLINE=1``), or None when the Hub may be used.
    ``datasets`` is offline with either variable set."""
    import huggingface_hub.constants

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(variable, "").upper() in huggingface_hub.constants.ENV_VARS_TRUE_VALUES:
            return f"{variable}={os.environ[variable]}"
    if huggingface_hub.constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE:
        return "offline mode"
    return None


def missing_from_cache(dataset_path: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``datasets`` would have to fetch ``dataset_path`` from the Hub: no prepared
    copy of it where its offline fallback looks (``datasets.load.CachedDatasetModuleFactory``:
    ``<cache>/<namespace>___<snake_case name>/<config>/<version>/<hash>``) in ``cache_dir``
    (``datasets``' default cache when None). A builder of ``datasets``' own (``json``,
    ``csv``, ...) or a local folder is no Hub dataset: False."""
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    if dataset_path in _PACKAGED_DATASETS_MODULES or Path(dataset_path).expanduser().exists():
        return False
    parts = dataset_path.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    cache = Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()
    return not any(path.is_dir() for path in (cache / "___".join(parts)).glob("*/*/*"))


def _unreachable(
    what: str, options: Mapping[str, Any], hub_split: str, hf_cache: str, files_key: str
) -> str:
    """The one line for data the Hub cannot serve, said before a load or by a failed one."""
    return (
        f"{what}: the Hugging Face Hub is unreachable (or offline mode is on) and "
        f"'{options['path']}' ({options.get('name')}, split {hub_split}) is not in the cache "
        f"{hf_cache}. Use the offline suite instead (data=offline), or point "
        f"{files_key} at local parquet/JSON files with the Hub schema."
    )


def offline_problem(
    options: Mapping[str, Any], split: str, cache_dir: Path, what: str, files_key: str
) -> str | None:
    """The error :func:`load_hub_split` would raise for ``split`` of this source, known
    before anything loads: offline mode is set, the source reads the Hub (no
    ``data_files``) and its dataset is not in the run's cache. None otherwise, and when
    this cannot tell (a Hub that is merely unreachable): the load then decides."""
    if options.get("data_files") or not options.get("path") or offline_switch() is None:
        return None
    hf_cache = str(Path(cache_dir) / "hf_datasets")
    if not missing_from_cache(str(options["path"]), hf_cache):
        return None
    hub_split = dict(options.get("split_names") or {}).get(split, split)
    return _unreachable(what, options, hub_split, hf_cache, files_key)


def _format_of(files: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    if options.get("format"):
        return str(options["format"])
    first = next(iter(files.values()))
    first = first[0] if isinstance(first, list | tuple) else first
    suffix = Path(str(first)).suffix.lower()
    if suffix not in _FORMATS:
        raise DataError(
            f"data_files: cannot infer the format of '{first}'; set the source's format"
        )
    return _FORMATS[suffix]


def load_hub_split(
    options: Mapping[str, Any], split: str, cache_dir: Path, what: str, files_key: str
) -> Any:
    """One split from local ``data_files`` or from the Hub; see the module docstring.
    ``files_key`` is the config key of ``data_files``, which the offline error names."""
    hub_split = dict(options.get("split_names") or {}).get(split, split)
    hf_cache = str(Path(cache_dir) / "hf_datasets")
    files = options.get("data_files")
    if files:
        if not isinstance(files, Mapping):
            raise DataError(f"{what}: data_files must map split names to files, got {files!r}")
        files = {k: [str(p) for p in v] if isinstance(v, list | tuple) else str(v)
                 for k, v in files.items()}  # fmt: skip
        if hub_split not in files:
            raise DataError(f"{what}: data_files has no split '{hub_split}'; has {sorted(files)}")
        fmt = _format_of(files, options)
        return load_local_files(files[hub_split], hub_split, fmt, hf_cache, what)
    if not options.get("path"):
        raise ValueError(f"{what}: the source's path (a Hub dataset id) or data_files is required")
    try:
        return datasets.load_dataset(
            str(options["path"]),
            options.get("name"),
            revision=options.get("revision"),
            split=hub_split,
            cache_dir=hf_cache,
        )
    except Exception as error:
        if not is_offline_error(error):
            raise
        raise HubUnreachableError(
            _unreachable(what, options, hub_split, hf_cache, files_key)
        ) from error


def _first_non_utf8_byte(path: Path, chunk: int = 1 << 20) -> int | None:
    """The offset of the first byte that is not UTF-8 in a text file; None when all are."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                return offset + error.start
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        return offset + error.start
    return None


def load_local_files(files: str | list[str], split: str, fmt: str, hf_cache: str, what: str) -> Any:
    """One split from local files, read alone: a column missing in another split's file
    is that split's problem, named when that split loads. A file that is missing, empty,
    not UTF-8 or not ``fmt`` raises DataError naming it (``datasets`` says it in a
    traceback, or as a StopIteration)."""
    paths = [files] if isinstance(files, str) else list(files)
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{what}: data_files['{split}'] = {path} is not a file")
        if Path(path).stat().st_size == 0:
            raise DataError(f"{what}: data_files['{split}'] = {path} is empty")
        bad_byte = _first_non_utf8_byte(Path(path)) if fmt in ("json", "csv") else None
        if bad_byte is not None:  # pyarrow's JSON reader keeps it, to fail when read later
            raise DataError(
                f"{what}: data_files['{split}'] = {path} is not UTF-8 text (byte {bad_byte})"
            )
    try:
        return datasets.load_dataset(
            fmt, data_files={split: paths}, split=split, cache_dir=hf_cache
        )
    except Exception as error:  # pyarrow, pandas and datasets each fail in their own way
        found = error
        while found.__cause__ is not None or found.__context__ is not None:
            if isinstance(found, UnicodeDecodeError):
                break
            found = found.__cause__ or found.__context__  # type: ignore[assignment]
        why = (
            f"not UTF-8 text (byte {found.start})"
            if isinstance(found, UnicodeDecodeError)
            else " ".join(f"{type(found).__name__}: {found}".split())[:300]
        )
        shown = paths[0] if len(paths) == 1 else paths
        raise DataError(
            f"{what}: data_files['{split}'] = {shown} cannot be read as {fmt}: {why}"
        ) from None


@dataclasses.dataclass
class HubTask(TaskSource):
    """A Hub dataset as a task (fields: the module docstring)."""

    path: str | None = None
    name: str | None = None
    revision: str | None = None
    data_files: dict[str, Any] | None = None
    split_names: dict[str, str] | None = None
    format: str | None = None

    def offline_problem(self, spec: TaskSpec, cache_dir: Path) -> str | None:
        """Why its training split cannot load here, known before anything loads
        (:func:`offline_problem`); None when it may."""
        return offline_problem(
            self.options(),
            spec.train_split,
            cache_dir,
            f"task '{spec.name}'",
            f"data.task_specs.{spec.name}.source.data_files",
        )

    def load_split(self, spec: TaskSpec, split: str, cache_dir: Path) -> datasets.Dataset:
        """Split ``split`` (raw labels: ``label_map`` is applied by the caller)."""
        data = load_hub_split(
            self.options(),
            split,
            cache_dir,
            f"task '{spec.name}'",
            f"data.task_specs.{spec.name}.source.data_files",
        )
        if self.data_files:  # a user's own file: a missing column names the file too
            from curlora.data.validation import check_split

            hub_split = dict(self.split_names or {}).get(split, split)
            try:
                check_split(spec, split, data)
            except DataError as error:
                raise DataError(f"{error} (in {self.data_files.get(hub_split)})") from None
        return data


@dataclasses.dataclass
class HubCorpus(CorpusSource):
    """A Hub dataset's text column as the corpus (WikiText-2: test, lines joined by two
    newlines, as the Hugging Face perplexity guide does)."""

    path: str | None = None
    name: str | None = None
    revision: str | None = None
    data_files: dict[str, Any] | None = None
    split_names: dict[str, str] | None = None
    format: str | None = None
    split: str = "test"
    text_field: str = "text"
    join: str = "\n\n"

    def offline_problem(self, cache_dir: Path) -> str | None:
        """Why it cannot load here, known before anything loads (:func:`offline_problem`)."""
        return offline_problem(
            self.options(), self.split, cache_dir, "corpus", "data.corpus.data_files"
        )

    def load(self, cache_dir: Path) -> str:
        data = load_hub_split(
            self.options(), self.split, cache_dir, "corpus", "data.corpus.data_files"
        )
        where = f"corpus {self.data_files.get(self.split) if self.data_files else self.path}"
        if self.text_field not in data.column_names:
            raise DataError(
                f"{where}: no column '{self.text_field}' (data.corpus.text_field); "
                f"its columns: {data.column_names}"
            )
        text = self.join.join(t for t in data[self.text_field] if isinstance(t, str))
        if not text.strip():  # perplexity needs tokens: "need at least 2 tokens", mid-run
            raise DataError(f"{where}: its '{self.text_field}' column holds no text")
        return text
