"""The import rules of the design, checked over the source with ``ast`` (nothing is
imported, so a lazy or TYPE_CHECKING-only import counts as much as any other):

- storage is at the bottom: it imports nothing of config, transfer, the registry, the API,
  the CLI, the package format or the progress display;
- the registry uses the engine's public names only, and never a concrete store; it
  leaves file mechanics (``os``, ``shutil``, ``tempfile``) to ``localfs.py``; its
  operation modules import ``catalog``, ``publish`` and ``signing`` at most from one another (and
  their own parts: publish its ``skips``, pull its ``trees``; ``locked``, a lock
  file's pull, is made of pull's machinery and imports ``pull``);
- transfer imports nothing of the registry, the API, the CLI, config or the display;
- only the CLI imports typer; rich only in the CLI and the progress display
  (``progress.py``, which loads ``bars.py`` on a terminal); bars imports nothing of
  progress (what both use is in ``tally.py``), so the two do not import each other;
- the public result types (``results.py``) are plain values: they import nothing of the
  registry, the API or the CLI;
- the package has no import cycle at module level (what runs when a module is imported:
  not the imports inside functions or TYPE_CHECKING blocks).

Each rule is also fed a forbidden import, so that none of them can pass vacuously.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tycho_async"
ROOT = "tycho_async"

STORAGE = f"{ROOT}.storage"
TRANSFER = f"{ROOT}.transfer"
REGISTRY = f"{ROOT}.registry"
NOT_BELOW_STORAGE = tuple(f"{ROOT}.{name}" for name in (
    "config", "transfer", "registry", "api", "cli", "layout", "archive", "progress", "bars"))
NOT_BELOW_TRANSFER = tuple(f"{ROOT}.{name}" for name in (
    "registry", "api", "cli", "config", "progress", "bars"))
CONCRETE_STORES = tuple(f"{STORAGE}.{name}" for name in (
    "s3", "s3calls", "s3uploads", "s3lean", "s3boto", "s3botoclient", "s3errors", "http",
    "sigv4", "local"))
REGISTRY_SHARED = (f"{REGISTRY}.catalog", f"{REGISTRY}.publish", f"{REGISTRY}.signing")
REGISTRY_PARTS = {f"{REGISTRY}.publish": (f"{REGISTRY}.skips",),
                  f"{REGISTRY}.pull": (f"{REGISTRY}.trees",),
                  f"{REGISTRY}.locked": (f"{REGISTRY}.pull",)}
FILE_MECHANICS = ("os", "shutil", "tempfile")
RESULTS = f"{ROOT}.results"
NOT_BELOW_RESULTS = tuple(f"{ROOT}.{name}" for name in ("registry", "api", "cli"))
PROGRESS = f"{ROOT}.progress"
BARS = f"{ROOT}.bars"
CLI = f"{ROOT}.cli"
LIFECYCLE = f"{ROOT}.lifecycle"
# what the pure version lifecycle may import: no os, no storage, no anyio, no clock of its
# own (the caller passes time and the probes in); the layout's value types are pure too
PURE = ("__future__", "collections.abc", "dataclasses", "datetime", "enum", "typing",
        f"{ROOT}.layout")
UI_LIBRARIES = {
    "typer": (f"{ROOT}.cli",),
    "click": (f"{ROOT}.cli",),
    "rich": (f"{ROOT}.cli", f"{ROOT}.progress", f"{ROOT}.bars"),
}


@dataclass(frozen=True)
class Import:
    """One imported thing: ``module`` (resolved to an absolute name) and, for ``from M
    import N``, the ``name`` (a submodule or an attribute: the source cannot tell)."""

    module: str
    name: str | None
    line: int
    asname: str | None = None

    @property
    def binds(self) -> tuple[str, str]:
        """The local name the import binds and the dotted name it stands for."""
        if self.name is not None:
            return self.asname or self.name, f"{self.module}.{self.name}"
        if self.asname is not None:
            return self.asname, self.module
        head = self.module.partition(".")[0]
        return head, head

    @property
    def targets(self) -> tuple[str, ...]:
        """What the import may load: the module, and ``module.name`` in case that is one."""
        if self.name is None:
            return (self.module,)
        return (self.module, f"{self.module}.{self.name}")


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``: never run on import."""
    return isinstance(node, ast.If) and (_dotted(node.test) or [""])[-1] == "TYPE_CHECKING"


