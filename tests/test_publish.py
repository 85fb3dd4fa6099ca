"""Publishing (init, push, promote), on every backend: racing pushers of one version, live
pushes kept alive by their heartbeat, dead ones taken over, signals while a push uploads
or records, tycho.json that keeps changing, and --skip-identical / --skip-existing."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from boto3.s3.transfer import TransferConfig

from tycho_async.cli import app
from tycho_async.config import load_settings
from tycho_async.errors import AlreadyExists, PreconditionFailed, StoreError, TransferError
from tycho_async.lifecycle import Liveness
from tycho_async.registry import Registry as Reg
from tycho_async.results import PushResult
from tycho_async.storage import ObjectInfo, Store, open_store
from tycho_async.transfer import Engine

from .faults import FaultyStore
from .support import (
    CREDS,
    OLD,
    REGION,
    SMALL,
    TYCHOREG,
    Registry,
    _env,
    _pending,
    _pushed,
    _wait_for,
    dead_holder,
    make_bucket,
    make_tree,
    ok,
    opened,
    put_station,
    raw_client,
    s3_client,
    s3_head,
    stalled_push,
    write_file,
)

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GatedRecordReads(FaultyStore):
    """A store whose reads of record objects wait until ``opened`` is set: a pusher
    that sees "no object" and then reads the record late, after a rival finished."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.opened = anyio.Event()
        self.waiting = anyio.Event()

    async def __aenter__(self) -> GatedRecordReads:
        return self

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        if key.endswith(".meta.json") and not self.opened.is_set():
            self.waiting.set()
            await self.opened.wait()
        return await super().get_bytes(key)


def assert_published(registry: Registry, package: str, version: str) -> dict[str, Any]:
    """The version is complete: its record is full and names the object's SHA-256."""
    stored = registry.get(f"{package}/tycho_{version}.pkg")
    assert stored is not None
    record = json.loads(registry.get(f"{package}/tycho_{version}.meta.json") or b"")
    assert "state" not in record, record
    assert record["sha256"] == hashlib.sha256(stored).hexdigest()
    assert registry.meta(package)["tychoreg"]["records"][version] == record
    return dict(record)


@pytest.mark.anyio
async def test_a_loser_reading_the_winners_complete_record_late_never_replaces_it(
        race_registry: Registry, tmp_path: Path) -> None:
    """The loser's HEAD finds no object; its read of the record is held until the winner
    has published: it then sees a complete record without a pending age."""
    registry = race_registry
    write_file(tmp_path / "win.bin", 5000, seed=1)
    write_file(tmp_path / "lose.bin", 5000, seed=2)
    settings = load_settings()
    async with open_store(settings.store) as winner_store, \
            open_store(settings.store) as loser_store:
        gated = GatedRecordReads(loser_store)
        winner = Reg(Engine(winner_store, settings.transfer), tmp_path / "out")
        loser = Reg(Engine(gated, settings.transfer), tmp_path / "out")
        outcome: list[object] = []

        async def lose() -> None:
            try:
                outcome.append(await loser.push("pkg", "1", tmp_path / "lose.bin",
                                                promote=False))
            except AlreadyExists as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(lose)
            await gated.waiting.wait()
            await winner.push("pkg", "1", tmp_path / "win.bin", promote=False)
            gated.opened.set()
        assert await winner.exists("pkg", "1")
    assert isinstance(outcome[0], AlreadyExists), outcome
    assert "already exists" in str(outcome[0])
    assert registry.get("pkg/tycho_1.pkg") == (tmp_path / "win.bin").read_bytes()
    assert_published(registry, "pkg", "1")


