"""The version lifecycle: the liveness rule of a push under way (pure: the clock is passed
in), how this machine and its processes are named, the states a crash leaves and the step
that settles each (pure, then tied to what the registry does today on every backend)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tycho_async import processes
from tycho_async.config import load_settings
from tycho_async.errors import StoreError, TychoError
from tycho_async.lifecycle import (
    Holder,
    Liveness,
    Step,
    VersionState,
    abandoned,
    holder_of,
    next_step,
    observe,
    written_at,
)
from tycho_async.registry import Registry as Reg
from tycho_async.storage import open_store
from tycho_async.transfer import Engine

from .faults import FaultyStore
from .support import Registry, remove_object, write_file

LIVE = Liveness(60.0)
PENDING = {"state": "pending", "started_at": "2026-01-01T00:00:00+00:00"}


@given(now=st.floats(0, 1e10), renewed=st.floats(0, 1e10) | st.none(),
       alive=st.sampled_from([True, False, None]),
       record=st.sampled_from([{}, {"sha256": "0" * 64, "size": 1},
                               {"state": "deleting"}, {"state": "other"}]))
def test_a_record_that_is_not_pending_is_never_abandoned(
        now: float, renewed: float | None, alive: bool | None, record: dict[str, str]) -> None:
    assert not abandoned(record, now=now, renewed=renewed, holder_alive=alive,
                         liveness=LIVE)


@given(now=st.floats(0, 1e10), renewed=st.floats(0, 1e10) | st.none())
def test_a_pending_record_whose_holder_is_gone_is_abandoned_at_once(
        now: float, renewed: float | None) -> None:
    assert abandoned(PENDING, now=now, renewed=renewed, holder_alive=False, liveness=LIVE)


@given(quiet=st.floats(-1e6, 1e6), alive=st.sampled_from([True, None]))
def test_otherwise_the_heartbeat_decides(quiet: float, alive: bool | None) -> None:
    now = 2e9
    assert abandoned(PENDING, now=now, renewed=now - quiet, holder_alive=alive,
                     liveness=LIVE) == (quiet > LIVE.bound)
    assert abandoned(PENDING, now=now, renewed=None, holder_alive=alive, liveness=LIVE)


def test_the_bound_and_its_heartbeat() -> None:
    assert Liveness().bound == 60.0 and Liveness().interval == 10.0
    assert Liveness.from_environment({"TYCHOREG_TAKEOVER_SECONDS": "3"}).bound == 3.0
    for bad in ("", "soon", "0", "-5"):
        assert Liveness.from_environment({"TYCHOREG_TAKEOVER_SECONDS": bad}) == Liveness()


def test_a_record_names_when_it_was_written_and_who_holds_it() -> None:
    assert written_at({"started_at": "2026-01-01T00:00:00"}) == 1767225600.0
    assert written_at({**PENDING, "renewed_at": "2026-01-01T00:01:00+00:00"}) == 1767225660.0
    assert written_at({"started_at": "yesterday"}) is None
    holder = Holder("m", 12, 34)
    assert holder_of({"holder": holder.to_json()}) == holder
    assert holder_of({"holder": {"machine": "m", "pid": "12", "start": 34}}) is None
    assert holder_of({}) is None


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    here = processes.this_process()
    assert here is not None and processes.alive(here) is True
    machine = processes.machine()
    assert machine is not None and "pid:[" in machine  # the boot id and the PID namespace
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = processes.start_time(child.pid)
        assert start is not None
        assert processes.alive(Holder(machine, child.pid, start)) is True
        assert processes.alive(Holder(machine, child.pid, start + 1)) is False  # reused
    finally:
        child.kill()
        child.wait()
    assert processes.alive(Holder(machine, child.pid, start)) is False
    assert processes.alive(Holder("another machine", child.pid, start)) is None
    assert processes.alive(None) is None


# -- version states: what a crash leaves, and the step that settles it -----------------------

BOUND = LIVE.bound
PUSH_STEPS = ("reserve", "upload", "record", "copy")
DELETE_STEPS = ("mark copy", "mark record", "delete object", "delete record", "drop marks")
SETTLED = {VersionState.ABSENT, VersionState.COMPLETE}
FULL = {"sha256": "0" * 64, "size": 1, "pushed_at": "2026-01-01T00:00:00+00:00",
        "tool": "tychoreg test", "localname": "pkg.bin"}


@dataclass
class Bucket:
    """What the store holds for one version: its object, its record object, the copy in
    tycho.json; and when the pending record was last written, by the store's clock."""

    obj: bool = False
    record: dict[str, Any] | None = None
    copy: dict[str, Any] | None = None
    written: float = 0.0

    def observe(self, now: float, holder_alive: bool | None) -> VersionState:
        alive = None
        if self.record is not None and self.record.get("state") == "pending":
            alive = not abandoned(self.record, now=now, renewed=self.written,
                                  holder_alive=holder_alive, liveness=LIVE)
        return observe(True if self.obj else None, self.record, self.copy, alive=alive)

    def push(self, steps: int, now: float) -> None:
        """The first ``steps`` steps of a push, as registry.push takes them."""
        for step in PUSH_STEPS[:steps]:
            if step == "reserve":
                self.record, self.written = {"state": "pending", "localname": "pkg.bin"}, now
            elif step == "upload":
                self.obj = True
            elif step == "record":
                self.record = dict(FULL)
            else:
                self.copy = dict(FULL)

    def delete(self, steps: int) -> None:
        """The first ``steps`` steps of a deletion, as registry._delete_versions takes them."""
        old = self.record if self.record is not None and "state" not in self.record else {}
        marked = {**old, "state": "deleting"}
        for step in DELETE_STEPS[:steps]:
            if step == "mark copy":
                self.copy = dict(marked)
            elif step == "mark record":
                self.record = dict(marked) if self.record is not None else None
            elif step == "delete object":
                self.obj = False
            elif step == "delete record":
                self.record = None
            else:
                self.copy = None

    def take(self, step: Step) -> None:
        """A step as verify --repair, prune and delete carry it out."""
        if step is Step.COMPLETE:
            self.record, self.copy = dict(FULL), dict(FULL)
        elif step is Step.CLEAR:
            self.record = None
        elif step is Step.RESTORE_COPY:
            self.copy = self.record
        elif step is Step.FINISH_DELETION:
            self.obj, self.record, self.copy = False, None, None


