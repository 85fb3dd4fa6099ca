"""The Store contract (``tycho_async/storage/__init__.py``), one suite every store runs.

Each test opens its store as the product does (the registry fixture's config file,
``load_settings``, ``open_store``) on every backend: a local directory, S3 on moto and
S3 on SeaweedFS, and the S3 store's botocore path on moto (what serves every call once
a bucket answered from another region). Every observable sentence of the protocol's
docstrings has a test here; each test has a bucket (or directory) of its own, and
hypothesis examples a key prefix of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tycho_async.config import load_settings
from tycho_async.errors import MissingRegistry, NotFound, PreconditionFailed, StoreError
from tycho_async.storage import LocalOptions, ObjectInfo, Part, S3Options, Store, open_store
from tycho_async.storage.s3 import S3Store

from .support import Registry, _registry_on

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
PART = 5 * MiB  # S3's minimum part size (all parts but the last)
EXAMPLES = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# Key names a user may give: spaces, "+", "%", "&", "=", unicode; no segment that a
# local directory refuses ("", ".", "..") or hides (a leading ".").
SEGMENT = st.text(st.sampled_from("aZ09-_~ +%&=,;@!()'é中😀"), min_size=1, max_size=12)
KEYS = st.lists(SEGMENT, min_size=1, max_size=3).map("/".join)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclasses.dataclass
class Backend(Registry):
    """A registry of the conftest kind; ``botocore``: its S3 store goes through
    botocore, as after a redirect."""

    botocore: bool = False
    backend: str = ""  # the fixture's parameter


@pytest.fixture(params=["local", "s3", "s3-botocore", "seaweedfs"])
def registry(request: pytest.FixtureRequest, isolated_env: Path, tmp_path: Path) -> Backend:
    """The conftest fixture's backends, plus the S3 store's botocore path on moto."""
    botocore = request.param == "s3-botocore"
    made = _registry_on(request, "s3_endpoint" if botocore else "", isolated_env, tmp_path)
    return Backend(**vars(made), botocore=botocore, backend=request.param)


@contextlib.asynccontextmanager
async def opened(registry: Backend, **changes: Any) -> AsyncIterator[Store]:
    """The fixture registry's store, opened through its config as the CLI opens it
    (``changes`` replace fields of its options, e.g. another bucket)."""
    options = load_settings(str(registry.workdir / ".tychoreg.json"), environment=False).store
    async with open_store(dataclasses.replace(options, **changes)) as store:
        if registry.botocore:
            assert isinstance(store, S3Store)
            store._lean = None  # the store's botocore path, as after a redirect
        yield store


def unique() -> str:
    """A key prefix of one's own, for examples sharing a bucket."""
    return f"t-{uuid.uuid4().hex[:8]}/"


async def keys_under(store: Store, prefix: str) -> dict[str, ObjectInfo]:
    return {info.key: info async for info in store.list_keys(prefix)}


async def ranged(store: Store, key: str, start: int, end: int | None,
                 if_match: str | None = None) -> tuple[ObjectInfo, bytes]:
    async with store.open_range(key, start, end, if_match=if_match) as body:
        return body.info, b"".join([chunk async for chunk in body.chunks])


# -- missing objects ----------------------------------------------------------------------

async def test_a_missing_object_is_none_to_head_and_not_found_to_reads(
        registry: Backend) -> None:
    async with opened(registry) as store:
        assert await store.head("no/such") is None
        with pytest.raises(NotFound):
            await store.get_bytes("no/such")
        with pytest.raises(NotFound):
            await ranged(store, "no/such", 0, None)
        with pytest.raises(NotFound):
            await ranged(store, "no/such", 0, 10)
        assert await keys_under(store, "no/") == {}
        assert await store.list_dirs("no/") == []
        assert await store.list_uploads("no/") == []


async def test_a_prefix_of_other_keys_is_no_object(registry: Backend) -> None:
    """"dir" holds "dir/k" on a local disk; to the store it is a missing object."""
    async with opened(registry) as store:
        await store.put_bytes("dir/k", b"x")
        assert await store.head("dir") is None
        with pytest.raises(NotFound):
            await store.get_bytes("dir")
        with pytest.raises(NotFound):
            await ranged(store, "dir", 0, None)
        await store.delete("dir")
        assert set(await keys_under(store, "")) == {"dir/k"}


