"""The layering the design fixes, checked over the source: storage at the bottom (it
imports nothing of transfer, the registry or the CLI), and ``tychoreg --help`` loading
neither the engine nor any S3 library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tycho_async"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, resolved to tycho_async.* names where relative."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # a module and an __init__ alike: the folder is the package
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
    return found


def test_storage_imports_nothing_above_it() -> None:
    above = ("tycho_async.transfer", "tycho_async.registry", "tycho_async.cli",
             "tycho_async.progress", "tycho_async.bars")
    for path in sorted((PACKAGE / "storage").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(above)}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_help_loads_no_engine_and_no_s3_library() -> None:
    code = ("import sys\nfrom tycho_async.cli import app\n"
            "print(','.join(m for m in ('tycho_async.transfer.engine', 'aiobotocore', "
            "'botocore', 'aiohttp', 'rich.progress') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == ""