@pytest.mark.parametrize(("steps", "alive", "state"), [
    (0, False, VersionState.ABSENT), (1, True, VersionState.PENDING),
    (1, False, VersionState.ABANDONED), (2, True, VersionState.RECORDING),
    (2, False, VersionState.UPLOADED), (3, False, VersionState.UNCOPIED),
    (3, True, VersionState.UNCOPIED), (4, False, VersionState.COMPLETE),
])
def test_each_crash_point_of_a_push_is_one_state(steps: int, alive: bool,
                                                  state: VersionState) -> None:
    bucket = Bucket()
    bucket.push(steps, now=0.0)
    assert bucket.observe(1.0, holder_alive=alive) is state


@pytest.mark.parametrize(("steps", "state"), [
    (0, VersionState.COMPLETE), (1, VersionState.DELETING), (2, VersionState.DELETING),
    (3, VersionState.DELETING), (4, VersionState.DELETING), (5, VersionState.ABSENT)])
def test_each_crash_point_of_a_deletion_is_one_state(steps: int, state: VersionState) -> None:
    bucket = Bucket()
    bucket.push(4, now=0.0)
    bucket.delete(steps)
    assert bucket.observe(1.0, holder_alive=None) is state


def test_every_state_has_its_step_and_only_complete_versions_are_trusted() -> None:
    assert {state: next_step(state) for state in VersionState} == {
        VersionState.ABSENT: Step.NOTHING, VersionState.PENDING: Step.WAIT,
        VersionState.ABANDONED: Step.CLEAR, VersionState.RECORDING: Step.WAIT,
        VersionState.UPLOADED: Step.COMPLETE, VersionState.UNCOPIED: Step.RESTORE_COPY,
        VersionState.COMPLETE: Step.NOTHING, VersionState.STATION: Step.NOTHING,
        VersionState.ORPHANED: Step.NOTHING, VersionState.DELETING: Step.FINISH_DELETION}
    assert {s for s in VersionState if s.trusted} == {
        VersionState.COMPLETE, VersionState.UNCOPIED, VersionState.STATION}
    assert observe({"size": 1}, None) is VersionState.STATION  # tycho-station's push
    assert observe(None, FULL) is VersionState.ORPHANED
    assert observe(None, None, {"state": "deleting"}) is VersionState.DELETING
    assert observe(True, None, FULL) is VersionState.COMPLETE  # the copy alone


