"""What both progress renderers share (the plain lines of ``progress.py``, the bars of
``bars.py``): the counts, when to sum up, which transfers get a bar of their own, the
titles of the verbs. Here so that bars imports nothing of progress, which loads bars
only on a terminal: the two do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import Interrupted
from .units import human_rate, human_size, plural

LARGE = 4 * 1024 * 1024  # transfers from this size get a bar of their own
TITLES = {"pushed": "pushing", "pulled": "pulling", "verified": "verifying"}


class Tally:
    """Counts shared by both renderers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.files = 0
        self.bytes = 0
        self.failed = 0
        self.moved = 0  # bytes so far, finished files or not
        self.total = 0  # bytes of every file begun

    def summary(self, verb: str, *, interrupted: bool = False) -> str:
        """What moved; a signal's cut says so (what it cut short did not "fail")."""
        elapsed = self.clock() - self.started
        failed = f", {self.failed} failed" if self.failed and not interrupted else ""
        return (f"{'interrupted: ' if interrupted else ''}{verb} "
                f"{plural(self.files, 'file')}, {human_size(self.bytes)} in {elapsed:.1f} s "
                f"({human_rate(self.bytes, elapsed)}){failed}")


class Closing:
    """When a display sums up: on closing, or (``summary_last``) only once the command
    has printed its results (``summarize``), so a log reads items, then the summary."""

    def __init__(self, summary_last: bool) -> None:
        self.summary_last = summary_last
        self.interrupted = False
        self.pending = False

    def closed(self, exc: BaseException | None, due: bool) -> bool:
        """Whether to print the summary now; remembers a deferred one."""
        self.interrupted = isinstance(exc, (Interrupted, KeyboardInterrupt))
        if self.summary_last and exc is None:
            self.pending = due
            return False
        return due

    def summarize(self) -> bool:
        due, self.pending = self.pending, False
        return due
