"""Liveness of a push under way, decided without I/O (the clock and what is known of the
holder's process are passed in), so the rule is one small function tests can drive.

A push holds its version through its pending record. It renews the record (a heartbeat,
written If-Match its own ETag) every ``Liveness.interval`` seconds while it runs, however
slow its input. The record is abandoned, and may be taken over by another push or cleared
by ``verify --repair`` / ``prune``, when its last write is older than ``Liveness.bound``
seconds by the store's clock, or at once when it names a process of this machine that no
longer exists. A record that is not pending (a complete one, or a deletion's) is never
abandoned: only the push that created the object writes over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

PENDING = "pending"
TAKEOVER_ENV = "TYCHOREG_TAKEOVER_SECONDS"
TAKEOVER_SECONDS = 60.0  # a pending record unrenewed for this long is abandoned
BEATS_PER_BOUND = 6  # heartbeats per bound: one lost or late beat never loses the version


@dataclass(frozen=True)
class Liveness:
    """How long a silent pending record stays alive (``bound``) and how often a push
    renews its own (``interval``). Every client of one registry must use the same bound
    (the default): a smaller one takes over pushes that are alive."""

    bound: float = TAKEOVER_SECONDS

    @property
    def interval(self) -> float:
        return self.bound / BEATS_PER_BOUND

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Liveness:
        """The bound from ``TYCHOREG_TAKEOVER_SECONDS`` (meant for tests), else 60 s;
        a value that is not a positive number is ignored."""
        try:
            bound = float(env.get(TAKEOVER_ENV, ""))
        except ValueError:
            return cls()
        return cls(bound) if bound > 0 else cls()


@dataclass(frozen=True)
class Holder:
    """The process that holds a pending record. ``machine`` is the boot id and the PID
    namespace (so containers sharing a kernel are told apart, and a reboot is a new
    machine); ``start`` is the process's start time (clock ticks after boot), so a
    reused PID is not mistaken for the holder."""

    machine: str
    pid: int
    start: int

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, value: object) -> Holder | None:
        if not isinstance(value, dict):
            return None
        machine, pid, start = value.get("machine"), value.get("pid"), value.get("start")
        if isinstance(machine, str) and isinstance(pid, int) and isinstance(start, int):
            return cls(machine, pid, start)
        return None


def holder_of(record: Mapping[str, Any]) -> Holder | None:
    return Holder.from_json(record.get("holder"))


def written_at(record: Mapping[str, Any]) -> float | None:
    """When the pending record says it was last written (its ``renewed_at``, else its
    ``started_at``), by the pusher's clock: used only where the store tells no time."""
    for key in ("renewed_at", "started_at"):
        try:
            stamp = datetime.fromisoformat(str(record.get(key)))
        except ValueError:
            continue
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    return None


def abandoned(record: Mapping[str, Any], *, now: float, renewed: float | None,
              holder_alive: bool | None, liveness: Liveness) -> bool:
    """Whether a record belongs to a push that is gone: it must be pending, and either
    its holder is known dead (``holder_alive`` False: a process of this machine that no
    longer exists) or it was last written (``renewed``, seconds since the epoch by the
    same clock as ``now``; None: unknown, and a record that cannot show it is alive is
    not) longer ago than the bound."""
    if record.get("state") != PENDING:
        return False
    if holder_alive is False:
        return True
    return renewed is None or now - renewed > liveness.bound