operations = st.lists(st.one_of(
    st.tuples(st.just("push"), st.integers(0, len(PUSH_STEPS))),
    st.tuples(st.just("delete"), st.integers(0, len(DELETE_STEPS))),
    st.tuples(st.just("settle"), st.just(0))), max_size=12)


@given(ops=operations, waits=st.lists(st.floats(0, 3 * BOUND), min_size=12, max_size=12),
       holder=st.sampled_from([True, False, None]))
@example(ops=[("push", 2), ("delete", 4), ("push", 1)], waits=[0.0] * 12, holder=True)
def test_every_sequence_of_crashes_leaves_a_state_whose_step_settles_it(
        ops: list[tuple[str, int]], waits: list[float], holder: bool | None) -> None:
    """Pushes and deletions cut short at any step, in any order, with the clock moving
    on between them (pushes refused as the registry refuses them): what is left is never
    trusted unless a push recorded it, a live push is only waited for, and the step of
    what is left, once its holder is gone, settles it (ABSENT or COMPLETE): at once, or
    in two steps for a push begun over a deletion's mark that died before uploading."""
    bucket, now = Bucket(), 0.0
    for (op, steps), wait in zip(ops, waits, strict=False):
        now += wait
        state = bucket.observe(now, holder)
        if op == "push" and (state in (VersionState.ABSENT, VersionState.ABANDONED) or
                             (not bucket.obj and bucket.record is None)):
            # (a push looks at the object and the record only: a deletion cut short after
            # it removed both is still DELETING by its mark, and the push goes ahead)
            bucket.push(steps, now)
        elif op == "delete" and (bucket.obj or state is VersionState.DELETING):
            bucket.delete(steps)
        elif op == "settle":
            bucket.take(next_step(state))
        state = bucket.observe(now, holder)
        assert not state.trusted or (bucket.obj and FULL in (bucket.record, bucket.copy))
        if next_step(state) is Step.WAIT:
            assert holder is not False and now - bucket.written <= BOUND
        gone = now + BOUND + 1  # the holder gone silent, or known dead
        settled = copy.deepcopy(bucket)
        # one step settles it; two where a push begun over a deletion's mark died before
        # its upload (its pending record is cleared, then the deletion finished)
        for _ in range(2):
            settled.take(next_step(settled.observe(gone, holder)))
            if settled.observe(gone, holder) in SETTLED:
                break
        assert settled.observe(gone, holder) in SETTLED


# -- the states as the registry treats them today (every backend) ----------------------------

def _holder(alive: bool) -> dict[str, Any]:
    """This process (alive), or this PID with another start time (a holder that died)."""
    here = processes.this_process()
    assert here is not None, "the tests run on Linux, with /proc"
    return {**here.to_json(), "start": here.start + (0 if alive else 1)}


