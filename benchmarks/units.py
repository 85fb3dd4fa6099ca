"""Sizes and durations as the benchmark reads and prints them.

Sizes are parsed exactly as tychoreg parses them (``tycho_async.config.parse_size``): a bare
number is bytes, ``k``/``m``/``g`` with or without ``iB`` are powers of 1024.
"""

from __future__ import annotations

from tycho_async.config import parse_size as _product_parse_size

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def parse_size(text: str) -> int:
    """``262144``, ``256KiB``, ``256MiB``, ``1GiB``, ``16k`` -> bytes (a bare number is bytes,
    as for tychoreg's own ``--part-size``); ValueError for anything else, or for 0."""
    try:
        size = _product_parse_size(text, "size")
    except Exception as exc:  # the product's ConfigError: one message, no traceback
        raise ValueError(str(exc)) from None
    if size < 1:
        raise ValueError(f"size must be at least 1 byte, not {text!r}")
    return size


def fmt_size(size: int) -> str:
    """The largest IEC unit that divides ``size`` exactly: ``256 MiB``, ``16 KiB``, ``1000 B``."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def fmt_count(count: int) -> str:
    """``10,000``: thousands separated, as the issue writes list lengths."""
    return f"{count:,}"


def parse_latencies(text: str) -> tuple[int, ...]:
    """``0,20`` -> (0, 20): sorted distinct whole milliseconds, 0 or more."""
    problem = f"expected whole milliseconds such as 0,20, not {text!r}"
    try:
        found = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(problem) from None
    if not found or found[0] < 0:
        raise ValueError(problem)
    return found


def parse_counts(text: str) -> tuple[int, ...]:
    """``100,1000,10000`` (``_`` allowed as in ``10_000``) -> sorted distinct positive ints."""
    problem = f"expected positive whole numbers separated by commas, not {text!r}"
    try:
        counts = {int(part.strip().replace("_", "")) for part in text.split(",")
                  if part.strip()}
    except ValueError:
        raise ValueError(problem) from None
    if not counts or min(counts) < 1:
        raise ValueError(problem)
    return tuple(sorted(counts))


def parse_count(text: str) -> int:
    """``20000`` or ``20_000`` -> 20000: one positive whole number."""
    try:
        count = int(text.strip().replace("_", ""))
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"expected a positive whole number, not {text!r}")
    return count
