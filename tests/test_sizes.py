"""Sizes (issue 17, "Done when"): no module of the package over ~600 lines, no class over
~300, no function over ~80, measured as the AST spans them (decorators and docstrings
included), so a split stays split. Each limit is also fed a source past it, so that none
can pass vacuously.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tycho_async"
MODULE_LINES = 600
CLASS_LINES = 300
FUNCTION_LINES = 80


def _span(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return (node.end_lineno or node.lineno) - first + 1


def oversized(source: str, name: str) -> list[str]:
    """What in ``source`` is past its limit, as "name:line kind span"."""
    found = []
    lines = len(source.splitlines())
    if lines > MODULE_LINES:
        found.append(f"{name}:1 module {lines}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and _span(node) > CLASS_LINES:
            found.append(f"{name}:{node.lineno} class {node.name} {_span(node)}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                _span(node) > FUNCTION_LINES:
            found.append(f"{name}:{node.lineno} function {node.name} {_span(node)}")
    return found


def test_no_module_class_or_function_is_past_its_size() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        found += oversized(path.read_text(encoding="utf-8"), str(relative))
    assert found == []


def _body(lines: int) -> str:
    return "".join(f"    x{n} = {n}\n" for n in range(lines))


@pytest.mark.parametrize(("source", "kind"), [
    ("x = 1\n" * (MODULE_LINES + 1), "module"),
    ("class Big:\n" + _body(CLASS_LINES), "class Big"),
    ("def big() -> None:\n" + _body(FUNCTION_LINES), "function big"),
    ("class A:\n    @staticmethod\n    async def big() -> None:\n"  # the decorator counts
     + textwrap.indent(_body(FUNCTION_LINES - 1), "    "), "function big"),
])
def test_each_limit_is_enforced(source: str, kind: str) -> None:
    assert [found.split(" ", 1)[1].rsplit(" ", 1)[0] for found in oversized(source, "m")] \
        == [kind]


def test_a_source_at_its_limits_passes() -> None:
    assert oversized("class Fine:\n" + _body(CLASS_LINES - 1), "m") == []
    assert oversized("def fine() -> None:\n" + _body(FUNCTION_LINES - 1), "m") == []