def wait_until(check: Callable[[], bool], what: str, tries: int = 300) -> None:
    """Poll ``check`` (bounded: ``tries`` x 0.1 s)."""
    for _ in range(tries):
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_a_push_killed_mid_upload_is_taken_over_at_once_by_a_retry(
        registry: Registry) -> None:
    """A push from a pipe, killed with SIGKILL while its multipart upload is in flight:
    its pending record names a process of this machine that is gone, so a retry of the
    same version succeeds right away (no waiting for a bound)."""
    first = random.Random(1).randbytes(9 * MiB)
    proc = subprocess.Popen([TYCHOREG, "push", "pkg", "1", "-", "--localname", "x.bin"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=registry.workdir)
    assert proc.stdin is not None
    try:
        proc.stdin.write(first)  # more than one part; the pipe stays open after it
        proc.stdin.flush()
        wait_until(lambda: registry.get("pkg/tycho_1.meta.json") is not None,
                   "the pending record")
        wait_until(lambda: bool(registry.multipart_uploads()), "the multipart upload")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(registry.get("pkg/tycho_1.meta.json") or b"")["state"] == "pending"

    blob = write_file(Path("x.bin"), 5000, seed=2)
    retry = registry.cli("push", "pkg", "1", "x.bin")
    assert retry.exit_code == 0, retry.output
    assert_published(registry, "pkg", "1")
    pulled = registry.cli("pull", "pkg", "--version", "1", "-o", "out.bin")
    assert pulled.exit_code == 0 and Path("out.bin").read_bytes() == blob
    assert registry.multipart_uploads() == []  # the dead push's upload is aborted too


@pytest.mark.anyio
async def test_a_live_push_whose_input_stalls_is_never_taken_over(
        registry: Registry, tmp_path: Path) -> None:
    """A stream push whose producer stalls for several takeover bounds (made small: 3 s)
    keeps its version by its heartbeat: a rival push is refused, and the stream, once it
    goes on, is published byte for byte."""
    blob = random.Random(3).randbytes(300_000)
    write_file(tmp_path / "rival.bin", 1000, seed=4)
    settings = load_settings()
    liveness = Liveness(3.0)
    async with open_store(settings.store) as store:
        holder = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)
        rival = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)
        async with stalled_push(holder, "pkg", "1", blob[:1000], localname="x.bin") as pipe:
            for _ in range(100):
                if registry.get("pkg/tycho_1.meta.json") is not None:
                    break
                await anyio.sleep(0.1)
            await anyio.sleep(2 * liveness.bound)  # silent input, twice the bound
            with pytest.raises(AlreadyExists, match="being pushed"):
                await rival.push("pkg", "1", tmp_path / "rival.bin", promote=False)
            await pipe.feed(blob[1000:])
    assert not isinstance(pipe.outcome[0], BaseException)
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert_published(registry, "pkg", "1")


@pytest.mark.anyio
async def test_a_silent_pending_record_is_taken_over_after_the_bound(
        registry: Registry, tmp_path: Path) -> None:
    """A pending record of another machine that nobody renews: refused while younger
    than the bound by the store's clock, taken over once older."""
    blob = write_file(tmp_path / "f.bin", 1000, seed=5)
    registry.put("pkg/tycho_1.meta.json", json.dumps(
        {"state": "pending", "tool": "tychoreg test", "started_at": "2020-01-01T00:00:00",
         "localname": "f.bin", "push_id": "elsewhere",
         "holder": {"machine": "another-machine", "pid": 1, "start": 1}}).encode())
    settings = load_settings()
    async with open_store(settings.store) as store:
        reg = Reg(Engine(store, settings.transfer), tmp_path / "out",
                  liveness=Liveness(3.0))
        with pytest.raises(AlreadyExists, match="being pushed"):
            await reg.push("pkg", "1", tmp_path / "f.bin", promote=False)
        await anyio.sleep(5)  # past the bound (the store's clock has whole seconds)
        await reg.push("pkg", "1", tmp_path / "f.bin", promote=False)
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert_published(registry, "pkg", "1")


ROUNDS = {"local": 20, "s3": 20, "seaweedfs": 5}


def race(registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rounds: int,
         pushers: int = 8) -> None:
    """``pushers`` clients (one connection pool each, as separate jobs) push one version at
    once, ``rounds`` times: every round leaves exactly one winner and a complete version,
    its record naming the stored object's SHA-256."""
    import tycho_async

    for name, value in (("AWS_ACCESS_KEY_ID", CREDS["aws_access_key_id"]),
                        ("AWS_SECRET_ACCESS_KEY", CREDS["aws_secret_access_key"]),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    where = registry.root if registry.kind == "local" else f"s3://{registry.root}"
    for i in range(pushers):
        write_file(tmp_path / f"p{i}.bin", 2000 + i, seed=i)
    jitter = random.Random(7)

    async def main() -> list[list[object]]:
        outcomes: list[list[object]] = []
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(tycho_async.open_registry(
                registry=where, endpoint_url=registry.endpoint)) for _ in range(pushers)]
            for n in range(rounds):
                results: list[object] = [None] * pushers

                async def push(i: int, version: str, results: list[object]) -> None:
                    await anyio.sleep(jitter.uniform(0, 0.05))  # jobs start at odd times
                    try:
                        results[i] = await clients[i].push("pkg", version,
                                                           tmp_path / f"p{i}.bin")
                    except AlreadyExists as exc:
                        results[i] = exc

                async with anyio.create_task_group() as tg:
                    for i in range(pushers):
                        tg.start_soon(push, i, f"r{n}", results)
                outcomes.append(results)
                assert await clients[0].exists("pkg", f"r{n}"), (n, results)
        return outcomes

    outcomes = anyio.run(main)
    for n, results in enumerate(outcomes):
        winners = [i for i, r in enumerate(results) if not isinstance(r, AlreadyExists)]
        assert len(winners) == 1, (n, results)
        assert registry.get(f"pkg/tycho_r{n}.pkg") == \
            (tmp_path / f"p{winners[0]}.bin").read_bytes()
        assert_published(registry, "pkg", f"r{n}")
    assert registry.multipart_uploads() == []


