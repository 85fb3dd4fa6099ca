"""Names loaded on first use (PEP 562), so that importing a package stays cheap:
``tychoreg --help`` must not load the engine or the S3 stack."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.where[name]`` when ``name`` is
    first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = f"{package}.{where[name]}"
        __import__(module)  # the import statement's path, which -X importtime traces
        return getattr(sys.modules[module], name)

    return __getattr__
