"""The progress protocols the engine reports through (``begin``/``advance``/``end``), and
the sink that shows nothing. Their own module, so a display (``progress.py``, ``bars.py``)
implements them without importing the engine, and the engine never prints.
"""

from __future__ import annotations

from typing import Protocol


class TaskProgress(Protocol):
    def advance(self, nbytes: int) -> None:
        """Bytes moved (kept: a retry resumes after them)."""

    def end(self, ok: bool) -> None: ...


class ProgressSink(Protocol):
    def begin(self, label: str, total: int | None) -> TaskProgress:
        """A transfer of ``total`` bytes starts (None: a stream of unknown length)."""


class NoTask:
    """A transfer nobody watches (also a download's task before it begins)."""

    def advance(self, nbytes: int) -> None:
        return None

    def end(self, ok: bool) -> None:
        return None


class NoProgress:
    def begin(self, label: str, total: int | None) -> TaskProgress:
        return NoTask()
