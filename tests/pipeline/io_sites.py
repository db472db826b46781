"""Every place in ``src/curlora`` that writes or reads a file, found by walking the code's
syntax trees (``ast``), not listed by hand: a new writer or reader is found the day it is
written, and the fault-injection suite (``test_fault_injection.py``) then covers it.

- **write sites**: calls to the atomic writer (``atomic_write``, ``atomic_write_text``).
- **raw writes**: calls that write a file some other way (``write_text``, ``savefig``,
  ``torch.save``, ``open(..., "w")``, ...) outside an atomic writer's callback; the suite
  requires each to be listed with the reason it may bypass the writer.
- **read sites**: calls that read a file a user or a disk can damage: ``read_text``,
  ``read_bytes``, ``open`` for reading, ``json.load``, ``OmegaConf.load``, ``torch.load``,
  safetensors' ``load_file``/``safe_open``, ``datasets.load_dataset``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "curlora"
WRITERS = frozenset({"atomic_write", "atomic_write_text"})
RAW_WRITE_METHODS = frozenset(
    {"write_text", "write_bytes", "savefig", "save_pretrained", "to_parquet", "save_file"}
)
READ_METHODS = frozenset({"read_text", "read_bytes", "load_file", "safe_open", "load_dataset"})
# module.function reads (a bare ``load`` is too common a name to mean a file read).
READ_QUALIFIED = frozenset({("json", "load"), ("OmegaConf", "load"), ("torch", "load")})
WRITE_MODES = ("w", "a", "x", "+")


@dataclass(frozen=True)
class Site:
    """One call: ``module`` (path below src/curlora), the lines it spans, the function it is
    in, and the callee as written."""

    kind: str  # write | raw_write | read
    module: str
    lineno: int
    end_lineno: int
    function: str
    callee: str

    @property
    def file(self) -> Path:
        return SRC / self.module

    def __str__(self) -> str:
        return f"{self.module}:{self.lineno} {self.function}: {self.callee}"


def _callee(node: ast.Call) -> tuple[str | None, str | None]:
    """(owner, name) of the called function: ``json.load`` -> ("json", "load")."""
    func = node.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        owner = func.value
        name = owner.id if isinstance(owner, ast.Name) else None
        return name, func.attr
    return None, None


def _open_mode(node: ast.Call, position: int) -> str:
    for keyword in node.keywords:
        if keyword.arg == "mode" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    if len(node.args) > position and isinstance(node.args[position], ast.Constant):
        return str(node.args[position].value)
    return "r"


def _kind(node: ast.Call) -> str | None:
    owner, name = _callee(node)
    if name in WRITERS:
        return "write"
    if name in RAW_WRITE_METHODS or (owner, name) == ("torch", "save"):
        return "raw_write"
    if name == "open" and owner in (None, "tarfile", "zipfile", "os"):
        if owner == "os":
            return None  # lock files and directory fsyncs, not file contents
        mode = _open_mode(node, 1)
        return "raw_write" if any(m in mode for m in WRITE_MODES) else "read"
    if name == "open" and owner is not None:  # a Path's open(mode)
        mode = _open_mode(node, 0)
        return "raw_write" if any(m in mode for m in WRITE_MODES) else "read"
    if name in READ_METHODS or (owner, name) in READ_QUALIFIED:
        return "read"
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.inside_writer = 0
        self.sites: list[Site] = []

    def _named(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _named

    def visit_Call(self, node: ast.Call) -> None:
        kind = _kind(node)
        if kind == "raw_write" and self.inside_writer:
            kind = None  # fills the writer's temporary file: part of the atomic write
        if kind is not None:
            self.sites.append(
                Site(
                    kind,
                    self.module,
                    node.lineno,
                    node.end_lineno or node.lineno,
                    ".".join(self.scope) or "<module>",
                    ast.unparse(node.func),
                )
            )
        writer = _callee(node)[1] in WRITERS
        self.inside_writer += writer
        self.generic_visit(node)
        self.inside_writer -= writer


@cache
def all_sites() -> tuple[Site, ...]:
    sites: list[Site] = []
    for path in sorted(SRC.rglob("*.py")):
        module = str(path.relative_to(SRC))
        if module == "run/atomic.py":
            continue  # the writer itself
        finder = _Finder(module)
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        sites += finder.sites
    return tuple(sites)


def sites(kind: str) -> list[Site]:
    return [site for site in all_sites() if site.kind == kind]


if __name__ == "__main__":  # python -m tests.pipeline.io_sites: the list, for a look
    for site in all_sites():
        print(site.kind.ljust(9), site)