async def test_delete_removes_and_a_missing_object_is_no_error(registry: Backend) -> None:
    async with opened(registry) as store:
        await store.delete("never/was")
        await store.put_bytes("d/k", b"x")
        await store.delete("d/k")
        assert await store.head("d/k") is None
        await store.delete("d/k")
        assert registry.object_keys() == []


# -- whole objects ------------------------------------------------------------------------

@EXAMPLES
@given(key=KEYS, data=st.binary(max_size=300))
async def test_put_then_read_back_any_key(registry: Backend, key: str, data: bytes) -> None:
    """Bytes, size and ETag (quotes included) agree between put, head, get and list;
    keys that need encoding come back as they were written."""
    key = unique() + key
    async with opened(registry) as store:
        etag = await store.put_bytes(key, data)
        assert etag.startswith('"') and etag.endswith('"')
        info = await store.head(key)
        assert info is not None
        assert (info.key, info.size, info.etag) == (key, len(data), etag)
        assert await store.get_bytes(key) == (data, etag)
        listed = await keys_under(store, key)
        assert set(listed) == {key}
        assert (listed[key].size, listed[key].etag) == (len(data), etag)
        if registry.kind == "s3":  # a single PUT's ETag is the bytes' MD5 on S3
            assert info.md5 == hashlib.md5(data).hexdigest()
    assert registry.get(key) == data


@pytest.mark.parametrize("key", ["a%2Fb", "100%", "%", "a+b", "sp ace/x y", "~t", "ünï/cødé",
                                 "q?x=1&y=2", "#h", "a;b,c=d", "*'()!"])
async def test_keys_that_need_encoding(registry: Backend, key: str) -> None:
    async with opened(registry) as store:
        etag = await store.put_bytes(key, key.encode())
        assert await store.get_bytes(key) == (key.encode(), etag)
        assert (await ranged(store, key, 1, 3))[1] == key.encode()[1:3]
        assert set(await keys_under(store, key)) == {key}
        assert set(await keys_under(store, "")) == {key}
        await store.delete(key)
        assert await store.head(key) is None


async def test_keys_are_relative_to_the_registry_root(registry: Backend) -> None:
    """A registry under a prefix of its bucket (or a subdirectory) sees its keys only,
    without the prefix."""
    inner = {"prefix": "sub/"} if registry.kind == "s3" else {"root": Path(registry.root, "sub")}
    async with opened(registry) as outer:
        await outer.put_bytes("outside", b"")
        await outer.put_bytes("subx/k", b"")
    async with opened(registry, **inner) as store:
        await store.put_bytes("d/k", b"abc")
        upload_id, _ = await upload(store, "d/u", [b"x"])
        assert set(await keys_under(store, "")) == {"d/k"}
        assert (await keys_under(store, "d/"))["d/k"].size == 3
        assert await store.list_dirs("") == ["d"]
        assert [(u.key, u.upload_id) for u in await store.list_uploads("")] == [
            ("d/u", upload_id)]
        await store.abort_multipart("d/u", upload_id)
    assert registry.get("sub/d/k") == b"abc"


async def test_head_reports_the_time_by_both_clocks(registry: Backend) -> None:
    async with opened(registry) as store:
        await store.put_bytes("t/k", b"abc")
        info = await store.head("t/k")
    assert info is not None and info.modified is not None and info.server_time is not None
    assert abs(info.server_time - info.modified) < 3600


