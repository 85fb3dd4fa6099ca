"""Publishing under contention: racing pushers of one version, live pushes kept alive by
their heartbeat, dead ones taken over, on every backend."""

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
from pathlib import Path
from typing import Any

import anyio
import pytest

from tycho_async import processes
from tycho_async.config import load_settings
from tycho_async.errors import AlreadyExists, PreconditionFailed, StoreError, TransferError
from tycho_async.lifecycle import Liveness
from tycho_async.registry import Registry as Reg
from tycho_async.results import PushResult
from tycho_async.storage import ObjectInfo, Store, open_store
from tycho_async.transfer import Engine

from .conftest import CREDS, REGION, Registry, write_file
from .faults import FaultyStore
from .test_subprocess import TYCHOREG

MiB = 1024 * 1024


def dead_holder() -> dict[str, Any]:
    """A holder on this machine that no longer runs: this PID with another start time
    (as when the holder died and its PID was reused)."""
    here = processes.this_process()
    assert here is not None, "the tests run on Linux, with /proc"
    return {**here.to_json(), "start": here.start + 1}


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
    read_fd, write_fd = os.pipe()
    async with open_store(settings.store) as store:
        holder = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)
        rival = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)
        outcome: list[object] = []

        async def push() -> None:
            with os.fdopen(read_fd, "rb") as stream:
                outcome.append(await holder.push("pkg", "1", stream, promote=False,
                                                 localname="x.bin"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(push)
            os.write(write_fd, blob[:1000])
            for _ in range(100):
                if registry.get("pkg/tycho_1.meta.json") is not None:
                    break
                await anyio.sleep(0.1)
            await anyio.sleep(2 * liveness.bound)  # silent input, twice the bound
            with pytest.raises(AlreadyExists, match="being pushed"):
                await rival.push("pkg", "1", tmp_path / "rival.bin", promote=False)
            await anyio.to_thread.run_sync(os.write, write_fd, blob[1000:])
            os.close(write_fd)
    assert not isinstance(outcome[0], BaseException)
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
    read_fd, write_fd = os.pipe()
    async with open_store(settings.store) as store:
        flaky = FlakyRenewals(store)
        holder = Reg(Engine(flaky, settings.transfer), tmp_path / "out", liveness=liveness)
        rival = Reg(Engine(store, settings.transfer), tmp_path / "out", liveness=liveness)

        async def push() -> None:
            with os.fdopen(read_fd, "rb") as stream:
                await holder.push("pkg", "1", stream, promote=False, localname="x.bin")

        async with anyio.create_task_group() as tg:
            tg.start_soon(push)
            os.write(write_fd, blob[:1000])
            for _ in range(100):
                if flaky.read_failed:
                    break
                await anyio.sleep(0.1)
            try:
                assert flaky.read_failed
                await anyio.sleep(2 * liveness.bound)
                with pytest.raises(AlreadyExists, match="being pushed"):
                    await rival.push("pkg", "1", tmp_path / "rival.bin", promote=False)
                await anyio.to_thread.run_sync(os.write, write_fd, blob[1000:])
            finally:
                os.close(write_fd)  # the push's input ends, whatever happened
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
