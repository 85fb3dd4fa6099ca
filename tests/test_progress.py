"""Progress as a user sees it (``progress.py``, ``bars.py``): plain lines at
a steady pace, and an overall bar that never claims completion early."""

from __future__ import annotations

import os

from .support import MiB


def test_plain_progress_prints_a_line_after_10_s_then_every_10_s() -> None:
    import io

    from tycho_async.progress import PlainProgress

    now = [0.0]
    stream = io.StringIO()
    with PlainProgress(stream, "pulled", clock=lambda: now[0], files=1) as sink:
        task = sink.begin("pkg 1.0", 100 * MiB)
        for second in range(1, 31):
            now[0] = float(second)
            task.advance(2 * MiB)
        task.end(True)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "pulling: 20.0 MiB of 100.0 MiB (20%), 2.0 MiB/s, ETA 0:00:40",
        "pulling: 40.0 MiB of 100.0 MiB (40%), 2.0 MiB/s, ETA 0:00:30",
        "pulling: 60.0 MiB of 100.0 MiB (60%), 2.0 MiB/s, ETA 0:00:20",
    ]


def test_the_overall_bar_of_a_pull_list_never_claims_completion_early() -> None:
    from rich.console import Console

    from tycho_async.bars import RichProgress

    progress = RichProgress(Console(file=open(os.devnull, "w")), "pulled", files=3)  # noqa: SIM115
    small = progress.begin("a", 1000)
    small.advance(1000)
    small.end(True)
    big = progress.begin("b", 100 * MiB)
    big.advance(MiB)
    task = progress.progress.tasks[0]
    assert task.total is None and not task.finished
    big.end(True)
