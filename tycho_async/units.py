"""Sizes as people read them: IEC units (KiB, MiB, MiB/s) in every bar, line and summary."""

from __future__ import annotations


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_rate(nbytes: float, seconds: float) -> str:
    return f"{human_size(nbytes / max(seconds, 1e-9))}/s"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 version``, ``2 versions``, ``1 entry``/``3 entries`` (``many`` when -s is wrong)."""
    return f"{count} {word if count == 1 else many or word + 's'}"