def _crashed(registry: Registry) -> dict[str, tuple[Bucket, bool]]:
    """One package holding a version left at every crash point of a push (its holder
    alive or dead) and of a deletion, a tycho-station version and a complete latest one,
    stored directly; each with its model and whether its holder is alive."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cases: dict[str, tuple[Bucket, bool]] = {"base": (Bucket(), False), "s": (Bucket(), False)}
    cases.update({f"p{n}{'a' if alive else 'd'}": (Bucket(), alive)
                  for n in (1, 2, 3, 4) for alive in (True, False) if n < 3 or not alive})
    cases.update({f"d{n}": (Bucket(), False) for n in (1, 2, 3, 4)})
    meta: dict[str, Any] = {"localname": "pkg.bin", "latest": "base",
                            "tychoreg": {"records": {}}}
    for version, (bucket, alive) in cases.items():
        data = f"bytes of {version}".encode()
        full = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "pushed_at": stamp, "tool": "tychoreg test", "localname": "pkg.bin"}
        if version == "s":
            bucket.obj = True
        else:
            bucket.push(int(version[1]) if version[0] == "p" else 4, now=0.0)
            bucket.delete(int(version[1]) if version[0] == "d" else 0)
        for part in ("record", "copy"):
            value = getattr(bucket, part)
            if value is not None:
                pending = value.get("state") == "pending"
                setattr(bucket, part, {**value, "started_at": stamp, "holder": _holder(alive)}
                        if pending else {**value, **full})  # the real digest of its bytes
        if bucket.obj:
            registry.put(f"pkg/tycho_{version}.pkg", data)
        if bucket.record is not None:
            registry.put(f"pkg/tycho_{version}.meta.json", json.dumps(bucket.record).encode())
        if bucket.copy is not None:
            meta["tychoreg"]["records"][version] = bucket.copy
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    return cases


def _stored(registry: Registry, version: str, alive: bool) -> VersionState:
    """The state of a version as the bucket holds it now."""
    record = registry.get(f"pkg/tycho_{version}.meta.json")
    meta = registry.get("pkg/tycho.json")
    copies = json.loads(meta).get("tychoreg", {}).get("records", {}) if meta else {}
    copy = copies.get(version)
    return observe(registry.get(f"pkg/tycho_{version}.pkg"),
                   None if record is None else json.loads(record), copy, alive=alive)


def _after_step(bucket: Bucket, alive: bool) -> VersionState:
    settled = copy.deepcopy(bucket)
    settled.take(next_step(settled.observe(1.0, alive)))
    return settled.observe(1.0, alive)


def test_exists_and_prune_do_what_the_state_says(registry: Registry) -> None:
    """exists answers yes exactly for the trusted states; prune finishes exactly the
    states whose step does something (a live push is waited for), and leaves each one
    as that step leaves it."""
    cases = _crashed(registry)
    states = {v: b.observe(1.0, alive) for v, (b, alive) in cases.items()}
    assert set(states.values()) == set(VersionState) - {VersionState.ABSENT,
                                                        VersionState.ORPHANED}
    for version, state in states.items():
        exists = registry.cli("exists", "pkg", version)
        assert exists.exit_code == (0 if state.trusted else 1), (version, exists.stderr)
    dry = registry.cli("prune", "pkg", "--keep", "100", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    acted = {v for v, s in states.items() if next_step(s) not in (Step.NOTHING, Step.WAIT)}
    assert set(json.loads(dry.stdout)["finished"]) == acted
    done = registry.cli("prune", "pkg", "--keep", "100")
    assert done.exit_code == 0, done.stderr
    for version, (bucket, alive) in cases.items():
        assert _stored(registry, version, alive) is _after_step(bucket, alive), version


def test_repair_and_delete_take_the_step_the_state_names(registry: Registry) -> None:
    """verify --repair completes, clears or restores the copy as the step says, and
    refuses while a push is alive; delete finishes a deletion cut short."""
    cases = _crashed(registry)
    outcomes = {Step.COMPLETE: (0, "completed"), Step.CLEAR: (1, "cleared"),
                Step.RESTORE_COPY: (0, "restored"), Step.WAIT: (1, "being pushed"),
                Step.NOTHING: (0, "")}
    for version, (bucket, alive) in cases.items():
        step = next_step(bucket.observe(1.0, alive))
        if step is Step.FINISH_DELETION:
            result = registry.cli("delete", "pkg", version)
            assert result.exit_code == 0, (version, result.stderr)
        else:
            result = registry.cli("verify", "pkg", "--version", version, "--repair")
            code, words = outcomes[step]
            assert result.exit_code == code, (version, result.stdout, result.stderr)
            assert words in result.stdout + result.stderr, version
        assert _stored(registry, version, alive) is _after_step(bucket, alive), version


def _alive(registry: Registry, version: str) -> bool | None:
    data = registry.get(f"pkg/tycho_{version}.meta.json")
    return None if data is None else processes.alive(holder_of(json.loads(data)))


def test_a_real_push_failing_at_each_write_leaves_the_state_of_that_crash_point(
        registry: Registry) -> None:
    """A push (through the registry, on a store that fails its k-th write: the pending
    record, the object, the full record, tycho.json) leaves the state of that crash
    point; its holder (this process) being alive, what it left is waited for."""
    write_file(Path("f.bin"), 3000)
    seen: list[VersionState] = []

    async def push(version: str, fail_at: int) -> None:
        settings = load_settings(str(registry.workdir / ".tychoreg.json"))
        async with open_store(settings.store) as store:
            faulty = FaultyStore(store)
            faulty.inject("put_bytes", *[None] * (fail_at - 1), StoreError("cut here"))
            with contextlib.suppress(TychoError):
                await Reg(Engine(faulty, settings.transfer), settings.outdir).push(
                    "pkg", version, Path("f.bin"), promote=False)

    for fail_at in range(1, 10):
        version = f"k{fail_at}"
        anyio.run(push, version, fail_at)
        seen.append(_stored(registry, version, _alive(registry, version) is not False))
        if seen[-1] is VersionState.COMPLETE:
            break
    # the pending record's write and the object's fail: the push removes its record
    assert seen == [VersionState.ABSENT, VersionState.ABSENT, VersionState.RECORDING,
                    VersionState.UNCOPIED, VersionState.COMPLETE]
    assert [next_step(s) for s in seen] == [Step.NOTHING, Step.NOTHING, Step.WAIT,
                                            Step.RESTORE_COPY, Step.NOTHING]


@pytest.mark.parametrize(("method", "fail_at", "state"), [
    ("put_bytes", 1, VersionState.COMPLETE),  # marking tycho.json: nothing changed
    ("put_bytes", 2, VersionState.DELETING),  # marking the record object
    ("delete", 1, VersionState.DELETING),  # deleting the object
    ("delete", 2, VersionState.DELETING),  # deleting the record object
    ("put_bytes", 3, VersionState.DELETING),  # dropping the mark from tycho.json
    ("put_bytes", 4, VersionState.ABSENT),  # (no fourth write: the deletion completes)
])
def test_a_real_deletion_failing_at_each_step_leaves_the_state_of_that_crash_point(
        registry: Registry, method: str, fail_at: int, state: VersionState) -> None:
    """A deletion (through the registry, on a store that fails one of its writes) leaves
    the state of that crash point; delete run again takes its step and settles it."""
    write_file(Path("f.bin"), 3000)
    for version in ("keep", "1"):
        pushed = registry.cli("push", "pkg", version, "f.bin")
        assert pushed.exit_code == 0, pushed.stderr

    async def delete() -> None:
        settings = load_settings(str(registry.workdir / ".tychoreg.json"))
        async with open_store(settings.store) as store:
            faulty = FaultyStore(store)
            faulty.inject(method, *[None] * (fail_at - 1), StoreError("cut here"))
            with contextlib.suppress(TychoError):
                await Reg(Engine(faulty, settings.transfer), settings.outdir).delete(
                    "pkg", ["1"])

    anyio.run(delete)
    assert _stored(registry, "1", True) is state
    if next_step(state) is Step.FINISH_DELETION:
        again = registry.cli("delete", "pkg", "1")
        assert again.exit_code == 0, again.stderr
    assert _stored(registry, "1", True) in SETTLED
    assert _stored(registry, "keep", True) is VersionState.COMPLETE


@pytest.mark.parametrize("alive", [True, False])
def test_a_pending_record_beside_a_deletion_mark_is_a_new_push(alive: bool) -> None:
    """A deletion marks the record object before deleting it, so a pending record beside
    a deleting copy belongs to a push begun after the deletion removed object and record:
    its own state, waited for while it lives, never finished as the deletion."""
    mark = {"state": "deleting", "deleting_since": "2026-01-01T00:00:00+00:00"}
    pending = {"state": "pending", "started_at": "2026-01-01T00:00:00+00:00"}
    state = observe(None, pending, mark, alive=alive)
    assert state is (VersionState.PENDING if alive else VersionState.ABANDONED)
    assert next_step(state) is (Step.WAIT if alive else Step.CLEAR)
    assert observe(b"", pending, mark, alive=alive) is \
        (VersionState.RECORDING if alive else VersionState.UPLOADED)


def test_prune_and_delete_wait_for_a_push_begun_after_a_deletion_cut_short(
        registry: Registry) -> None:
    """A deletion cut short after it removed the object and the record leaves only its
    mark in tycho.json; a new push of that version then holds it with a pending record.
    prune leaves that live push alone, and delete (of the version, or --all) refuses
    while it runs: neither finishes the deletion over it."""
    write_file(Path("f.bin"), 100)
    for version in ("1.0", "2.0"):
        result = registry.cli("push", "pkg", version, "f.bin", "--promote-latest")
        assert result.exit_code == 0, result.output
    meta = registry.meta("pkg")
    meta["tychoreg"]["records"]["1.0"] = {
        **meta["tychoreg"]["records"]["1.0"], "state": "deleting",
        "deleting_since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deleted_by": "tychoreg test"}
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    remove_object(registry, "pkg/tycho_1.0.pkg")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    pending = json.dumps({"state": "pending", "tool": "tychoreg test", "started_at": stamp,
                          "localname": "f.bin", "push_id": "live",
                          "holder": _holder(True)}).encode()
    registry.put("pkg/tycho_1.0.meta.json", pending)
    pruned = registry.cli("prune", "pkg", "--keep", "100", "--json")
    assert pruned.exit_code == 0, pruned.stderr
    assert json.loads(pruned.stdout)["finished"] == []
    for args in (("delete", "pkg", "1.0"), ("delete", "pkg", "--all")):
        refused = registry.cli(*args)
        assert refused.exit_code == 1, (args, refused.output)
        assert "being pushed" in refused.stderr, args
    assert registry.get("pkg/tycho_1.0.meta.json") == pending
    assert registry.get("pkg/tycho_2.0.pkg") is not None


def test_a_copy_that_says_pending_is_refused_as_cut_short_and_left_by_prune(
        registry: Registry) -> None:
    """No tychoreg writes a pending copy into tycho.json; one found there (beside a
    complete record object) reads as a push not recorded yet: not trusted, refused by
    ``verify --repair`` as cut short (exit 3), and left alone by prune, as before."""
    write_file(Path("f.bin"), 100)
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    meta = registry.meta("pkg")
    meta["tychoreg"]["records"]["1.0"] = {"state": "pending", "started_at": "x"}
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    assert observe(b"", {"sha256": "0" * 64, "size": 100},
                   meta["tychoreg"]["records"]["1.0"]) is VersionState.RECORDING
    assert registry.cli("exists", "pkg", "1.0").exit_code == 1
    repaired = registry.cli("verify", "pkg", "--version", "1.0", "--repair")
    assert repaired.exit_code == 3 and "cut short" in repaired.stderr, repaired.output
    pruned = registry.cli("prune", "pkg", "--keep", "5", "--json")
    assert pruned.exit_code == 0 and json.loads(pruned.stdout)["finished"] == []
    assert registry.meta("pkg") == meta
