"""Rich progress bars for a terminal: an overall bar and one per large file."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .tally import LARGE, TITLES, Closing, Tally
from .transfer.sink import TaskProgress
from .units import human_size


class _SpeedColumn(ProgressColumn):
    """Transfer speed in IEC units (rich's own column is decimal)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{human_size(speed)}/s",
                    style="progress.data.speed")


class _RichTask:
    def __init__(self, sink: RichProgress, label: str, total: int | None) -> None:
        self.sink, self.total = sink, total
        self.moved = 0
        self.own: TaskID | None = None
        if total is not None and total >= LARGE and sink.expected_files != 1:
            self.own = sink.progress.add_task(label, total=total, files="")

    def advance(self, nbytes: int) -> None:
        self.moved += nbytes
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
                 clock: Callable[[], float] = time.monotonic, *,
                 summary_last: bool = False) -> None:
        self.closing = Closing(summary_last)
        self.verb = verb
        self.tally = Tally(clock)
        self.expected_files = files
        self.total = 0
        self.unknown = False
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            _SpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=console,
            transient=True,
            get_time=clock,
        )
        title = TITLES.get(verb, verb)
        # hidden until the first transfer begins: no "0/?" while its size is being found
        self.overall = self.progress.add_task(title, total=None, files=self._files_text(),
                                              visible=False)

    def _files_text(self) -> str:
        """``3/10 files``; nothing for a command that moves one file."""
        if self.expected_files == 1:
            return ""
        expected = self.expected_files if self.expected_files is not None else "?"
        return f"{self.tally.files}/{expected} files"

    def begin(self, label: str, total: int | None) -> TaskProgress:
        """The overall bar gets a total only while one file moves: a total that grows as
        files are discovered would claim completion while a large file still moves."""
        if total is None:  # a stream: bytes and speed, no total
            self.unknown = True
        self.total += total or 0
        if self.expected_files == 1 and not self.unknown:
            self.progress.update(self.overall, total=self.total)
        self.progress.update(self.overall, visible=True)
        return _RichTask(self, f"  {label}", total)

    def finished(self, task: _RichTask, ok: bool) -> None:
        if ok:
            self.tally.files += 1
            self.tally.bytes += task.moved
        else:
            self.tally.failed += 1
        self.progress.update(self.overall, files=self._files_text())

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()
        if self.closing.closed(exc, self.tally.files > 0 or self.tally.failed > 0):
            self._sum_up()

    def summarize(self) -> None:
        if self.closing.summarize():
            self._sum_up()

    def _sum_up(self) -> None:
        self.progress.console.print(
            self.tally.summary(self.verb, interrupted=self.closing.interrupted),
            highlight=False)


