"""The transfer engine against both stores, with parts far below S3's minimum to stay fast."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tycho_async.errors import (
    IntegrityError,
    NotFound,
    PreconditionFailed,
    StoreError,
    TransferError,
)
from tycho_async.localfs import LocalFS
from tycho_async.storage import (
    ObjectInfo,
    S3Options,
    Store,
    open_store,
)
from tycho_async.transfer import Engine, Expected, TransferSettings, plan_parts
from tycho_async.transfer.plan import (
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    GiB,
    parts_in_memory,
    plan_ranges,
)

from .faults import FaultyStore
from .support import (
    CREDS,
    PART,
    REGION,
    SMALL,
    by_etag,
    make_bucket,
    opened,
    s3_client,
    write_file,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SupportsLenAndGetItem

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def fetch(engine: Engine, info: ObjectInfo, dest: Path, expected: Expected) -> str:
    """Download a known object; its SHA-256."""
    return (await engine.download(info.key, dest, known=info, expected=expected,
                                  label="k"))[1]


async def stored(engine: Engine, path: Path) -> ObjectInfo:
    """Upload ``path`` as "k" and return what the store says of it."""
    await engine.upload_file(path, "k", label="k")
    info = await engine.head("k")
    assert info is not None
    return info


def leftovers(kind: str, store: Store, request: pytest.FixtureRequest, where: str,
                    tmp_path: Path) -> list[str]:
    """Multipart uploads in progress (S3) or temporary files (local) left behind."""
    if kind == "s3":
        client = s3_client(request.getfixturevalue("s3_endpoint"))
        return [u["Key"] for u in client.list_multipart_uploads(Bucket=where).get("Uploads", [])]
    return sorted(p.name for p in Path(where).rglob(".*") if p.name != ".tychoreg.lock")


@pytest.mark.parametrize("size", [0, 1, PART - 1, PART, PART + 1, 3 * PART + 5])
async def test_round_trip_across_part_boundaries(kind: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest,
                                                 size: int) -> None:
    blob = write_file(tmp_path / "src.bin", size, seed=size)
    async with opened(kind, tmp_path, request) as (store, _):
        engine = Engine(store, SMALL)
        result = await engine.upload_file(tmp_path / "src.bin", "p/tycho_1.pkg", label="p 1")
        assert result.sha256 == hashlib.sha256(blob).hexdigest()
        assert result.parts == (-(-size // PART) if size > PART else 1)
        info = await engine.head("p/tycho_1.pkg")
        assert info is not None and info.size == size
        dest = tmp_path / "out" / "dst.bin"
        dest.parent.mkdir()
        digest = await fetch(engine, info, dest, Expected(size, sha256=result.sha256))
        assert dest.read_bytes() == blob and digest == result.sha256
        ranges = len(plan_ranges(size, SMALL))
        assert engine.stats.ranged_gets == (ranges if size > PART else 0)
        assert [p.name for p in dest.parent.iterdir()] == ["dst.bin"]


async def test_multipart_upload_is_really_multipart_on_s3(tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 5 * PART + 3)
    async with opened("s3", tmp_path, request) as (store, bucket):
        engine = Engine(store, SMALL)
        await engine.upload_file(tmp_path / "src.bin", "k", label="k")
        head = s3_client(request.getfixturevalue("s3_endpoint")).head_object(Bucket=bucket,
                                                                             Key="k")
        assert head["ETag"].endswith('-6"')  # S3's multipart ETag: MD5 of MD5s, "-" parts
        assert engine.stats.multipart_uploads == 1


async def test_budget_is_never_exceeded_and_is_used(kind: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 12 * PART)
    settings = replace(SMALL, concurrency=3)
    async with opened(kind, tmp_path, request, settings) as (inner, _):
        store = FaultyStore(inner, delay=0.02)
        engine = Engine(store, settings)
        await engine.upload_file(tmp_path / "src.bin", "k", label="k")
        info = await engine.head("k")
        assert info is not None
        await fetch(engine, info, tmp_path / "dst.bin", Expected(info.size))
        stats = engine.budget.statistics()
        assert stats.limit == 3 and stats.in_flight == 0
        assert stats.peak == 3 and store.peak == 3


async def test_a_failed_part_aborts_the_upload(kind: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 8 * PART)
    async with opened(kind, tmp_path, request) as (inner, where):
        store = FaultyStore(inner)
        store.inject("upload_part", None, None, StoreError("access denied"))
        engine = Engine(store, SMALL)
        with pytest.raises(StoreError, match="access denied"):
            await engine.upload_file(tmp_path / "src.bin", "k", label="k")
        assert store.calls["abort_multipart"] == 1
        assert await engine.head("k") is None
        assert leftovers(kind, inner, request, where, tmp_path) == []


async def test_transient_errors_are_retried(kind: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    blob = write_file(tmp_path / "src.bin", 4 * PART + 9)
    async with opened(kind, tmp_path, request) as (inner, _):
        store = FaultyStore(inner)
        slow_down = StoreError("SlowDown", transient=True)
        store.inject("upload_part", slow_down, None, slow_down)
        store.inject("complete_multipart", StoreError("503", transient=True))
        store.inject("open_range", StoreError("reset", transient=True), "truncate")
        store.inject("head", StoreError("500", transient=True))
        engine = Engine(store, SMALL)
        info = await stored(engine, tmp_path / "src.bin")
        dest = tmp_path / "dst.bin"
        await fetch(engine, info, dest,
                    Expected(info.size, sha256=hashlib.sha256(blob).hexdigest()))
        assert dest.read_bytes() == blob
        assert engine.stats.retries == 6


async def test_a_truncated_body_resumes_where_it_stopped(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    blob = write_file(tmp_path / "src.bin", PART + 1000)
    async with opened(kind, tmp_path, request, replace(SMALL, multipart_threshold=10 * PART)) \
            as (inner, _):
        store = FaultyStore(inner)
        engine = Engine(store, replace(SMALL, multipart_threshold=10 * PART))
        await engine.upload_file(tmp_path / "src.bin", "k", label="k")
        info = await engine.head("k")
        assert info is not None
        store.inject("open_range", "truncate")
        await fetch(engine, info, tmp_path / "dst.bin", Expected(info.size))
        assert (tmp_path / "dst.bin").read_bytes() == blob
        first, second = store.ranges
        assert first == (0, None) and 0 < second[0] <= len(blob) // 2 + 1  # whole: no Range
        assert second[1] == len(blob)


async def test_permanent_download_failure_leaves_nothing(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 3 * PART)
    async with opened(kind, tmp_path, request) as (inner, _):
        store = FaultyStore(inner)
        engine = Engine(store, SMALL)
        info = await stored(engine, tmp_path / "src.bin")
        store.inject("open_range", None, StoreError("access denied"))
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(StoreError, match="access denied"):
            await fetch(engine, info, out / "dst.bin", Expected(info.size))
        assert list(out.iterdir()) == []


async def test_transient_errors_give_up_after_max_attempts(kind: str, tmp_path: Path,
                                                           request: pytest.FixtureRequest) -> None:
    async with opened(kind, tmp_path, request) as (inner, _):
        store = FaultyStore(inner)
        store.inject("put_bytes", *[StoreError("SlowDown", transient=True)] * 10)
        engine = Engine(store, SMALL)
        with pytest.raises(StoreError, match="SlowDown"):
            await engine.put_bytes("k", b"x")
        assert store.calls["put_bytes"] == SMALL.max_attempts


async def test_corruption_in_flight_is_caught(kind: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    blob = write_file(tmp_path / "src.bin", 2 * PART + 1)
    async with opened(kind, tmp_path, request) as (inner, _):
        store = FaultyStore(inner)
        engine = Engine(store, SMALL)
        info = await stored(engine, tmp_path / "src.bin")
        store.inject("open_range", None, "corrupt")
        good = hashlib.sha256(blob).hexdigest()
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(IntegrityError, match=f"pushed {good}"):
            await fetch(engine, info, out / "dst.bin", Expected(info.size, sha256=good))
        assert list(out.iterdir()) == []
        store.inject("open_range", "corrupt")
        with pytest.raises(IntegrityError, match="MD5 mismatch"):
            await fetch(engine, info, out / "dst.bin",
                        Expected(info.size, md5=hashlib.md5(blob).hexdigest()))
        assert list(out.iterdir()) == []


async def test_cancellation_cleans_up(kind: str, tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 10 * PART)
    async with opened(kind, tmp_path, request) as (inner, where):
        engine = Engine(inner, SMALL)
        await engine.upload_file(tmp_path / "src.bin", "done", label="k")
        info = await engine.head("done")
        assert info is not None
        faulty = FaultyStore(inner, delay=1.0, slow=frozenset({"upload_part", "open_range"}))
        slow = Engine(faulty, SMALL)
        out = tmp_path / "out"
        out.mkdir()
        with anyio.move_on_after(0.3):
            await slow.upload_file(tmp_path / "src.bin", "k", label="k")
        with anyio.move_on_after(0.3):
            await fetch(slow, info, out / "dst.bin", Expected(info.size))
        assert faulty.calls["upload_part"] and faulty.calls["open_range"]  # cut mid-transfer
        assert await engine.head("k") is None
        assert leftovers(kind, inner, request, where, tmp_path) == []
        assert list(out.iterdir()) == []


async def test_conditional_writes_refuse_to_overwrite(kind: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "a.bin", 3 * PART, seed=1)
    b = write_file(tmp_path / "b.bin", 3 * PART, seed=2)
    async with opened(kind, tmp_path, request) as (store, _):
        engine = Engine(store, SMALL)
        await engine.upload_file(tmp_path / "b.bin", "k", label="k")
        with pytest.raises(PreconditionFailed):
            await engine.upload_file(tmp_path / "a.bin", "k", label="k")
        etag = await engine.put_bytes("meta", b"1", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await engine.put_bytes("meta", b"2", if_none_match=True)
        await engine.put_bytes("meta", b"3", if_match=etag)
        with pytest.raises(PreconditionFailed):
            await engine.put_bytes("meta", b"4", if_match=etag)
        assert (await engine.get_bytes("meta"))[0] == b"3"
        assert (await engine.get_bytes("k"))[0] == b


@given(st.integers(0, 300 * GiB), st.sampled_from([5 * 1024**2, 8 * 1024**2, 64 * 1024**2]))
def test_plan_covers_the_file_within_s3_limits(size: int, part_size: int) -> None:
    parts = plan_parts(size, part_size)
    assert len(parts) <= MAX_PARTS
    assert parts[0].offset == 0 and parts[-1].end == size
    for before, after in itertools.pairwise(parts):
        assert before.end == after.offset and after.number == before.number + 1
    assert all(MIN_PART <= p.size <= MAX_PART for p in parts[:-1])
    assert parts[-1].size <= MAX_PART


def test_plan_of_a_200_gb_file() -> None:
    parts = plan_parts(200 * 1000**3, 8 * 1024**2)
    assert len(parts) <= MAX_PARTS and parts[0].size > 8 * 1024**2


@given(st.integers(0, 300 * GiB), st.integers(1, 64), st.sampled_from([0, 1, 8 * 1024**2]))
def test_download_ranges_cover_the_object(size: int, concurrency: int, head: int) -> None:
    settings = TransferSettings(concurrency=concurrency)
    ranges = plan_ranges(size, settings, head=head)
    if head and size > settings.multipart_threshold:
        assert ranges[0].size == head
    assert ranges[0].offset == 0 and ranges[-1].end == size
    assert all(a.end == b.offset for a, b in itertools.pairwise(ranges))
    assert all(r.size <= GiB for r in ranges)
    if settings.multipart_threshold < size <= min(concurrency, settings.max_ranges) * GiB:
        assert len(ranges) <= min(concurrency, settings.max_ranges) + (1 if head else 0)


@pytest.mark.parametrize(("concurrency", "part_size", "expected"), [
    (16, 8 * 1024**2, 5), (16, 5 * 1024**2, 8), (16, 64 * 1024**2, 4), (2, 64 * 1024**2, 2),
    (1, 5 * 1024**2, 1)])
def test_upload_parts_in_memory_are_bounded(concurrency: int, part_size: int,
                                            expected: int) -> None:
    settings = TransferSettings(concurrency=concurrency, part_size=part_size)
    assert parts_in_memory(settings, part_size) == expected


@pytest.mark.parametrize("size", [0, 1, PART - 1, PART + 1, 5 * PART + 7])
async def test_download_of_unknown_size_starts_with_a_get(kind: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest,
                                                          size: int) -> None:
    blob = write_file(tmp_path / "src.bin", size, seed=size)
    async with opened(kind, tmp_path, request) as (inner, _):
        await Engine(inner, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        store = FaultyStore(inner)
        engine = Engine(store, SMALL)
        info, digest = await engine.download("k", tmp_path / "dst.bin", label="k", expected=by_etag)
        assert (tmp_path / "dst.bin").read_bytes() == blob
        assert info.size == size and digest == hashlib.sha256(blob).hexdigest()
        assert store.calls["head"] == 0
        assert store.calls["open_range"] == len(plan_ranges(size, SMALL, head=PART))
        assert store.ranges[0][0] == 0


async def test_a_cut_first_get_is_resumed(kind: str, tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    blob = write_file(tmp_path / "src.bin", PART - 10)
    async with opened(kind, tmp_path, request) as (inner, _):
        await Engine(inner, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        store = FaultyStore(inner)
        store.inject("open_range", "truncate")
        await Engine(store, SMALL).download("k", tmp_path / "dst.bin", label="k",
                                         expected=by_etag)
        assert (tmp_path / "dst.bin").read_bytes() == blob
        assert store.ranges[1] == ((PART - 10) // 2, PART - 10)


async def test_a_stream_sink_that_fails_is_called_once_and_never_retried(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A sink's own error (a full disk, a closed pipe) ends the download as it is: the
    bytes it refused are not handed to it again, and no GET is asked again for them."""
    write_file(tmp_path / "src.bin", 3 * PART)
    async with opened(kind, tmp_path, request) as (inner, _):
        await Engine(inner, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        store = FaultyStore(inner)
        given: list[int] = []

        def sink(data: bytes) -> None:
            given.append(len(data))
            raise TransferError("cannot write the output: No space left on device")

        with pytest.raises(TransferError, match="No space left on device"):
            await Engine(store, SMALL).download_stream("k", sink, label="k",
                                                       expected=by_etag)
        assert len(given) == 1 and store.calls["open_range"] == 1


@pytest.mark.parametrize("size", [0, 1, 1000])
async def test_a_small_object_is_written_once_and_refetched_whole_when_cut(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest, size: int) -> None:
    """Up to ``small_object`` bytes stay in memory: no temp file is written piecewise,
    and a cut body is simply asked again from the start."""
    blob = write_file(tmp_path / "src.bin", size)
    async with opened(kind, tmp_path, request) as (inner, _):
        await Engine(inner, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        store = FaultyStore(inner)
        store.inject("open_range", "truncate")
        out = tmp_path / "out"
        out.mkdir()
        engine = Engine(store, SMALL)
        writes: list[int] = []
        real = engine.fs.sys_pwrite

        def counting_pwrite(fd: int, data: ReadableBuffer, offset: int) -> int:
            writes.append(len(memoryview(data)))
            return real(fd, data, offset)

        engine.fs.sys_pwrite = counting_pwrite
        info, sha = await engine.download("k", out / "dst.bin", label="k", expected=by_etag)
        assert (out / "dst.bin").read_bytes() == blob and info.size == size
        assert sha == hashlib.sha256(blob).hexdigest()
        assert writes == ([size] if size else [])  # one write of the whole object
        cut = 1 if size else 0  # an empty body cannot be cut short
        assert store.ranges == [(0, PART)] * (1 + cut)
        assert [p.name for p in out.iterdir()] == ["dst.bin"]


async def test_download_of_a_missing_object(kind: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    async with opened(kind, tmp_path, request) as (store, _):
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(NotFound):
            await Engine(store, SMALL).download("nope", out / "dst.bin", label="k",
                                                 expected=by_etag)
        assert list(out.iterdir()) == []


@pytest.mark.parametrize("checksums", [True, False])
async def test_multipart_parts_carry_crc32_checksums_on_s3(
        tmp_path: Path, request: pytest.FixtureRequest, checksums: bool) -> None:
    """As s3transfer: the upload is created with CRC32 and completed with each part's;
    ``checksums: false`` (stores that refuse them) sends none."""
    blob = write_file(tmp_path / "src.bin", 3 * PART + 1)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = make_bucket(endpoint)
    options = S3Options(bucket, checksums=checksums, client_kwargs={
        "endpoint_url": endpoint, "region_name": REGION, **CREDS},
        max_connections=SMALL.concurrency + 2, chunk_size=SMALL.chunk_size)
    async with open_store(options) as store:
        await Engine(store, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
    client = s3_client(endpoint)
    head = client.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert bool(head.get("ChecksumCRC32")) is checksums
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == blob


async def test_a_put_whose_answer_was_lost_is_recognised_on_retry(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The retry's If-None-Match finds the object the first attempt wrote: ours, by size
    and MD5, so the upload succeeds instead of reporting "already exists"."""
    blob = write_file(tmp_path / "src.bin", 1000)
    async with opened("s3", tmp_path, request) as (inner, _):
        store = FaultyStore(inner)
        store.inject("put_bytes", "landed")
        result = await Engine(store, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        assert store.calls["put_bytes"] == 2
        assert result.etag.strip('"') == hashlib.md5(blob).hexdigest()
        write_file(tmp_path / "other.bin", 1000, seed=9)
        with pytest.raises(PreconditionFailed):  # someone else's object is still refused
            await Engine(store, SMALL).upload_file(tmp_path / "other.bin", "k", label="k")


async def test_a_range_cut_more_often_than_the_attempts_still_completes_while_it_moves(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Seven cuts in a row (more than the five attempts a request has), each after half
    of what was left: every cut moves the cursor, so the download goes on and completes."""
    blob = write_file(tmp_path / "src.bin", 4 * PART)
    async with opened(kind, tmp_path, request) as (inner, _):
        info = await stored(Engine(inner, SMALL), tmp_path / "src.bin")
        store = FaultyStore(inner)
        store.inject("open_range", *["truncate"] * 7)
        settings = replace(SMALL, concurrency=1, max_ranges=1, part_size=4 * PART)
        await Engine(store, settings).download("k", tmp_path / "dst.bin", known=info,
                                               label="k", expected=by_etag)
        assert (tmp_path / "dst.bin").read_bytes() == blob
        assert store.calls["open_range"] == 8


def short_writes() -> LocalFS:
    """A disk that takes at most 1000 bytes a write, as pwrite may."""
    fs = LocalFS()

    def short_pwrite(fd: int, data: ReadableBuffer, offset: int) -> int:
        return os.pwrite(fd, memoryview(data)[:1000], offset)

    def short_pwritev(fd: int, chunks: SupportsLenAndGetItem[ReadableBuffer], offset: int,
                      flags: int = 0) -> int:
        return os.pwrite(fd, memoryview(chunks[0])[:1000], offset)

    fs.sys_pwrite = short_pwrite
    fs.sys_pwritev = short_pwritev
    return fs


def failing_disk(*, write: bool = False, read: bool = False) -> LocalFS:
    """A disk whose writes take nothing, or whose reads fail with EIO."""
    fs = LocalFS()

    def no_read(fd: int, size: int, offset: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def no_pwrite(fd: int, data: ReadableBuffer, offset: int) -> int:
        return 0

    def no_pwritev(fd: int, chunks: SupportsLenAndGetItem[ReadableBuffer], offset: int,
                   flags: int = 0) -> int:
        return 0

    if write:
        fs.sys_pwrite = no_pwrite
        fs.sys_pwritev = no_pwritev
    if read:
        fs.sys_pread = no_read
    return fs


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_short_writes_are_continued(kind: str, tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    blob = write_file(tmp_path / "src.bin", 300_000)
    async with opened(kind, tmp_path, request) as (store, _):
        engine = Engine(store, SMALL, fs=short_writes())
        result = await engine.upload_file(tmp_path / "src.bin", "k", label="k")
        info, _ = await engine.download("k", tmp_path / "dst.bin", label="k",
                                          expected=Expected(len(blob), sha256=result.sha256))
        assert (tmp_path / "dst.bin").read_bytes() == blob and info.size == len(blob)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_disk_that_takes_nothing_or_cannot_read_fails_cleanly(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 300_000)
    async with opened(kind, tmp_path, request) as (store, _):
        await Engine(store, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        (tmp_path / "out").mkdir()
        with pytest.raises(TransferError, match="cannot write the download: the disk"):
            await Engine(store, SMALL, fs=failing_disk(write=True)).download(
                "k", tmp_path / "out" / "dst.bin", label="k", expected=by_etag)
        with pytest.raises(TransferError, match="cannot read the file: Input/output error"):
            await Engine(store, SMALL, fs=failing_disk(read=True)).upload_file(
                tmp_path / "src.bin", "k2", label="k2")
        with pytest.raises(TransferError, match="cannot read the download: Input/output"):
            await Engine(store, SMALL, fs=failing_disk(read=True)).download(
                "k", tmp_path / "out" / "dst.bin", label="k", expected=by_etag)
        assert list((tmp_path / "out").iterdir()) == []


def test_a_size_learned_from_the_first_bytes_starts_the_bar(tmp_path: Path) -> None:
    async def main() -> list[int]:
        from tycho_async.storage.local import LocalStore

        store = LocalStore(tmp_path / "reg")
        await store.put_bytes("k", b"z" * (3 * 64 * 1024))
        seen: list[int] = []

        class Sink:
            def begin(self, label: str, total: int) -> object:
                seen.append(total)

                class Task:
                    def advance(self, n: int) -> None:
                        return None

                    def end(self, ok: bool) -> None:
                        return None

                return Task()

        engine = Engine(store, SMALL, Sink())  # type: ignore[arg-type]
        await engine.download("k", tmp_path / "out.bin", label="k", expected=by_etag)
        return seen

    assert anyio.run(main) == [3 * 64 * 1024]
