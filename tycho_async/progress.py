"""Progress on stderr: rich bars on a terminal, a short plain log elsewhere (CI).

The engine only calls ``begin``/``advance``/``end``; everything visible is decided here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import IO, Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .transfer import NoProgress, ProgressSink, TaskProgress

LARGE = 4 * 1024 * 1024  # transfers from this size get a bar of their own


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class _Tally:
    """Counts shared by both renderers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.files = 0
        self.bytes = 0
        self.failed = 0

    def summary(self, verb: str) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.bytes / elapsed / 1e6
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{verb} {self.files} file{'s' if self.files != 1 else ''}, "
                f"{human_size(self.bytes)} in {elapsed:.1f} s ({rate:.1f} MB/s){failed}")


class _PlainTask:
    def __init__(self, sink: PlainProgress, label: str, total: int) -> None:
        self.sink, self.label, self.total = sink, label, total
        self.started = sink.tally.clock()

    def advance(self, nbytes: int) -> None:
        return None

    def end(self, ok: bool) -> None:
        self.sink.finished(self, ok)


class PlainProgress:
    """A line per finished file and a summary: readable in a CI log, never redrawn."""

    def __init__(self, stream: IO[str], verb: str, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.verb = verb
        self.tally = _Tally(clock)

    def begin(self, label: str, total: int) -> TaskProgress:
        return _PlainTask(self, label, total)

    def finished(self, task: _PlainTask, ok: bool) -> None:
        if not ok:
            self.tally.failed += 1
            return
        self.tally.files += 1
        self.tally.bytes += task.total
        elapsed = max(self.tally.clock() - task.started, 1e-9)
        self.stream.write(f"{self.verb} {task.label} ({human_size(task.total)}, "
                          f"{task.total / elapsed / 1e6:.1f} MB/s)\n")
        self.stream.flush()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.tally.files > 1 or self.tally.failed:
            self.stream.write(self.tally.summary(self.verb) + "\n")
            self.stream.flush()


class _RichTask:
    def __init__(self, sink: RichProgress, label: str, total: int) -> None:
        self.sink, self.total = sink, total
        self.own: TaskID | None = None
        if total >= LARGE and sink.expected_files != 1:
            self.own = sink.progress.add_task(label, total=total, files="")

    def advance(self, nbytes: int) -> None:
        self.sink.progress.advance(self.sink.overall, nbytes)
        if self.own is not None:
            self.sink.progress.advance(self.own, nbytes)

    def end(self, ok: bool) -> None:
        if self.own is not None:
            self.sink.progress.remove_task(self.own)
        self.sink.finished(self, ok)


class RichProgress:
    """An overall bar (bytes, speed, ETA, files) and, when several files move, a bar per
    large active transfer."""

    def __init__(self, console: Console, verb: str, files: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.verb = verb
        self.tally = _Tally(clock)
        self.expected_files = files
        self.total = 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=console,
            transient=True,
            get_time=clock,
        )
        title = {"pushed": "pushing", "pulled": "pulling", "verified": "verifying"}.get(verb, verb)
        self.overall = self.progress.add_task(title, total=None, files=self._files_text())

    def _files_text(self) -> str:
        expected = self.expected_files if self.expected_files is not None else "?"
        return f"{self.tally.files}/{expected} files"

    def begin(self, label: str, total: int) -> TaskProgress:
        self.total += total
        self.progress.update(self.overall, total=self.total)
        return _RichTask(self, f"  {label}", total)

    def finished(self, task: _RichTask, ok: bool) -> None:
        if ok:
            self.tally.files += 1
            self.tally.bytes += task.total
        else:
            self.tally.failed += 1
        self.progress.update(self.overall, files=self._files_text())

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()
        if self.tally.files or self.tally.failed:
            self.progress.console.print(self.tally.summary(self.verb), highlight=False)


class Silent(NoProgress):
    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class ProgressDisplay(ProgressSink, AbstractContextManager[Any], Protocol):
    """A sink the CLI opens around a command: it may draw while open and sum up on close."""


def make_progress(mode: bool | None, quiet: bool, verb: str, files: int | None = None,
                  stream: IO[str] | None = None) -> ProgressDisplay:
    """``mode`` None: bars on a terminal, plain lines elsewhere; True/False force it."""
    import sys

    stream = stream or sys.stderr
    if quiet:
        return Silent()
    console = Console(file=stream, stderr=stream is sys.stderr)
    if mode is None:
        mode = console.is_terminal
    if mode:
        return RichProgress(console, verb, files)
    return PlainProgress(stream, verb)
