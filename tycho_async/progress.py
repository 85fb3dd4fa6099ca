"""Progress on stderr: rich bars on a terminal (``bars.py``, imported only then), a short
plain log elsewhere (CI).

The engine only calls ``begin``/``advance``/``end``; everything visible is decided here
(and in ``tally.py``, what the bars share).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import IO, Any, Protocol

from .tally import TITLES, Closing, Tally
from .transfer.sink import NoProgress, ProgressSink, TaskProgress
from .units import human_size

FIRST_LINE = 10.0  # plain mode: a transfer that has run this long prints a line ...
EVERY = 10.0  # ... and then at most one this often


class _PlainTask:
    def __init__(self, sink: PlainProgress, total: int | None) -> None:
        self.sink, self.total = sink, total
        self.moved = 0

    def advance(self, nbytes: int) -> None:
        self.moved += nbytes
        self.sink.advance(nbytes)

    def end(self, ok: bool) -> None:
        self.sink.finished(self, ok)


class PlainProgress:
    """For logs (CI): nothing for a short transfer; one line once a transfer has run for
    10 s, then at most one every 10 s (bytes, percent, rate, ETA); a summary when
    several files moved. Never redrawn, never a line per file (stdout lists them)."""

    def __init__(self, stream: IO[str], verb: str, clock: Callable[[], float] = time.monotonic,
                 files: int | None = None, summary_last: bool = False) -> None:
        self.closing = Closing(summary_last)
        self.stream = stream
        self.verb = verb
        self.tally = Tally(clock)
        self.expected_files = files
        self.begun = 0
        self.unknown = False  # a stream of unknown length is under way: no percent, no ETA
        self.next_line = self.tally.started + FIRST_LINE

    def begin(self, label: str, total: int | None) -> TaskProgress:
        self.begun += 1
        self.unknown |= total is None
        self.tally.total += total or 0
        return _PlainTask(self, total)

    def advance(self, nbytes: int) -> None:
        self.tally.moved += nbytes
        now = self.tally.clock()
        if now >= self.next_line:
            self.next_line = now + EVERY
            self._line(now)

    def _line(self, now: float) -> None:
        tally = self.tally
        elapsed = now - tally.started
        rate = tally.moved / max(elapsed, 1e-9)
        text = f"{TITLES.get(self.verb, self.verb)}: {human_size(tally.moved)}"
        if self.expected_files in (None, self.begun) and not self.unknown:  # a true total
            percent = 100 * tally.moved / tally.total if tally.total else 100.0
            eta = (tally.total - tally.moved) / rate if rate else 0.0
            text += (f" of {human_size(tally.total)} ({percent:.0f}%), "
                     f"{human_size(rate)}/s, ETA {_clock(eta)}")
        else:
            text += f", {human_size(rate)}/s"
        if self.expected_files and self.expected_files > 1:
            text += f", {tally.files}/{self.expected_files} files"
        self._write(text)

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def finished(self, task: _PlainTask, ok: bool) -> None:
        if not ok:
            self.tally.failed += 1
            return
        self.tally.files += 1
        self.tally.bytes += task.moved

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.closing.closed(exc, self.tally.files > 1 or self.tally.failed > 0):
            self._sum_up()

    def summarize(self) -> None:
        if self.closing.summarize():
            self._sum_up()

    def _sum_up(self) -> None:
        self._write(self.tally.summary(self.verb, interrupted=self.closing.interrupted))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Silent(NoProgress):
    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def summarize(self) -> None:
        return None


class ProgressDisplay(ProgressSink, AbstractContextManager[Any], Protocol):
    """A sink the CLI opens around a command: it may draw while open and sum up on close
    (or, opened with ``summary_last``, when ``summarize`` is called)."""

    def summarize(self) -> None: ...


def make_progress(mode: bool | None, quiet: bool, verb: str, files: int | None = None,
                  stream: IO[str] | None = None, *, summary_last: bool = False
                  ) -> ProgressDisplay:
    """``mode`` None: bars on a terminal, plain lines elsewhere; True forces bars, drawn
    even into a pipe or file (``--progress 2>log``); False the plain lines."""
    import sys

    stream = stream or sys.stderr
    if quiet:
        return Silent()
    if mode or (mode is None and stream.isatty()):
        from rich.console import Console

        from .bars import RichProgress

        return RichProgress(Console(file=stream, stderr=stream is sys.stderr,
                                    force_terminal=True if mode else None),
                            verb, files, summary_last=summary_last)
    return PlainProgress(stream, verb, files=files, summary_last=summary_last)
