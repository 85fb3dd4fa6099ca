"""The one retry policy (``tycho_async/transfer/retry.py``): the waits it decides, and that
the engine's requests and the registry's waits go through it (an injected sleep sees every
wait, none is spent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tycho_async.errors import StoreError
from tycho_async.storage import LocalOptions, open_store
from tycho_async.transfer import (
    CONFLICT,
    SETTLE,
    Backoff,
    Engine,
    RetryPolicy,
    TransferSettings,
)

from .faults import FaultyStore
from .support import stalled_push


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@given(base=st.floats(0.001, 10), cap=st.floats(0.001, 60), attempt=st.integers(0, 200),
       fraction=st.floats(0, 1))
def test_a_wait_stays_below_its_limit_and_the_limit_doubles_to_the_cap(
        base: float, cap: float, attempt: int, fraction: float) -> None:
    backoff = Backoff(base, cap)
    limit = backoff.limit(attempt)
    assert limit == min(cap, base * 2 ** min(attempt, 64))
    assert 0 <= backoff.delay(attempt, lambda low, high: low + fraction * (high - low)) <= limit
    assert Backoff(base, cap, jitter=False).delay(attempt) == limit  # no jitter: exactly it


def test_the_three_kinds_of_wait() -> None:
    policy = RetryPolicy(TransferSettings(max_attempts=7, backoff_base=0.2, backoff_max=5.0))
    assert policy.attempts == 7
    assert [policy.request.limit(n) for n in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert [CONFLICT.limit(n) for n in range(7)] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5]
    assert [SETTLE.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert policy.conflict is CONFLICT and policy.settle is SETTLE


@pytest.mark.anyio
async def test_the_engine_retries_a_transient_failure_as_the_policy_says(tmp_path: Path) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    settings = TransferSettings(max_attempts=4, backoff_base=0.5, backoff_max=1.5)
    policy = RetryPolicy(settings, sleep=sleep, draw=lambda low, high: high)  # the longest
    async with open_store(LocalOptions(tmp_path / "registry")) as inner:
        store = FaultyStore(inner)
        engine = Engine(store, settings, retry=policy)
        await engine.put_bytes("k", b"bytes")
        store.inject("get_bytes", StoreError("reset", transient=True),
                     StoreError("503", transient=True))
        assert (await engine.get_bytes("k"))[0] == b"bytes"
        assert slept == [0.5, 1.0] and store.calls["get_bytes"] == 3
        assert engine.stats.retries == 2

        slept.clear()
        store.inject("get_bytes", *[StoreError("reset", transient=True)] * 4)
        with pytest.raises(StoreError, match="reset"):
            await engine.get_bytes("k")
        assert slept == [0.5, 1.0, 1.5]  # 4 attempts, 3 waits, capped

        slept.clear()
        store.inject("get_bytes", StoreError("denied"))  # not transient: no retry
        with pytest.raises(StoreError, match="denied"):
            await engine.get_bytes("k")
        assert slept == []


@pytest.mark.anyio
async def test_waiting_for_a_rival_push_polls_as_the_policy_says_and_gives_up_in_time(
        tmp_path: Path) -> None:
    """A push --skip-identical of a version another push is still publishing (its input
    stalls: a pipe nobody writes to) waits for it at SETTLE's pace, on the policy's clock,
    and gives up after SETTLE_SECONDS: here without spending them, as the clock jumps
    100 s a look."""
    import anyio

    from tycho_async.errors import AlreadyExists
    from tycho_async.registry import Registry
    from tycho_async.registry.skips import SETTLE_SECONDS

    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 4000)
    waited: list[float] = []
    ticks = iter(range(0, 100_000, 100))

    async def no_sleep(seconds: float) -> None:
        waited.append(seconds)

    async with open_store(LocalOptions(tmp_path / "registry")) as store:
        rival = Registry(Engine(store, TransferSettings()), tmp_path / "out")
        patient = Registry(Engine(store, TransferSettings(), retry=RetryPolicy(
            TransferSettings(), sleep=no_sleep, clock=lambda: float(next(ticks)))),
            tmp_path / "out")
        async with stalled_push(rival, "pkg", "1", b"x" * 1000, localname="f.bin") as pipe:
            record = tmp_path / "registry" / "pkg" / "tycho_1.meta.json"
            with anyio.fail_after(20):
                for _ in range(2000):  # until the rival's pending record is written
                    if record.exists():
                        break
                    await anyio.sleep(0.01)
                with pytest.raises(AlreadyExists, match=f"still after {SETTLE_SECONDS} s"):
                    await patient.push("pkg", "1", source, promote=False, skip_identical=True)
            pipe.cancel()  # the rival's blocked read ends with the pipe; it sees the cancel
    assert waited == [SETTLE.delay(n) for n in range(len(waited))]
    assert len(waited) == SETTLE_SECONDS // 100  # looks at 100, 200, 300 s; gives up at 400