def test_racing_pushers_leave_one_complete_version(
        race_registry: Registry, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    backend = request.node.callspec.params["race_registry"]
    race(race_registry, monkeypatch, tmp_path, ROUNDS[backend])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_racing_pushers_leave_one_complete_version_many_rounds(
        race_registry: Registry, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """60 rounds on every backend, only when asked for (``pytest -m slow``)."""
    if "slow" not in str(request.config.getoption("markexpr") or ""):
        pytest.skip("many rounds: run with -m slow")
    race(race_registry, monkeypatch, tmp_path, 60)


class ContendedMeta(FaultyStore):
    """A store on which every conditional rewrite of tycho.json loses its race while
    ``contended`` (as under many writers), though each write still changes it."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.contended = True

    async def __aenter__(self) -> ContendedMeta:
        return self

    async def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                        if_match: str | None = None) -> str:
        if self.contended and key.endswith("/tycho.json") and if_match is not None:
            raise PreconditionFailed(f"{key} changed since it was read")
        return await super().put_bytes(key, data, if_none_match=if_none_match,
                                       if_match=if_match)


def drop_copy(registry: Registry, package: str, version: str) -> None:
    meta = registry.meta(package)
    del meta["tychoreg"]["records"][version]
    registry.put(f"{package}/tycho.json", json.dumps(meta, indent=2).encode())


def test_a_push_that_loses_every_race_for_tycho_json_succeeds_and_is_finished_later(
        registry: Registry, tmp_path: Path) -> None:
    """The upload landed and its record is written: the push succeeds with a warning,
    and the next pull, push or prune of the package writes the missing copy."""
    assert registry.cli("push", "pkg", "0", write_path(tmp_path / "a.bin", 1)).exit_code == 0
    blob = write_file(tmp_path / "b.bin", 4000, seed=2)

    async def contended_push(promote: bool) -> PushResult:
        settings = load_settings()
        async with open_store(settings.store) as store:
            reg = Reg(Engine(ContendedMeta(store), settings.transfer), tmp_path / "out")
            return await reg.push("pkg", "1" if not promote else "2", tmp_path / "b.bin",
                                  promote=promote)

    result = anyio.run(contended_push, False)
    assert result.warnings and "tycho.json kept changing" in result.warnings[0]
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert "1" not in registry.meta("pkg")["tychoreg"]["records"]
    record = assert_record(registry, "pkg", "1")

    pulled = registry.cli("pull", "pkg", "--version", "1", "-o", str(tmp_path / "o.bin"))
    assert pulled.exit_code == 0, pulled.output
    assert registry.meta("pkg")["tychoreg"]["records"]["1"] == record  # by the pull

    drop_copy(registry, "pkg", "1")
    assert registry.cli("push", "pkg", "3", str(tmp_path / "a.bin")).exit_code == 0
    assert registry.meta("pkg")["tychoreg"]["records"]["1"] == record  # by the push

    drop_copy(registry, "pkg", "1")
    pruned = registry.cli("prune", "pkg", "--keep", "10", "--json")
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout)["finished"] == ["1"]
    assert registry.meta("pkg")["tychoreg"]["records"]["1"] == record  # by prune
    assert_published(registry, "pkg", "1")

    with pytest.raises(TransferError, match="could not be promoted"):
        anyio.run(contended_push, True)
    assert_record(registry, "pkg", "2")


def write_path(path: Path, seed: int) -> str:
    write_file(path, 3000, seed=seed)
    return str(path)


def assert_record(registry: Registry, package: str, version: str) -> dict[str, Any]:
    """The record object is complete and names the stored object's SHA-256."""
    stored = registry.get(f"{package}/tycho_{version}.pkg") or b""
    record = json.loads(registry.get(f"{package}/tycho_{version}.meta.json") or b"")
    assert "state" not in record and record["sha256"] == hashlib.sha256(stored).hexdigest()
    return dict(record)


def test_a_racer_is_told_the_version_is_being_recorded_not_cut_short(
        registry: Registry) -> None:
    """The object is there and its push, alive, is writing the record: a racer hears
    "being recorded by another push"; once that push is gone, "cut short" and --repair."""
    blob = write_file(Path("f.bin"), 3000, seed=1)
    assert registry.cli("push", "pkg", "0", "f.bin").exit_code == 0
    registry.put("pkg/tycho_1.pkg", blob)
    live = {"state": "pending", "tool": "tychoreg test", "localname": "f.bin",
            "started_at": "2020-01-01T00:00:00+00:00", "push_id": "winner"}
    registry.put("pkg/tycho_1.meta.json", json.dumps(live).encode())
    racer = registry.cli("push", "pkg", "1", "f.bin")
    assert racer.exit_code == 1 and "being recorded by another push" in racer.stderr
    assert "--repair" not in racer.stderr
    registry.put("pkg/tycho_1.meta.json", json.dumps({**live,
                                                      "holder": dead_holder()}).encode())
    late = registry.cli("push", "pkg", "1", "f.bin")
    assert late.exit_code == 1 and "cut short" in late.stderr and "--repair" in late.stderr


@pytest.mark.anyio
async def test_a_push_whose_parts_hold_every_slot_keeps_renewing_its_record(
        registry: Registry, tmp_path: Path) -> None:
    """One request slot, taken for many seconds by each part (a slow link): the heartbeat
    does not queue behind the parts, so a rival past the bound is still refused."""
    blob = write_file(tmp_path / "big.bin", 9 * MiB, seed=6)
    write_file(tmp_path / "rival.bin", 1000, seed=7)
    settings = load_settings()
    liveness = Liveness(3.0)
    async with open_store(settings.store) as store:
        slow = FaultyStore(store, delay=8.0, slow=frozenset({"upload_part"}))
        one_slot = dataclasses.replace(settings.transfer, concurrency=1)
        holder = Reg(Engine(slow, one_slot), tmp_path / "out", liveness=liveness)
        rival = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(holder.push, "pkg", "1", tmp_path / "big.bin",
                                            promote=False))
            for _ in range(100):
                if registry.get("pkg/tycho_1.meta.json") is not None:
                    break
                await anyio.sleep(0.1)
            await anyio.sleep(2 * liveness.bound)
            with pytest.raises(AlreadyExists, match="being pushed"):
                await rival.push("pkg", "1", tmp_path / "rival.bin", promote=False)
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert_published(registry, "pkg", "1")


class FlakyRenewals(FaultyStore):
    """A store that loses the answer to the first renewal of a pending record (the write
    lands), then fails the next read of that record once: two passing faults, after
    which every request succeeds."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.renewal_lost = False
        self.read_failed = False

    async def __aenter__(self) -> FlakyRenewals:
        return self

    async def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                        if_match: str | None = None) -> str:
        etag = await super().put_bytes(key, data, if_none_match=if_none_match,
                                       if_match=if_match)
        if key.endswith(".meta.json") and if_match is not None and not self.renewal_lost:
            self.renewal_lost = True
            raise StoreError("connection reset after the write", transient=True)
        return etag

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        if key.endswith(".meta.json") and self.renewal_lost and not self.read_failed:
            self.read_failed = True
            raise StoreError("connection reset", transient=True)
        return await super().get_bytes(key)


@pytest.mark.anyio
async def test_a_heartbeat_outlives_a_lost_renewal_and_a_failed_read(
        registry: Registry, tmp_path: Path) -> None:
    """A renewal that landed unanswered, then a failed read of the record while the next
    beat finds out whose it is: passing faults, so the push keeps renewing and a rival
    past the bound is still refused."""
    blob = random.Random(8).randbytes(300_000)
    write_file(tmp_path / "rival.bin", 1000, seed=9)
    settings = load_settings()
    liveness = Liveness(3.0)
    async with open_store(settings.store) as store:
        flaky = FlakyRenewals(store)
        holder = Reg(Engine(flaky, settings.transfer), tmp_path / "out", liveness=liveness)
        rival = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)
        async with stalled_push(holder, "pkg", "1", blob[:1000], localname="x.bin") as pipe:
            for _ in range(100):
                if flaky.read_failed:
                    break
                await anyio.sleep(0.1)
            assert flaky.read_failed
            await anyio.sleep(2 * liveness.bound)
            with pytest.raises(AlreadyExists, match="being pushed"):
                await rival.push("pkg", "1", tmp_path / "rival.bin", promote=False)
            await pipe.feed(blob[1000:])
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert_published(registry, "pkg", "1")


class StalledListing(FaultyStore):
    """A store whose listings never answer, and that cancels ``scope`` (as a Ctrl-C
    would) once the version's object has been written."""

    def __init__(self, inner: Store, scope: anyio.CancelScope) -> None:
        super().__init__(inner)
        self.scope = scope

    async def __aenter__(self) -> StalledListing:
        return self

    async def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        await anyio.sleep_forever()
        nothing: tuple[ObjectInfo, ...] = ()
        for info in nothing:  # never reached: this only makes the method an async generator
            yield info

    async def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                        if_match: str | None = None) -> str:
        etag = await super().put_bytes(key, data, if_none_match=if_none_match,
                                       if_match=if_match)
        if key.endswith(".pkg"):
            self.scope.cancel()
        return etag


