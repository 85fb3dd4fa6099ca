"""Publishing under contention: racing pushers of one version, live pushes kept alive by
their heartbeat, dead ones taken over, on every backend."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tycho_async import processes
from tycho_async.config import load_settings
from tycho_async.errors import AlreadyExists
from tycho_async.registry import Registry as Reg
from tycho_async.storage import Store, open_store
from tycho_async.transfer import Engine

from .conftest import Registry, write_file
from .faults import FaultyStore


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