def _nodes(tree: ast.AST, module_level: bool) -> Iterator[ast.AST]:
    """Every node of the tree; with ``module_level``, only those run when the module is
    imported (no function bodies, no TYPE_CHECKING block: its ``else`` does run)."""
    if not module_level:
        yield from ast.walk(tree)
        return
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if _type_checking(node):
            assert isinstance(node, ast.If)
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports_of(tree: ast.AST, module: str, *, is_package: bool = False,
               module_level: bool = False) -> list[Import]:
    """Every import in the tree, anywhere in it (functions, TYPE_CHECKING blocks), or
    with ``module_level`` only those that run when the module is imported."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in _nodes(tree, module_level):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, None, node.lineno, alias.asname)
                         for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.extend(Import(source, alias.name, node.lineno, alias.asname)
                         for alias in node.names)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None for anything but names and attributes."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else [*head, node.attr]
    return None


def _private_uses(tree: ast.AST, imports: list[Import], within_: tuple[str, ...]
                  ) -> list[tuple[int, str]]:
    """Private attributes reached through an imported name of ``within_``
    (``engine._check`` after ``from .transfer import engine``)."""
    bindings = dict(imp.binds for imp in imports)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = _dotted(node.value)
            if chain and chain[0] in bindings:
                full = ".".join([bindings[chain[0]], *chain[1:]])
                if within(full, within_):
                    found.append((node.lineno, f"{full}.{node.attr}"))
    return found


def problems(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """What ``source``, the text of ``module``, breaks of the rules (empty: nothing)."""
    tree = ast.parse(source)
    imports = imports_of(tree, module, is_package=is_package)
    found: list[str] = []

    def say(imp: Import, why: str) -> None:
        what = imp.module + (f" import {imp.name}" if imp.name else "")
        found.append(f"{module}:{imp.line}: {what}: {why}")

    for imp in imports:
        targets = imp.targets
        if within(module, (STORAGE,)) and any(within(t, NOT_BELOW_STORAGE) for t in targets):
            say(imp, "storage imports nothing above it")
        if within(module, (TRANSFER,)) and any(within(t, NOT_BELOW_TRANSFER) for t in targets):
            say(imp, "transfer imports nothing of the registry, API, CLI, config or display")
        if within(module, (REGISTRY,)):
            if within(imp.module, (TRANSFER,)) and (
                    (imp.name is not None and _private(imp.name))
                    or any(_private(part) for part in imp.module.split("."))):
                say(imp, "the registry uses the engine's public names only")
            if any(within(t, CONCRETE_STORES) for t in targets):
                say(imp, "the registry never imports a concrete store")
            if imp.module.partition(".")[0] in FILE_MECHANICS:
                say(imp, "the registry leaves file mechanics to localfs")
            target = f"{REGISTRY}.{imp.name}" if imp.module == REGISTRY and imp.name \
                else imp.module
            if module != REGISTRY and within(target, (REGISTRY,)) and target not in (
                    module, *REGISTRY_SHARED, *REGISTRY_PARTS.get(module, ())):
                say(imp, "an operation imports catalog, publish and signing at most "
                         "(and its parts)")
        if module == RESULTS and any(within(t, NOT_BELOW_RESULTS) for t in targets):
            say(imp, "results are plain values: nothing of the registry, API or CLI")
        if module == BARS and any(within(t, (PROGRESS,)) for t in targets):
            say(imp, "bars imports nothing of progress, which loads it (shared: tally)")
        if within(module, (CLI,)) and any(within(t, (REGISTRY,)) for t in targets):
            say(imp, "the CLI imports the API, never the registry")
        if module == LIFECYCLE and imp.module not in PURE:
            say(imp, "the lifecycle is pure: it imports nothing that does I/O")
        top = imp.module.partition(".")[0]
        if top in UI_LIBRARIES and not within(module, UI_LIBRARIES[top]):
            say(imp, f"only {', '.join(UI_LIBRARIES[top])} may import {top}")
    if within(module, (REGISTRY,)):
        for line, name in _private_uses(tree, imports, (TRANSFER,)):
            found.append(f"{module}:{line}: {name}: the registry uses the engine's public "
                         "names only")
    return found


def _modules() -> list[tuple[str, Path, bool]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found.append((".".join(parts[:-1] if is_package else parts), path, is_package))
    return found


MODULES = _modules()


@pytest.mark.parametrize(("module", "path", "is_package"), MODULES,
                         ids=[module for module, _, _ in MODULES])
def test_module_keeps_the_import_rules(module: str, path: Path, is_package: bool) -> None:
    assert problems(path.read_text(encoding="utf-8"), module, is_package=is_package) == []


def test_the_rules_see_the_modules_they_guard() -> None:
    """Not vacuous: the modules the rules name exist, and resolution finds real edges."""
    names = {module for module, _, _ in MODULES}
    assert {STORAGE, f"{STORAGE}.s3", f"{STORAGE}.local", TRANSFER, f"{TRANSFER}.engine",
            REGISTRY, f"{ROOT}.cli", f"{ROOT}.progress", f"{ROOT}.bars"} <= names
    edges = {
        module: {t for imp in imports_of(ast.parse(path.read_text(encoding="utf-8")), module,
                                         is_package=is_package) for t in imp.targets}
        for module, path, is_package in MODULES
    }
    assert f"{ROOT}.errors" in edges[f"{STORAGE}.s3"]
    assert f"{STORAGE}.s3" in edges[STORAGE]  # the lazy import in open_store
    assert f"{STORAGE}.ObjectInfo" in edges[f"{TRANSFER}.engine"]
    assert TRANSFER in edges[REGISTRY]
    assert "typer" in edges[f"{ROOT}.cli"]
    assert LIFECYCLE in names and edges[LIFECYCLE]
    assert any(within(t, (f"{ROOT}.api",)) for module in names if within(module, (CLI,))
               for t in edges[module])



def test_storage_imports_nothing_above_it() -> None:
    above = ("tycho_async.transfer", "tycho_async.registry", "tycho_async.cli",
             "tycho_async.progress", "tycho_async.bars")
    for module, path, is_package in MODULES:
        if path.parent != PACKAGE / "storage":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad = {t for imp in imports_of(tree, module, is_package=is_package)
               for t in imp.targets if t.startswith(above)}
        assert not bad, f"{path.name} imports {sorted(bad)}"

FORBIDDEN = [
    # (a) storage at the bottom, relative imports resolved, TYPE_CHECKING included
    ("tycho_async.storage.s3", False, "from ..config import Settings"),
    ("tycho_async.storage.s3", False,
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..config import Settings"),
    ("tycho_async.storage", True, "from ..transfer.plan import TransferSettings"),
    ("tycho_async.storage", True, "def f():\n    from ..transfer import Engine"),
    ("tycho_async.storage.local", False, "import tycho_async.registry"),
    ("tycho_async.storage.local", False, "from .. import api"),
    ("tycho_async.storage.s3", False, "from tycho_async import cli"),
    ("tycho_async.storage.s3", False, "from tycho_async.transfer import engine"),
    # (b) the registry: no private name of the engine, no concrete store
    ("tycho_async.registry", False, "from .transfer.engine import _check"),
    ("tycho_async.registry", False, "from .transfer import _plain"),
    ("tycho_async.registry", False, "from .transfer import engine\nengine._check(1)"),
    ("tycho_async.registry", False, "import tycho_async.transfer.engine as e\ne._retry()"),
    ("tycho_async.registry", False, "import tycho_async.transfer\ntycho_async.transfer.x._y"),
    ("tycho_async.registry", False, "from .transfer import Engine\nEngine._budget"),
    ("tycho_async.registry", False, "from .transfer._internal import helper"),
    ("tycho_async.registry", False, "from .storage.s3 import S3Store"),
    ("tycho_async.registry", False, "from .storage import local"),
    ("tycho_async.registry", False, "import tycho_async.storage.s3"),
    ("tycho_async.registry", False, "from .storage.s3lean import LeanS3"),
    ("tycho_async.registry.pull", False, "from ..transfer.engine import _check"),
    # (b') the registry's operations: catalog and publish shared, no file mechanics
    ("tycho_async.registry.pull", False, "from .delete import Delete"),
    ("tycho_async.registry.delete", False, "def f():\n    from .verify import Verify"),
    ("tycho_async.registry.queries", False, "from . import pull"),
    ("tycho_async.registry.verify", False, "from .skips import Skips"),
    ("tycho_async.registry.trees", False, "import os"),
    ("tycho_async.registry", True, "import shutil"),
    ("tycho_async.registry.catalog", False, "def f():\n    import tempfile"),
    # (c) transfer below the registry, API, CLI and config
    ("tycho_async.transfer.engine", False, "from ..registry import Registry"),
    ("tycho_async.transfer.engine", False, "from ..config import Settings"),
    ("tycho_async.transfer", True, "from .. import cli"),
    ("tycho_async.transfer.plan", False, "from tycho_async.api import Client"),
    ("tycho_async.transfer.engine", False, "from ..progress import Bars"),
    # (d) typer in the CLI only, rich in the CLI and the progress display only
    ("tycho_async.registry", False, "import typer"),
    ("tycho_async.api", False, "from rich.console import Console"),
    ("tycho_async.progress", False, "import typer"),
    ("tycho_async.bars", False, "from typer import Exit"),
    ("tycho_async.transfer.engine", False, "def f():\n    import rich.progress"),
    # (e) results below the registry; bars imports nothing of progress, even lazily
    ("tycho_async.results", False, "from .registry import Registry"),
    ("tycho_async.results", False, "def f():\n    from . import api"),
    ("tycho_async.bars", False, "from .progress import Tally"),
    ("tycho_async.bars", False, "def f():\n    from . import progress"),
    # (f) the CLI on the API, never the registry, not even for a type
    ("tycho_async.cli.pull", False, "from ..registry import Registry"),
    ("tycho_async.cli.run", False,
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..registry import Registry"),
    ("tycho_async.cli", True, "from .. import registry"),
    ("tycho_async.cli.queries", False, "def f():\n    import tycho_async.registry.queries"),
    # (g) the lifecycle is pure
    ("tycho_async.lifecycle", False, "import os"),
    ("tycho_async.lifecycle", False, "import time"),
    ("tycho_async.lifecycle", False, "def f():\n    import anyio"),
    ("tycho_async.lifecycle", False, "from .storage import Store"),
    ("tycho_async.lifecycle", False, "from .localfs import LocalFS"),
]


@pytest.mark.parametrize(("module", "is_package", "source"), FORBIDDEN)
def test_a_forbidden_import_is_caught(module: str, is_package: bool, source: str) -> None:
    assert problems(source, module, is_package=is_package), source


ALLOWED = [
    ("tycho_async.storage.s3", False,
     "from ..errors import StoreError\nfrom . import ObjectInfo\nfrom .s3lean import LeanS3"),
    ("tycho_async.storage", True, "from .s3 import S3Store\nfrom ..errors import NotFound"),
    ("tycho_async.registry", False,
     "from . import __version__\nfrom .transfer import Engine\n"
     "from .transfer.engine import ExpectedSource\nfrom .storage import ObjectInfo\n"
     "from .transfer import engine\nengine.Engine.__name__"),
    ("tycho_async.registry.delete", False,
     "from .catalog import Context\nfrom .publish import repair\nfrom .. import archive"),
    ("tycho_async.registry.pull", False, "def f():\n    from .trees import TreeInstall"),
    ("tycho_async.registry", True, "from .pull import Pull\nfrom .queries import Queries"),
    ("tycho_async.transfer.engine", False,
     "from ..storage import Store\nfrom ..errors import TychoError\nfrom .plan import _x"),
    ("tycho_async.cli", False, "import typer\nfrom rich.table import Table"),
    ("tycho_async.cli.run", False,
     "from ..api import AsyncRegistry\nfrom ..errors import TychoError"),
    ("tycho_async.lifecycle", False,
     "from __future__ import annotations\nfrom enum import Enum\nfrom .layout import Record"),
    ("tycho_async.bars", False, "from rich.console import Console"),
    ("tycho_async.progress", False, "def f():\n    from rich.console import Console"),
    ("tycho_async.bars", False, "from .tally import LARGE, Closing\nfrom .units import human_size"),
    ("tycho_async.results", False, "from .layout import FILE\nfrom .names import check_version"),
]


@pytest.mark.parametrize(("module", "is_package", "source"), ALLOWED)
def test_an_allowed_import_passes(module: str, is_package: bool, source: str) -> None:
    assert problems(source, module, is_package=is_package) == []


def test_relative_imports_resolve() -> None:
    tree = ast.parse("from . import a\nfrom .. import b\nfrom ..c.d import e\nimport f.g")
    found = imports_of(tree, "tycho_async.storage.s3")
    assert [(i.module, i.name) for i in found] == [
        ("tycho_async.storage", "a"), ("tycho_async", "b"), ("tycho_async.c.d", "e"),
        ("f.g", None)]
    package = imports_of(ast.parse("from . import a\nfrom .. import b"), "tycho_async.storage",
                         is_package=True)
    assert [(i.module, i.name) for i in package] == [("tycho_async.storage", "a"),
                                                     ("tycho_async", "b")]


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` it imports at module level; ``sources`` maps
    each module to its text and whether it is a package (its ``__init__``)."""
    return {module: {target for imp in imports_of(ast.parse(source), module,
                                                   is_package=is_package, module_level=True)
                     for target in imp.targets if target in sources and target != module}
            for module, (source, is_package) in sources.items()}


