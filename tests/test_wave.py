"""pull-list seen from the requests it sends, on every backend: each package's tycho.json
read once, in one wave ahead of the objects; a small object whose record gives its size
asked with a plain GET (no Range), and still refused when it is another size."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from tycho_async.errors import IntegrityError, PartialFailure
from tycho_async.registry import Registry as Reg
from tycho_async.results import PullRequest
from tycho_async.storage import LocalOptions, S3Options, StoreOptions, open_store
from tycho_async.transfer import Engine, TransferSettings

from .faults import FaultyStore
from .httpproxy import FaultProxy
from .support import CREDS, REGION, Registry, write_file

T = TypeVar("T")
KiB = 1024
MiB = 1024 * KiB
THRESHOLD = TransferSettings().multipart_threshold


@contextlib.asynccontextmanager
async def watched(reg: Registry) -> AsyncIterator[tuple[FaultyStore, Reg]]:
    """The fixture's registry through a store that records what is asked of it."""
    options: StoreOptions
    if reg.kind == "s3":
        options = S3Options(reg.root, client_kwargs={"endpoint_url": reg.endpoint,
                                                     "region_name": REGION, **CREDS})
    else:
        options = LocalOptions(Path(reg.root))
    async with open_store(options) as inner:
        store = FaultyStore(inner)
        yield store, Reg(Engine(store), reg.workdir / "tycho_packages")


def run(reg: Registry, body: Callable[[FaultyStore, Reg], Awaitable[T]]) -> tuple[FaultyStore, T]:
    """Run ``body`` against the watched registry (its own event loop: the CLI used to
    set up runs its own)."""
    async def main() -> tuple[FaultyStore, T]:
        async with watched(reg) as (store, registry):
            return store, await body(store, registry)

    return anyio.run(main)


def pushed(reg: Registry, package: str, version: str, size: int, seed: int) -> bytes:
    blob = write_file(Path(f"{package}-{version}.bin"), size, seed=seed)
    result = reg.cli("push", package, version, f"{package}-{version}.bin", "--promote-latest",
                     "--localname", f"{package}.bin")
    assert result.exit_code == 0, result.output
    return blob


def test_a_pull_list_reads_each_tycho_json_once_and_each_object_once(
        registry: Registry) -> None:
    """Five items naming three packages: three tycho.json GETs, one GET per object pulled,
    no HEAD (nothing is there yet); the two items that write another's file are refused
    as before."""
    pushed(registry, "a", "1.0", 1000, 1)
    blob_a = pushed(registry, "a", "2.0", 1001, 2)
    blob_b = pushed(registry, "b", "1.0", 1002, 3)
    blob_c = pushed(registry, "c", "1.0", 1003, 4)
    items = [PullRequest("a"), PullRequest("b"), PullRequest("a", "2.0"), PullRequest("c"),
             PullRequest("b", "1.0")]

    async def pull(store: FaultyStore, reg: Reg) -> PartialFailure:
        with pytest.raises(PartialFailure) as failed:
            await reg.pull_many(items)
        return failed.value

    store, failure = run(registry, pull)
    # whichever of two items naming one file claims it first pulls it; the other is refused
    assert sorted(item.partition("==")[0] for item, _ in failure.failures) == ["a", "b"]
    assert all("both write" in exc.message for _, exc in failure.failures)
    out = registry.workdir / "tycho_packages"
    assert [(out / f"{n}.bin").read_bytes() for n in "abc"] == [blob_a, blob_b, blob_c]
    assert store.calls["get_bytes"] == 3  # one tycho.json per package (was one per item)
    assert store.calls["open_range"] == 3 and store.calls["head"] == 0


def test_a_pull_list_of_many_packages_costs_two_requests_each(registry: Registry) -> None:
    """More packages than the wave reads ahead at once (a budget of 2 reads 32 ahead):
    every item still pulled, with one tycho.json GET and one object GET each."""
    count = 40
    blobs = [pushed(registry, f"p{i}", "1", 100 + i, i) for i in range(count)]

    async def pull(store: FaultyStore, reg: Reg) -> None:
        small = Engine(store, TransferSettings(concurrency=2))
        await Reg(small, reg.outdir).pull_many([PullRequest(f"p{i}") for i in range(count)])

    store, _ = run(registry, pull)
    out = registry.workdir / "tycho_packages"
    assert [(out / f"p{i}.bin").read_bytes() for i in range(count)] == blobs
    assert store.calls["get_bytes"] == count and store.calls["open_range"] == count


@pytest.mark.parametrize("size", [0, 1000, 2 * MiB])
def test_an_object_whose_record_gives_its_size_is_asked_without_a_range(
        registry: Registry, size: int) -> None:
    """Up to the single-GET threshold a recorded size makes the GET a plain one (cheaper
    for the store); a version with no record (tycho-station's) keeps the ranged first GET
    that learns the size."""
    blob = pushed(registry, "pkg", "1.0", size, 7)
    registry.put("old/tycho.json", b'{"localname": "old.bin", "latest": "1"}')
    registry.put("old/tycho_1.pkg", b"station bytes")

    async def pull(store: FaultyStore, reg: Reg) -> list[tuple[int, int | None]]:
        await reg.pull(PullRequest("pkg"))
        first = list(store.ranges)
        await reg.pull(PullRequest("old"))
        return first

    store, first = run(registry, pull)
    assert first == [(0, None)]
    assert store.ranges[1:] == [(0, THRESHOLD)]
    out = registry.workdir / "tycho_packages"
    assert (out / "pkg.bin").read_bytes() == blob
    assert (out / "old.bin").read_bytes() == b"station bytes"
    assert sorted(p.name for p in out.iterdir()) == ["old.bin", "old.bin.etag", "pkg.bin",
                                                     "pkg.bin.etag"]