def test_a_push_interrupted_as_it_publishes_records_without_waiting_for_a_listing(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interruption cancels the look for lost copies, a side job still waiting for a
    listing: the shielded recording goes on at once, and the version is published."""
    import tycho_async.registry.publish as registry_module

    assert registry.cli("push", "pkg", "0", write_path(tmp_path / "a.bin", 1)).exit_code == 0
    blob = write_file(tmp_path / "b.bin", 4000, seed=2)
    monkeypatch.setattr(registry_module, "SHIELD_SECONDS", 4000)  # a wait shows as a hang

    async def main() -> None:
        settings = load_settings()
        async with open_store(settings.store) as store:
            with anyio.fail_after(60), anyio.CancelScope() as scope:
                reg = Reg(Engine(StalledListing(store, scope), settings.transfer),
                          tmp_path / "out")
                await reg.push("pkg", "1", tmp_path / "b.bin", promote=False)

    anyio.run(main)
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert_published(registry, "pkg", "1")


def test_init_twice_looks_before_it_leaps(registry: Registry) -> None:
    assert registry.cli("init", "pkg", "x.bin").exit_code == 0
    registry.put("pkg/tycho.json", json.dumps({"localname": "x.bin", "latest": "9",
                                               "mine": 1}).encode())
    again = registry.cli("init", "pkg", "y.bin")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert registry.meta("pkg") == {"localname": "x.bin", "latest": "9", "mine": 1}


def test_a_dead_push_is_taken_over_and_a_live_one_refused(registry: Registry) -> None:
    _pushed(registry)
    blob = write_file(Path("g.bin"), 5000, seed=3)
    registry.put("pkg/tycho_2.0.meta.json", _pending(OLD))  # no object: died before upload
    taken = registry.cli("push", "pkg", "2.0", "g.bin")
    assert taken.exit_code == 0, taken.output
    assert registry.get("pkg/tycho_2.0.pkg") == blob
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    registry.put("pkg/tycho_3.0.meta.json", _pending(now))
    busy = registry.cli("push", "pkg", "3.0", "g.bin")
    assert busy.exit_code == 1 and "being pushed" in busy.stderr
    assert registry.get("pkg/tycho_3.0.pkg") is None
    cleared = registry.cli("verify", "pkg", "--version", "3.0", "--repair")
    assert cleared.exit_code == 1 and "being pushed" in cleared.stderr
    registry.put("pkg/tycho_3.0.meta.json", _pending(OLD))
    cleared = registry.cli("verify", "pkg", "--version", "3.0", "--repair")
    assert cleared.exit_code == 1 and "cleared the record" in cleared.stderr
    assert registry.get("pkg/tycho_3.0.meta.json") is None


@pytest.mark.anyio
async def test_a_failed_upload_leaves_no_pending_record(tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    from tycho_async.errors import StoreError

    write_file(tmp_path / "f.bin", 300_000)
    async with opened("s3", tmp_path, request) as (store, _):
        faulty = FaultyStore(store)
        reg = Reg(Engine(faulty, SMALL), tmp_path / "out")
        faulty.inject("upload_part", None, StoreError("access denied"))
        with pytest.raises(StoreError, match="access denied"):
            await reg.push("pkg", "1.0", tmp_path / "f.bin", promote=True)
        assert [info.key async for info in store.list_keys("")] == []
        assert await reg.exists("pkg", "1.0") is False
        await reg.push("pkg", "1.0", tmp_path / "f.bin", promote=True)  # free again
        assert await reg.exists("pkg", "1.0") is True


@pytest.mark.anyio
async def test_tycho_json_that_keeps_changing_is_a_transfer_failure(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tycho_async.errors import PreconditionFailed

    async with opened("local", tmp_path, request) as (store, _):
        faulty = FaultyStore(store)
        reg = Reg(Engine(faulty, SMALL), tmp_path / "out")
        await reg.init("pkg", "x.bin")
        await store.put_bytes("pkg/tycho_1.pkg", b"x")
        faulty.inject("put_bytes", *[PreconditionFailed("lost the race")] * 20)
        with pytest.raises(TransferError, match="kept changing") as caught:
            await reg.promote("pkg", "1")
        assert caught.value.exit_code == 3


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])
def test_a_signal_during_push_aborts_the_upload(s3_endpoint: str, signum: int,
                                                code: int) -> None:
    bucket = make_bucket(s3_endpoint)
    write_file(Path("big.bin"), 60 * MiB)
    client = s3_client(s3_endpoint)
    proc = subprocess.Popen([TYCHOREG, "push", "big", "1.0", "big.bin", "--concurrency", "1",
                             "--part-size", "5MiB"], env=_env(s3_endpoint, bucket),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: client.list_multipart_uploads(Bucket=bucket).get("Uploads"))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"interrupted by {signal.Signals(signum).name}" in err
    assert "interrupted: pushed 0 files" in err and "failed" not in err  # cut, not failed
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # no pending record


def test_a_signal_between_publish_and_record_leaves_a_recorded_version(
        s3_endpoint: str) -> None:
    """SIGTERM sent when the request that publishes the object goes out: the push
    records the version (and reports it) before it exits."""
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("big.bin"), 12 * MiB)
    env = _env(s3_endpoint, bucket)
    proc = subprocess.Popen([TYCHOREG, "--debug", "push", "big", "1.0", "big.bin",
                             "--promote-latest", "--part-size", "5MiB"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # bounded: the process ends, and so does its stderr
            if "CompleteMultipartUpload" in line:
                proc.send_signal(signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]  # the publication was under way: it finished
    assert "pushed big 1.0" in out
    client = s3_client(s3_endpoint)
    record = json.loads(client.get_object(Bucket=bucket, Key="big/tycho_1.0.meta.json")[
        "Body"].read())
    assert record["sha256"] == hashlib.sha256(blob).hexdigest()
    meta = json.loads(client.get_object(Bucket=bucket, Key="big/tycho.json")["Body"].read())
    assert meta["latest"] == "1.0" and meta["tychoreg"]["records"]["1.0"] == record
    pulled = subprocess.run([TYCHOREG, "pull", "big"], env=env, timeout=60, check=False,
                            capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    assert Path("tycho_packages/big.bin").read_bytes() == blob


def test_skip_identical_file(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 1000, seed=1)
    ok(registry.cli("push", "pkg", "1", "f.bin"))
    record = registry.get("pkg/tycho_1.meta.json")

    same = ok(registry.cli("push", "pkg", "1", "f.bin", "--skip-identical"))
    assert "already there" in same.stdout
    assert registry.get("pkg/tycho_1.meta.json") == record
    assert registry.meta("pkg")["latest"] is None

    promoted = ok(registry.cli("push", "pkg", "1", "f.bin", "--skip-identical",
                               "--promote-latest"))
    assert "already there" in promoted.stdout and "promoted" in promoted.stdout
    assert registry.meta("pkg")["latest"] == "1"

    write_file(Path("f.bin"), 1000, seed=2)  # the same size, other bytes
    other = registry.cli("push", "pkg", "1", "f.bin", "--skip-identical")
    assert other.exit_code == 1
    assert "other content" in other.stderr
    assert registry.get("pkg/tycho_1.pkg") == blob

    new = ok(registry.cli("push", "pkg", "2", "f.bin", "--skip-identical"))
    assert "pushed pkg 2" in new.stdout
    assert registry.get("pkg/tycho_2.pkg") == Path("f.bin").read_bytes()
    assert registry.multipart_uploads() == []


def test_skip_identical_directory_compares_the_tree_not_the_archive(
        registry: Registry) -> None:
    make_tree(Path("one/tree"), seed=1)
    ok(registry.cli("push", "cache", "1", "one/tree", "--level", "3"))
    stored = registry.get("cache/tycho_1.pkg")

    make_tree(Path("two/tree"), seed=1, reverse=True)  # created in another order
    reordered = ok(registry.cli("push", "cache", "1", "two/tree", "--skip-identical"))
    assert "already there" in reordered.stdout
    relevel = ok(registry.cli("push", "cache", "1", "one/tree", "--skip-identical",
                              "--level", "19"))
    assert "already there" in relevel.stdout
    assert registry.get("cache/tycho_1.pkg") == stored  # nothing uploaded

    text = Path("two/tree/a/text.txt")
    os.utime(text, (text.stat().st_mtime + 60,) * 2)  # the same bytes, another mtime
    touched = registry.cli("push", "cache", "1", "two/tree", "--skip-identical")
    assert touched.exit_code == 1
    assert "other content" in touched.stderr
    assert registry.get("cache/tycho_1.pkg") == stored
    assert registry.multipart_uploads() == []


def pushed_doc(result: Any) -> dict[str, Any]:
    doc = json.loads(result.stdout)
    assert doc["command"] == "push"
    return dict(doc)


def test_skip_existing_is_a_cache_hit_whatever_the_content(registry: Registry) -> None:
    """actions/cache's rule: the key exists, so nothing is saved and the job goes on
    (exit 0), told whether the content matched."""
    blob = write_file(Path("f.bin"), 1000, seed=1)
    ok(registry.cli("push", "pkg", "1", "f.bin"))
    record = registry.get("pkg/tycho_1.meta.json")

    same = pushed_doc(ok(registry.cli("push", "pkg", "1", "f.bin", "--skip-existing",
                                      "--json")))
    assert (same["skipped"], same["same_content"]) == (True, True)
    write_file(Path("f.bin"), 1000, seed=2)  # the same size, other bytes
    other = ok(registry.cli("push", "pkg", "1", "f.bin", "--skip-existing"))
    assert "already there with other content" in other.stdout
    other_doc = pushed_doc(ok(registry.cli("push", "pkg", "1", "f.bin", "--skip-existing",
                                           "--json", "--promote-latest")))
    assert (other_doc["skipped"], other_doc["same_content"], other_doc["promoted"]) == \
        (True, False, True)
    assert registry.meta("pkg")["latest"] == "1"
    streamed = registry.runner.invoke(app, ["push", "pkg", "1", "-", "--skip-existing",
                                               "--json"], input=b"other bytes")
    assert streamed.exit_code == 0, streamed.output
    assert (pushed_doc(streamed)["skipped"], pushed_doc(streamed)["same_content"]) == \
        (True, None)
    assert registry.get("pkg/tycho_1.pkg") == blob
    assert registry.get("pkg/tycho_1.meta.json") == record

    make_tree(Path("tree"), seed=1)
    ok(registry.cli("push", "dirs", "1", "tree"))
    text = Path("tree/a/text.txt")
    os.utime(text, (text.stat().st_mtime + 60,) * 2)  # a restored tree, touched by a job
    touched = pushed_doc(ok(registry.cli("push", "dirs", "1", "tree", "--skip-existing",
                                         "--json")))
    assert (touched["skipped"], touched["same_content"]) == (True, False)
    new = ok(registry.cli("push", "pkg", "2", "f.bin", "--skip-existing"))
    assert "pushed pkg 2" in new.stdout
    assert registry.multipart_uploads() == []


def test_skip_existing_does_not_wait_for_a_live_push(registry: Registry) -> None:
    """Another job is uploading the key right now (its pending record was just written):
    --skip-existing exits 0 at once, --skip-identical and a plain push refuse it."""
    write_file(Path("f.bin"), 1000, seed=1)
    ok(registry.cli("push", "pkg", "1", "f.bin"))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    registry.put("pkg/tycho_2.meta.json", json.dumps(
        {"state": "pending", "tool": "tychoreg test", "started_at": stamp,
         "localname": "f.bin", "push_id": "rival"}).encode())
    skipped = pushed_doc(ok(registry.cli("push", "pkg", "2", "f.bin", "--skip-existing",
                                         "--json", "--promote-latest")))
    assert (skipped["skipped"], skipped["same_content"], skipped["promoted"]) == \
        (True, None, False)
    assert "not promoted" in skipped["warnings"][0]
    said = ok(registry.cli("push", "pkg", "2", "f.bin", "--skip-existing", "--promote-latest"))
    assert "being pushed by another push" in said.stdout
    assert "warning: not promoted" in said.stderr
    assert registry.get("pkg/tycho_2.pkg") is None
    assert json.loads(registry.get("pkg/tycho_2.meta.json") or b"")["push_id"] == "rival"
    plain = registry.cli("push", "pkg", "2", "f.bin")
    assert plain.exit_code == 1 and "being pushed" in plain.stderr
    both = registry.cli("push", "pkg", "2", "f.bin", "--skip-existing", "--skip-identical")
    assert both.exit_code == 2


def only_s3(registry: Registry) -> None:
    if registry.kind != "s3":
        pytest.skip("tycho-station writes only to S3: its ETags are S3's")


@pytest.mark.parametrize("how", ["put_object", "upload_file", "other part size"])
def test_skip_identical_of_a_tycho_station_version(registry: Registry, how: str) -> None:
    only_s3(registry)
    size = 1000 if how == "put_object" else 9 * MiB + 5
    blob = write_file(Path("f.bin"), size, seed=1)
    put_station(registry, "ts", {}, localname="f.bin")
    client = raw_client(registry.endpoint or "")
    if how == "put_object":
        client.put_object(Bucket=registry.root, Key="ts/tycho_1.pkg", Body=blob)
    else:  # boto3's defaults (8 MiB parts), or parts tychoreg cannot guess
        config = TransferConfig() if how == "upload_file" else \
            TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        client.upload_file("f.bin", registry.root, "ts/tycho_1.pkg", Config=config)
    etag = s3_head(registry, "ts/tycho_1.pkg")["ETag"]
    assert ("-" in etag) == (how != "put_object")

    result = registry.cli("push", "ts", "1", "f.bin", "--skip-identical")
    if how == "other part size":
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert "cannot" in result.stderr
    else:
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert "already there" in result.stdout
        tampered = bytearray(blob)
        tampered[-1] ^= 1  # the same size, in the last part
        Path("f.bin").write_bytes(bytes(tampered))
        other = registry.cli("push", "ts", "1", "f.bin", "--skip-identical")
        assert other.exit_code == 1
        if how == "put_object":  # a plain MD5 that differs: other content, for sure
            assert "other content" in other.stderr
        else:  # other parts could give the same count: either answer is honest
            assert "other content" in other.stderr or "cannot" in other.stderr
    assert registry.get("ts/tycho_1.pkg") == blob
    assert "ts/tycho_1.meta.json" not in registry.object_keys()
    assert s3_head(registry, "ts/tycho_1.pkg")["ETag"] == etag
    if how == "put_object":
        shown = ok(registry.cli("show", "ts", "--version", "1", "--json"))
        version = json.loads(shown.stdout)["version"]
        assert (version["tool"], version["sha256"], version["size"], version["format"]) == \
            ("tycho-station", None, size, "file")


def test_parallel_publishes_of_one_version_with_skip_identical_both_succeed(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs publishing the same version at once: one uploads, the other waits for it
    to finish and finds the same tree there (exit 0 for both, one version in the bucket)."""
    import tycho_async
    from tycho_async.errors import AlreadyExists

    from .support import CREDS, REGION

    for name, value in (("AWS_ACCESS_KEY_ID", CREDS["aws_access_key_id"]),
                        ("AWS_SECRET_ACCESS_KEY", CREDS["aws_secret_access_key"]),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    src = make_tree(Path("src"), big=3 * MiB)
    where = registry.root if registry.kind == "local" else f"s3://{registry.root}"
    results: list[Any] = []

    async def save() -> None:
        async with tycho_async.open_registry(registry=where,
                                             endpoint_url=registry.endpoint) as reg:
            results.append(await reg.push("cache", "k1", src, skip_identical=True))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(save)
            tg.start_soon(save)

    anyio.run(main)
    assert sorted(r.skipped for r in results) == [False, True]
    assert results[0].tree_sha256 == results[1].tree_sha256
    assert [k for k in registry.object_keys() if k.endswith(".pkg")] == ["cache/tycho_k1.pkg"]

    Path("src/a/text.txt").write_text("changed\n")  # other content: still exit 1, no upload

    async def other() -> None:
        async with tycho_async.open_registry(registry=where,
                                             endpoint_url=registry.endpoint) as reg:
            await reg.push("cache", "k1", src, skip_identical=True)

    with pytest.raises(AlreadyExists, match="other content"):
        anyio.run(other)


@pytest.mark.anyio
async def test_a_pending_record_whose_answer_was_lost_is_recognised_as_ours(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tycho_async.registry import Registry

    blob = write_file(tmp_path / "f.bin", 1000)
    async with opened("s3", tmp_path, request) as (inner, _):
        store = FaultyStore(inner)
        registry = Registry(Engine(store, SMALL), tmp_path / "out")
        store.inject("put_bytes", "landed")  # the pending record lands, its answer is lost
        result = await registry.push("pkg", "1.0", tmp_path / "f.bin", promote=True)
        assert result.sha256 == hashlib.sha256(blob).hexdigest()
        assert store.calls["put_bytes"] >= 4  # pending twice, record, tycho.json


def test_foreign_keys_survive_push_promote_and_delete_of_other_versions(
        registry: Registry) -> None:
    """Keys another client wrote (top-level in tycho.json, in our section, in a copy of a
    record, in a record object) are kept, as they were, by every rewrite tychoreg makes
    of those objects while it pushes, promotes and deletes other versions."""
    write_file(Path("f.bin"), 100)
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    meta = registry.meta("pkg")
    meta["owner"] = "team-x"
    meta["tychoreg"]["future"] = [1, 2]
    meta["tychoreg"]["records"]["1.0"]["signed_by"] = "ci"
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    record = json.loads(registry.get("pkg/tycho_1.0.meta.json") or b"{}")
    stored = json.dumps({**record, "signed_by": "ci"}, indent=2).encode()
    registry.put("pkg/tycho_1.0.meta.json", stored)
    for args in (("push", "pkg", "2.0", "f.bin"), ("promote", "pkg", "2.0"),
                 ("push", "pkg", "3.0", "f.bin"), ("delete", "pkg", "3.0"),
                 ("prune", "pkg", "--keep", "5")):
        result = registry.cli(*args)
        assert result.exit_code == 0, (args, result.output)
        after = registry.meta("pkg")
        assert after["owner"] == "team-x" and after["tychoreg"]["future"] == [1, 2], args
        assert after["tychoreg"]["records"]["1.0"]["signed_by"] == "ci", args
    assert registry.meta("pkg")["latest"] == "2.0"
    assert registry.get("pkg/tycho_1.0.meta.json") == stored


class _Timeless(FaultyStore):
    """A real store whose HEAD answers tell no time (as some S3-compatible stores'
    do), so a pending record's age is judged by its own stamp against our clock."""

    async def head(self, key: str) -> ObjectInfo | None:
        info = await super().head(key)
        return None if info is None else dataclasses.replace(info, server_time=None,
                                                             modified=None)

    async def __aenter__(self) -> _Timeless:
        await self.inner.__aenter__()
        return self


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_silent_pending_record_is_judged_by_the_registrys_clock(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """On a store that tells no time, a pending record renewed a moment ago (by its own
    stamp, no holder to probe) holds the version against a push by the wall clock, and
    is taken over by a push whose registry clock runs two minutes ahead."""
    blob = write_file(tmp_path / "f.bin", 100)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    async with opened(kind, tmp_path, request) as (inner, _):
        await inner.put_bytes("pkg/tycho_1.0.meta.json", json.dumps(
            {"state": "pending", "tool": "tychoreg test", "started_at": stamp,
             "localname": "f.bin", "push_id": "other"}).encode())
        store = _Timeless(inner)
        with pytest.raises(AlreadyExists, match="being pushed by another client"):
            await Reg(Engine(store, SMALL), tmp_path / "out").push(
                "pkg", "1.0", tmp_path / "f.bin", promote=False)
        later = Reg(Engine(store, SMALL), tmp_path / "out", clock=lambda: time.time() + 120)
        result = await later.push("pkg", "1.0", tmp_path / "f.bin", promote=False)
        assert result.sha256 == hashlib.sha256(blob).hexdigest()
        record = json.loads((await inner.get_bytes("pkg/tycho_1.0.meta.json"))[0])
        assert record["sha256"] == result.sha256 and "state" not in record