async def test_put_if_none_match_writes_only_an_absent_object(registry: Backend) -> None:
    async with opened(registry) as store:
        etag = await store.put_bytes("c/k", b"first", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await store.put_bytes("c/k", b"second", if_none_match=True)
        assert await store.get_bytes("c/k") == (b"first", etag)


async def test_put_if_match_needs_the_current_etag(registry: Backend) -> None:
    async with opened(registry) as store:
        stale = await store.put_bytes("m/k", b"one")
        current = await store.put_bytes("m/k", b"two")
        assert current != stale
        with pytest.raises(PreconditionFailed):
            await store.put_bytes("m/k", b"three", if_match=stale)
        assert await store.get_bytes("m/k") == (b"two", current)
        newer = await store.put_bytes("m/k", b"three", if_match=current)
        assert await store.get_bytes("m/k") == (b"three", newer)
        with pytest.raises(PreconditionFailed):
            await store.put_bytes("m/absent", b"x", if_match=newer)
        assert await store.head("m/absent") is None


# -- ranges -------------------------------------------------------------------------------

BLOB = bytes(range(10))


@pytest.mark.parametrize(("start", "end"), [
    (0, None), (0, 10), (0, 1), (2, 5), (9, 10), (3, 100), (0, 10**9), (4, None), (10, 20),
    (10, None)])
async def test_open_range_yields_the_clipped_bytes_and_the_whole_objects_info(
        registry: Backend, start: int, end: int | None) -> None:
    async with opened(registry) as store:
        etag = await store.put_bytes("r/k", BLOB)
        info, got = await ranged(store, "r/k", start, end)
        assert got == BLOB[start:end]
        assert (info.key, info.size, info.etag) == ("r/k", len(BLOB), etag)
        info, got = await ranged(store, "r/k", start, end, if_match=etag)
        assert got == BLOB[start:end]


@EXAMPLES
@given(data=st.binary(max_size=40), start=st.integers(0, 50),
       length=st.none() | st.integers(0, 60))
async def test_open_range_of_any_bounds(registry: Backend, data: bytes, start: int,
                                        length: int | None) -> None:
    key = unique() + "k"
    end = None if length is None else start + length
    async with opened(registry) as store:
        etag = await store.put_bytes(key, data)
        info, got = await ranged(store, key, start, end, if_match=etag)
    assert got == data[start:end]
    assert (info.size, info.etag) == (len(data), etag)


@pytest.mark.parametrize("end", [None, 1, 5])
async def test_open_range_of_an_empty_object(registry: Backend, end: int | None) -> None:
    async with opened(registry) as store:
        etag = await store.put_bytes("r/empty", b"")
        info, got = await ranged(store, "r/empty", 0, end, if_match=etag)
    assert got == b""
    assert (info.size, info.etag) == (0, etag)


@pytest.mark.parametrize(("start", "end"), [(0, None), (2, 5)])
async def test_open_range_with_a_stale_etag_is_precondition_failed(
        registry: Backend, start: int, end: int | None) -> None:
    async with opened(registry) as store:
        stale = await store.put_bytes("r/k", b"old bytes")
        await store.put_bytes("r/k", BLOB)
        with pytest.raises(PreconditionFailed):
            await ranged(store, "r/k", start, end, if_match=stale)


# -- listings -----------------------------------------------------------------------------

async def test_list_keys_is_every_key_starting_with_the_prefix(registry: Backend) -> None:
    """(No key is also a "directory" of others: a local directory cannot hold both.)"""
    async with opened(registry) as store:
        for key in ["p/a1", "p/ab", "p/a/b", "p/a/c/d", "p/b", "q/a"]:
            await store.put_bytes(key, key.encode())
        assert set(await keys_under(store, "p/a")) == {"p/a1", "p/ab", "p/a/b", "p/a/c/d"}
        assert set(await keys_under(store, "p/a/")) == {"p/a/b", "p/a/c/d"}
        assert set(await keys_under(store, "")) == {"p/a1", "p/ab", "p/a/b", "p/a/c/d",
                                                    "p/b", "q/a"}
        assert await keys_under(store, "p/z") == {}


MANY = 1_005  # past S3's page of 1,000 keys


async def test_list_keys_reads_every_page(registry: Backend) -> None:
    """1,005 tiny keys, written 16 at a time, some needing encoding."""
    names = [f"many/{i:04d} {'+%é'[i % 3]}" for i in range(MANY)]
    limiter = anyio.CapacityLimiter(16)
    async with opened(registry) as store:
        async def put(key: str) -> None:
            async with limiter:
                await store.put_bytes(key, b"")

        async with anyio.create_task_group() as tg:
            for key in names:
                tg.start_soon(put, key)
        await store.put_bytes("manyx", b"")
        listed = await keys_under(store, "many/")
    assert sorted(listed) == sorted(names)
    assert all(info.size == 0 for info in listed.values())


async def test_list_dirs_names_the_directories_directly_under(registry: Backend) -> None:
    async with opened(registry) as store:
        for key in ["p/d1/x", "p/d2/y/z", "p/d 3+é/w", "p/f", "q/d4/x"]:
            await store.put_bytes(key, b"")
        assert sorted(await store.list_dirs("p/")) == ["d 3+é", "d1", "d2"]
        assert sorted(await store.list_dirs("")) == ["p", "q"]
        assert await store.list_dirs("p/d2/") == ["y"]
        assert await store.list_dirs("p/d1/") == []
        assert await store.list_dirs("p/f/") == []
        assert await store.list_dirs("p/none/") == []


# -- multipart uploads --------------------------------------------------------------------

async def upload(store: Store, key: str, blobs: list[bytes], size: int | None = None
                 ) -> tuple[str, list[dict[str, str]]]:
    """Start an upload (of ``size`` bytes, 0 when not known; default: the blobs')
    and send ``blobs`` as its parts; its id and receipts."""
    upload_id = await store.create_multipart(key, sum(map(len, blobs)) if size is None
                                             else size)
    receipts, offset = [], 0
    for number, blob in enumerate(blobs, start=1):
        receipt = await store.upload_part(key, upload_id, Part(number, offset, len(blob)), blob)
        receipts.append(dict(receipt))
        offset += len(blob)
    return upload_id, receipts


async def test_multipart_round_trip(registry: Backend) -> None:
    """Three parts of S3's minimum size; the upload is listed until it completes."""
    blobs = [bytes([n]) * PART for n in range(3)]
    async with opened(registry) as store:
        upload_id, receipts = await upload(store, "mp/big file+é", blobs)
        assert [(u.key, u.upload_id) for u in await store.list_uploads("mp/")] == [
            ("mp/big file+é", upload_id)]
        assert await store.head("mp/big file+é") is None
        etag = await store.complete_multipart("mp/big file+é", upload_id, receipts,
                                              if_none_match=True)
        assert await store.list_uploads("mp/") == []
        info, got = await ranged(store, "mp/big file+é", 0, None)
        assert got == b"".join(blobs)
        assert (info.size, info.etag) == (3 * PART, etag)
        head = await store.head("mp/big file+é")
        assert head is not None and (head.size, head.etag) == (3 * PART, etag)
        assert etag.startswith('"') and etag.endswith('"')
        assert (await keys_under(store, "mp/"))["mp/big file+é"].etag == etag
        if registry.kind == "s3":
            assert head.md5 is None and etag.endswith('-3"')
    assert registry.object_keys() == ["mp/big file+é"]


async def test_complete_if_none_match_on_an_existing_object_is_precondition_failed(
        registry: Backend) -> None:
    async with opened(registry) as store:
        etag = await store.put_bytes("mp/k", b"first")
        upload_id, receipts = await upload(store, "mp/k", [b"second"], size=0)
        with pytest.raises(PreconditionFailed):
            await store.complete_multipart("mp/k", upload_id, receipts, if_none_match=True)
        assert await store.get_bytes("mp/k") == (b"first", etag)
        await store.abort_multipart("mp/k", upload_id)
        assert await store.list_uploads("mp/") == []


async def test_abort_drops_the_upload_and_a_gone_one_is_no_error(registry: Backend) -> None:
    async with opened(registry) as store:
        upload_id, _ = await upload(store, "ab/k", [b"part"])
        kept, _ = await upload(store, "ab/other", [b"part"])
        assert {u.upload_id for u in await store.list_uploads("ab/")} == {upload_id, kept}
        await store.abort_multipart("ab/k", upload_id)
        assert [u.upload_id for u in await store.list_uploads("ab/")] == [kept]
        await store.abort_multipart("ab/k", upload_id)
        await store.abort_multipart("ab/other", kept)
        assert await store.list_uploads("ab/") == []
        assert await store.head("ab/k") is None
    assert registry.object_keys() == []
    assert registry.multipart_uploads() == []


async def test_a_gone_upload_takes_no_parts_and_does_not_complete(registry: Backend) -> None:
    """NotFound on S3, StoreError on a local store (NotFound is a TychoError too)."""
    gone = (NotFound, StoreError)
    async with opened(registry) as store:
        upload_id, receipts = await upload(store, "g/k", [b"part"])
        await store.abort_multipart("g/k", upload_id)
        with pytest.raises(gone):
            await store.upload_part("g/k", upload_id, Part(1, 0, 4), b"more")
        with pytest.raises(gone):
            await store.complete_multipart("g/k", upload_id, receipts, if_none_match=False)
        assert await store.head("g/k") is None


async def test_list_uploads_is_every_upload_of_keys_starting_with_the_prefix(
        registry: Backend) -> None:
    async with opened(registry) as store:
        ids = {key: (await upload(store, key, [b"x"]))[0]
               for key in ["u/a1", "u/ab", "u/a/b", "u/a/c/d", "v/a"]}
        for prefix, keys in [("u/a", {"u/a1", "u/ab", "u/a/b", "u/a/c/d"}),
                             ("u/a/", {"u/a/b", "u/a/c/d"}),
                             ("", set(ids)), ("u/z", set())]:
            found = await store.list_uploads(prefix)
            assert {(u.key, u.upload_id) for u in found} == {(k, ids[k]) for k in keys}
            assert all(u.initiated > 0 for u in found)
        for key, upload_id in ids.items():
            await store.abort_multipart(key, upload_id)
        assert await store.list_uploads("") == []


# -- the store itself ---------------------------------------------------------------------

async def test_root_exists_and_creates_root(registry: Backend) -> None:
    missing = {"bucket": f"missing-{uuid.uuid4().hex[:12]}"} if registry.kind == "s3" \
        else {"root": registry.workdir / "missing"}
    async with opened(registry) as store:
        assert await store.root_exists()
        assert store.creates_root is (registry.kind == "local")
        assert registry.root in store.location
    async with opened(registry, **missing) as store:
        assert not await store.root_exists()
        if registry.kind == "s3":
            with pytest.raises(MissingRegistry):
                await keys_under(store, "")
        else:
            await store.put_bytes("k", b"x")  # a first write creates the directory
            assert await store.root_exists()


async def test_a_bucket_we_may_not_look_at_counts_as_existing(registry: Backend) -> None:
    """Keys the store refuses (403) stand for a policy that allows no HeadBucket: only
    SeaweedFS checks signatures."""
    if registry.backend != "seaweedfs":
        pytest.skip("only SeaweedFS refuses a request (moto checks no signature)")
    options = load_settings(str(registry.workdir / ".tychoreg.json"), environment=False).store
    assert isinstance(options, S3Options)
    refused = {**options.client_kwargs, "aws_secret_access_key": "not-the-secret"}
    async with opened(registry, client_kwargs=refused) as store:
        assert await store.root_exists()


async def test_the_store_is_an_async_resource(registry: Backend) -> None:
    """Entered, it is itself; closed twice (``aclose``, then the block's end) is fine;
    a cancelled block still releases its connections (S3: none left idle)."""
    options = load_settings(str(registry.workdir / ".tychoreg.json"),
                            environment=False).store
    assert isinstance(options, S3Options | LocalOptions)
    async with open_store(options) as store:
        async with store as same:
            assert same is store
            await store.put_bytes("k", b"x")
        await store.aclose()
    with anyio.CancelScope() as scope:
        async with open_store(options) as store:
            assert await store.get_bytes("k") == (b"x", (await store.head("k") or
                                                          ObjectInfo("", 0, "")).etag)
            scope.cancel()
            await anyio.sleep(30)
    assert scope.cancelled_caught
    if isinstance(store, S3Store):
        assert not store._pool._idle