@pytest.mark.parametrize("stored", [999, 1001, THRESHOLD + 1])
def test_an_object_of_another_size_than_its_record_is_refused_unread(
        registry: Registry, stored: int) -> None:
    """The plain GET is bounded by the record all the same: refused on its headers, before
    a byte of the body is taken (exit 3 from the CLI, nothing written)."""
    pushed(registry, "pkg", "1.0", 1000, 1)
    registry.put("pkg/tycho_1.0.pkg", bytes(stored))

    async def pull(store: FaultyStore, reg: Reg) -> None:
        with pytest.raises(IntegrityError, match="were pushed"):
            await reg.pull(PullRequest("pkg"))

    store, _ = run(registry, pull)
    assert store.delivered == 0 and store.ranges == [(0, None)]
    result = registry.cli("pull", "pkg")
    assert result.exit_code == 3 and "1000 were pushed" in result.stderr
    out = registry.workdir / "tycho_packages"
    assert not out.exists() or list(out.iterdir()) == []


def test_on_the_wire_a_pull_list_sends_two_plain_gets_per_package(
        proxy: FaultProxy, s3_registry: Registry) -> None:
    """What the server sees of ``pull-list`` of three small packages: three tycho.json
    GETs and three object GETs, none with a Range header, no HEAD."""
    for i, name in enumerate("xyz"):
        pushed(s3_registry, name, "1", 500 + i, i)
    s3_registry.endpoint = proxy.url
    s3_registry.write_config()
    proxy.clear()
    result = s3_registry.cli("pull-list", "x", "y", "z")
    assert result.exit_code == 0, result.output
    gets = [r for r in proxy.requests if r.method == "GET"]
    assert sorted(r.path.split("?")[0].rsplit("/", 2)[-2:][1] for r in gets) == \
        ["tycho.json"] * 3 + ["tycho_1.pkg"] * 3
    assert [r for r in proxy.requests if r.method != "GET"] == []
    assert [r.path for r in gets if "range" in r.headers] == []


def test_a_pull_list_into_a_symlinked_outdir_looks_at_each_file_still(
        registry: Registry) -> None:
    """The folder is resolved once per pull-list, each file is still looked at: files
    land in the folder the link points to, a localname that is a symlink out of it is
    refused (the other items pulled), and a second run finds them current."""
    blobs = [pushed(registry, name, "1", 300 + i, i) for i, name in enumerate("abc")]
    Path("real-deps").mkdir()
    Path("deps").symlink_to("real-deps")
    Path("precious").write_bytes(b"keep me")
    Path("real-deps/c.bin").symlink_to(Path("precious").absolute())
    result = registry.cli("pull-list", "a", "b", "c", "--outdir", "deps")
    assert result.exit_code == 2 and "outside" in result.stderr
    assert [Path(f"real-deps/{n}.bin").read_bytes() for n in "ab"] == blobs[:2]
    assert Path("precious").read_bytes() == b"keep me" and Path("deps").is_symlink()
    assert sorted(p.name for p in Path("real-deps").iterdir()) == [
        "a.bin", "a.bin.etag", "b.bin", "b.bin.etag", "c.bin"]
    again = registry.cli("pull-list", "a", "b", "--outdir", "deps", "--json")
    assert again.exit_code == 0, again.output
    assert [item["skipped"] for item in json.loads(again.stdout)["items"]] == [True, True]


def test_a_new_latest_over_a_local_copy_costs_a_head_and_a_plain_get(
        registry: Registry) -> None:
    """A sidecar there (the local copy may be current): a HEAD first, which tells the
    size, then the object whole with a plain GET, not a ranged one."""
    pushed(registry, "pkg", "1.0", 1000, 1)
    assert registry.cli("pull", "pkg").exit_code == 0
    blob = pushed(registry, "pkg", "2.0", 2000, 2)

    async def pull(store: FaultyStore, reg: Reg) -> None:
        await reg.pull_many([PullRequest("pkg")])

    store, _ = run(registry, pull)
    assert store.calls["head"] == 1 and store.ranges == [(0, None)]
    assert (registry.workdir / "tycho_packages" / "pkg.bin").read_bytes() == blob


@pytest.mark.parametrize("size", [1000, 2 * MiB])
def test_a_plain_get_whose_body_runs_past_the_recorded_size_is_refused(
        registry: Registry, size: int) -> None:
    """No Range asked, still bounded: a body that goes on past the size the record and
    the headers give is refused as it comes, and nothing is left on disk."""
    pushed(registry, "pkg", "1.0", size, 3)

    async def pull(store: FaultyStore, reg: Reg) -> None:
        store.inject("open_range", "extend")
        with pytest.raises(IntegrityError, match="longer than"):
            await reg.pull(PullRequest("pkg"))

    store, _ = run(registry, pull)
    assert store.ranges == [(0, None)]
    out = registry.workdir / "tycho_packages"
    assert not out.exists() or list(out.iterdir()) == []
