"""The version lifecycle, pure: the states a version can be in, the step each calls for,
and the liveness of a push under way, all decided without I/O (the clock and what is
known of the holder's process are passed in), so the rules are small functions tests
can drive.

A push holds its version through its pending record. It renews the record (a heartbeat,
written If-Match its own ETag) every ``Liveness.interval`` seconds while it runs, however
slow its input. The record is abandoned, and may be taken over by another push or cleared
by ``verify --repair`` / ``prune``, when its last write is older than ``Liveness.bound``
seconds by the store's clock, or at once when it names a process of this machine that no
longer exists. A record that is not pending (a complete one, or a deletion's) is never
abandoned: only the push that created the object writes over it.

The states of a version (``VersionState``) are read off what the store holds for it,
also without I/O (``observe``: the object, the record object, the copy in tycho.json,
and whether the holder of a pending record is alive), and each state names the one step
that settles it (``next_step``): publish, verify --repair, delete and prune carry it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from .layout import DELETING, PENDING  # the record's words, defined beside its format

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


class VersionState(Enum):
    """What the store holds for one version, as a push, a deletion or tycho-station left
    it. A push writes a pending record, then the object, then the full record, then its
    copy in tycho.json; a deletion marks the copy, then the record, then deletes the
    object, the record, and the marks."""

    ABSENT = "absent"  # no object, no record: free to push
    PENDING = "pending"  # a pending record, no object yet, its push alive (uploading)
    ABANDONED = "abandoned"  # a pending record, no object, its push gone
    RECORDING = "recording"  # the object and a pending record, its push alive (recording)
    UPLOADED = "uploaded"  # the object and a pending record, its push gone before recording
    UNCOPIED = "uncopied"  # the object and its full record, no copy in tycho.json
    COMPLETE = "complete"  # the object, its full record and the copy (or the copy alone)
    STATION = "station"  # the object and no record at all: pushed by tycho-station
    ORPHANED = "orphaned"  # a full record and no object: a push racing, or removed by hand
    DELETING = "deleting"  # a deletion started (the copy or the record says so)

    @property
    def trusted(self) -> bool:
        """Whether a pull may fetch the version (its object, checked by what it says)."""
        return self in _TRUSTED


_TRUSTED = frozenset({VersionState.COMPLETE, VersionState.UNCOPIED, VersionState.STATION})


class Step(Enum):
    """The step that settles a state, as publish, verify --repair, delete and prune take
    it; each one leaves the version ABSENT or COMPLETE."""

    NOTHING = "nothing"  # settled, or nothing of ours to settle
    WAIT = "wait"  # a live push holds the version: never cut short
    COMPLETE = "complete"  # record the stored bytes' SHA-256 and copy the record
    CLEAR = "clear"  # remove the pending record of a push that uploaded nothing
    RESTORE_COPY = "restore copy"  # copy the full record into tycho.json
    FINISH_DELETION = "finish deletion"  # delete the object and record, drop the marks


_STEPS = {
    VersionState.ABSENT: Step.NOTHING,
    VersionState.PENDING: Step.WAIT,
    VersionState.ABANDONED: Step.CLEAR,
    VersionState.RECORDING: Step.WAIT,
    VersionState.UPLOADED: Step.COMPLETE,
    VersionState.UNCOPIED: Step.RESTORE_COPY,
    VersionState.COMPLETE: Step.NOTHING,
    VersionState.STATION: Step.NOTHING,
    VersionState.ORPHANED: Step.NOTHING,
    VersionState.DELETING: Step.FINISH_DELETION,
}


def _state(value: object) -> object:
    return value.get("state") if isinstance(value, Mapping) else None


def observe(obj: object | None, record: Mapping[str, Any] | None, copy: object = None, *,
            alive: bool | None = None) -> VersionState:
    """The state of a version from what the store holds: ``obj`` its object (anything
    but None: there), ``record`` its record object (None: none), ``copy`` the record's
    copy in tycho.json (None: none), and ``alive`` whether the push holding a pending
    record is alive (the caller's ``not abandoned(...)``; None, not known, reads as alive:
    a push that cannot be shown gone is never cut short). A deletion marks the copy
    first, so either mark means DELETING, object or not; a copy that says pending (no
    tychoreg writes one) reads as a pending record would. A deletion marks the record
    object before it deletes it, so a pending record beside a deleting copy is a new
    push, begun after the deletion had removed object and record: its own state (a live
    one is waited for, never finished as the deletion over it)."""
    states = (_state(record), _state(copy))
    if _state(record) == PENDING:
        states = (PENDING, None)
    if DELETING in states:
        return VersionState.DELETING
    pending = PENDING in states
    gone = pending and alive is False
    if obj is None:
        if record is None:
            return VersionState.ABSENT
        if _state(record) == PENDING:
            return VersionState.ABANDONED if gone else VersionState.PENDING
        return VersionState.ORPHANED
    if pending:
        return VersionState.UPLOADED if gone else VersionState.RECORDING
    if record is not None and copy is None:
        return VersionState.UNCOPIED
    return VersionState.COMPLETE if record is not None or copy is not None \
        else VersionState.STATION


def next_step(state: VersionState) -> Step:
    """What settles ``state``."""
    return _STEPS[state]
