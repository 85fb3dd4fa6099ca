"""Which process of which machine holds a push, read from /proc (Linux); elsewhere
nothing is known, and liveness falls back to the heartbeat alone.

A machine is its boot id plus the PID namespace (never the hostname: containers share
one, and a PID means something only inside its namespace); a process is its PID plus its
start time (field 22 of /proc/PID/stat), so a PID reused after the holder died does not
pass for it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .lifecycle import Holder

PROC = Path("/proc")


@functools.cache
def machine() -> str | None:
    """This machine as a holder names it, or None where /proc cannot tell."""
    try:
        boot = (PROC / "sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.readlink(PROC / "self/ns/pid")
    except (OSError, UnicodeDecodeError):
        return None
    return f"{boot}/{namespace}" if boot and namespace else None


def start_time(pid: int) -> int | None:
    """The process's start time, or None if it does not exist (a zombie included: it
    has exited, only its parent has not reaped it yet)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def this_process() -> Holder | None:
    where, start = machine(), start_time(os.getpid())
    return None if where is None or start is None else Holder(where, os.getpid(), start)


def alive(holder: Holder | None) -> bool | None:
    """True or False for a holder on this machine; None (unknown) for another machine or
    a record that names no holder."""
    if holder is None or holder.machine != machine():
        return None
    return start_time(holder.pid) == holder.start
