"""What a command shows: lines on standard output (a closed one ends the command with
exit 141), messages on standard error (which never aborts work), errors as messages and
exit codes, tables and JSON documents."""

import sys
from collections.abc import Sequence
from typing import Any

import typer

from ..errors import OutputClosed, PartialFailure, TychoError


def to_devnull(stream: Any) -> None:
    """Point a closed stream's descriptor at /dev/null, so that what is still buffered
    (and Python's flush at exit) goes nowhere instead of failing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class SafeStream:
    """Standard error that never aborts work: progress and logs written to a closed
    terminal or pipe (SSH dropped, ``2>&1 | head``) are dropped."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _broken(self) -> None:
        to_devnull(self._stream)

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):
            self._broken()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._broken()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def out(text: str) -> None:
    """Write to standard output; a closed one (``tychoreg list | head``) ends the command
    quietly with exit 141, with no process-wide SIGPIPE (that would also kill uploads
    whose server resets a socket)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError) as exc:
        to_devnull(sys.stdout)
        raise OutputClosed("standard output was closed") from exc


def say(message: str) -> None:
    from ..logs import redact

    SafeStream(sys.stderr).write(f"tychoreg: {redact(message)}\n")


def fail(exc: TychoError) -> typer.Exit:
    if isinstance(exc, OutputClosed):
        to_devnull(sys.stdout)
        return typer.Exit(exc.exit_code)
    if isinstance(exc, PartialFailure):
        for item, err in exc.failures:
            say(f"{item}: {err.message}")
    say(exc.message)
    return typer.Exit(exc.exit_code)


def echo_json(data: object) -> None:
    import json  # not loaded by --help

    out(json.dumps(data, indent=2))


def reports() -> Any:
    from .. import report

    return report


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table on a terminal; tab-separated lines for scripts."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, box=None, highlight=False)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    for row in rows:
        out("\t".join(row).rstrip())



def signature_lines(signatures: Sequence[Any]) -> list[str]:
    """One line per signature of a version (results.SignatureInfo), as verify and show
    print them: who it says signed, its key, and whether it counts."""
    lines = []
    for sig in signatures:
        who = f"signature by {sig.principal_hint or '(no hint)'}"
        key = f" ({sig.fingerprint})" if sig.fingerprint else ""
        if not sig.valid:
            lines.append(f"{who}{key}: INVALID: {sig.problem}")
        elif sig.principal:
            lines.append(f"{who}{key}: valid, allowed as {sig.principal}")
        elif sig.problem:
            lines.append(f"{who}{key}: valid, but not allowed: {sig.problem}")
        else:
            lines.append(f"{who}{key}: valid")
    return lines
