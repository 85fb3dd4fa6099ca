"""The liveness rule of a push under way (pure: the clock is passed in) and how this
machine and its processes are named."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from tycho_async import processes
from tycho_async.lifecycle import Holder, Liveness, abandoned, holder_of, written_at

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