def a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph, as the modules along it (first repeated last); empty
    when there is none. A depth-first walk that keeps the path it is on."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        todo = [iter(sorted(graph[start]))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                done.add(path.pop())
                todo.pop()
            elif nxt in path:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in done:
                path.append(nxt)
                todo.append(iter(sorted(graph[nxt])))
    return []


def test_the_package_has_no_import_cycle_at_module_level() -> None:
    graph = import_graph({module: (path.read_text(encoding="utf-8"), is_package)
                          for module, path, is_package in MODULES})
    assert f"{ROOT}.tally" in graph[BARS] and f"{ROOT}.results" in graph[f"{ROOT}.report"]
    assert a_cycle(graph) == []


CYCLES = [
    # (sources, the cycle a_cycle must find: empty for none)
    ({"p.a": ("from . import b", False), "p.b": ("from .c import x", False),
      "p.c": ("import p.a", False)}, ["p.a", "p.b", "p.c", "p.a"]),
    ({"p": ("from .a import A", True), "p.a": ("from . import __version__", False)},
     ["p", "p.a", "p"]),
    ({"p.a": ("if True:\n    from . import b", False),
      "p.b": ("class B:\n    from .a import A", False)}, ["p.a", "p.b", "p.a"]),
    ({"p.a": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
              "else:\n    from . import c", False),
      "p.b": ("from . import a", False), "p.c": ("from . import a", False)},
     ["p.a", "p.c", "p.a"]),
    # what runs only later, or never, is no cycle: a lazy import, a TYPE_CHECKING one
    ({"p.a": ("from . import b", False), "p.b": ("def f():\n    from . import a", False)}, []),
    ({"p.a": ("from . import b", False),
      "p.b": ("import typing\nif typing.TYPE_CHECKING:\n    from .a import A", False),
      "p.c": ("async def g():\n    import p.a", False)}, []),
]


@pytest.mark.parametrize(("sources", "cycle"), CYCLES)
def test_a_cycle_is_found_and_only_a_real_one(sources: dict[str, tuple[str, bool]],
                                             cycle: list[str]) -> None:
    assert a_cycle(import_graph(sources)) == cycle
