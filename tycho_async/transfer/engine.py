"""The engine: moves bytes between files and a Store, every request within one Budget.

- Uploads above the threshold are multipart: one reader goes through the file in order
  (hashing as it reads, so the SHA-256 costs no second pass) and hands each part to its
  own sender; a part's budget slot is taken before it is read, and at most
  ``parts_in_memory`` parts are held at once.
- Downloads are ranged GETs written at their offsets into a temporary file beside the
  destination. When the size is not known yet, the first GET learns it (and brings a
  small object whole); when the caller knows it (a record) and one GET covers it, that
  GET is a plain one, without a Range, which costs a store less. A hasher follows the
  ranges in order, re-reading them from the page cache, and the file is renamed into
  place only once size and digests check out.
- A download is bounded by what the caller expects: an object of another size is
  refused on the headers of its first answer, before a byte is written, and a body that
  goes on past the object's end (a hostile or broken server) is refused as it comes.
- Every request is retried on transient errors with exponential backoff and full jitter;
  an interrupted ranged GET resumes where its body stopped.
- One owner per failure cleanup: the upload aborts its multipart upload, the download
  removes its temporary file, whatever the failure or cancellation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from ..errors import IntegrityError, PreconditionFailed, StoreError, TransferError, TychoError
from ..hashing import BackgroundSha256
from ..localfs import LocalFS
from ..storage import ObjectInfo, PartReceipt, Store, UploadInfo
from .budget import Budget, Lease
from .groups import task_group
from .plan import (
    MAX_PARTS,
    Part,
    TransferSettings,
    parts_in_memory,
    plan_parts,
    plan_ranges,
    stream_part_size,
)
from .retry import Backoff, RetryPolicy

T = TypeVar("T")
log = logging.getLogger(__name__)


class TaskProgress(Protocol):
    def advance(self, nbytes: int) -> None:
        """Bytes moved (kept: a retry resumes after them)."""

    def end(self, ok: bool) -> None: ...


class ProgressSink(Protocol):
    def begin(self, label: str, total: int | None) -> TaskProgress:
        """A transfer of ``total`` bytes starts (None: a stream of unknown length)."""


class _NoTask:
    def advance(self, nbytes: int) -> None:
        return None

    def end(self, ok: bool) -> None:
        return None


class NoProgress:
    def begin(self, label: str, total: int | None) -> TaskProgress:
        return _NoTask()


@dataclass(frozen=True)
class UploadResult:
    size: int
    sha256: str
    etag: str
    parts: int


@dataclass(frozen=True)
class Expected:
    """What a download must match before it may become the destination."""

    size: int
    sha256: str | None = None
    md5: str | None = None


@dataclass
class EngineStatistics:
    requests: int = 0
    retries: int = 0
    ranged_gets: int = 0  # GETs of one range among several of an object
    multipart_uploads: int = 0


SHIELD_SECONDS = 120  # the longest a signal waits for a version's publication to be recorded
CLEANUP_SECONDS = 15  # the longest an interrupted upload spends aborting itself
MAX_IOV = 512  # chunks written by one pwritev (the system's limit is 1024)
INLINE = 64 * 1024  # small objects up to this size are written without a thread hop


class Engine:
    def __init__(
        self,
        store: Store,
        settings: TransferSettings | None = None,
        progress: ProgressSink | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        retry: RetryPolicy | None = None,
        fs: LocalFS | None = None,
    ) -> None:
        self.store = store
        self.fs = fs or LocalFS()
        self.settings = settings or TransferSettings()
        self.progress: ProgressSink = progress or NoProgress()
        self.budget = Budget(self.settings.concurrency)
        self.stats = EngineStatistics()
        self.retry = retry or RetryPolicy(self.settings, sleep=sleep)

    # -- one request: a budget slot, retries with backoff ---------------------------------

    async def backoff(self, attempt: int, error: TychoError, backoff: Backoff | None = None
                      ) -> None:
        """Wait before retrying after ``error`` as the retry policy says (``backoff``: the
        kind of wait, the request's by default), counted and logged under --debug."""
        self.stats.retries += 1
        delay = await self.retry.wait(backoff or self.retry.request, attempt)
        log.debug("retry %d after %.2f s: %s", attempt + 1, delay, error.message)

    async def call(self, fn: Callable[[], Awaitable[T]], lease: Lease | None = None) -> T:
        """Run one request within the budget, retrying transient failures with backoff.
        ``lease``: a slot already taken, for the first attempt."""
        for attempt in range(self.retry.attempts):
            slot = lease if attempt == 0 and lease is not None else await self.budget.acquire()
            try:
                async with slot:
                    self.stats.requests += 1
                    return await fn()
            except StoreError as exc:
                if not exc.transient or attempt + 1 == self.retry.attempts:
                    raise
                await self.backoff(attempt, exc)
        raise AssertionError("unreachable")

    async def head(self, key: str) -> ObjectInfo | None:
        return await self.call(lambda: self.store.head(key))

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        return await self.call(lambda: self.store.get_bytes(key))

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        return await self.call(
            lambda: self.store.put_bytes(key, data, if_none_match=if_none_match,
                                         if_match=if_match)
        )

    async def list_keys(self, prefix: str) -> list[ObjectInfo]:
        async def collect() -> list[ObjectInfo]:
            return [info async for info in self.store.list_keys(prefix)]

        return await self.call(collect)

    async def list_dirs(self, prefix: str) -> list[str]:
        return await self.call(lambda: self.store.list_dirs(prefix))

    async def delete(self, key: str) -> None:
        await self.call(lambda: self.store.delete(key))

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return await self.call(lambda: self.store.list_uploads(prefix))

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self.call(lambda: self.store.abort_multipart(key, upload_id))

    async def root_exists(self) -> bool:
        return await self.call(self.store.root_exists)

    # -- upload ------------------------------------------------------------------------------

    async def upload_file(self, path: Path, key: str, *, label: str,
                          then: Published | None = None) -> UploadResult:
        """Upload ``path`` to ``key`` unless ``key`` exists (PreconditionFailed then).

        ``then`` runs right after the object is published, in the same shielded scope
        as the request that publishes it: a signal waits (bounded) until the caller has
        recorded what it published, so no version is left published but unrecorded."""
        fd = await anyio.to_thread.run_sync(self.fs.open_read, path)
        then = then or _nothing_then
        try:
            size = os.fstat(fd).st_size
            task = self.progress.begin(label, size)
            hasher = hashlib.sha256()
            try:
                if size <= self.settings.multipart_threshold:
                    data = await anyio.to_thread.run_sync(self._read_and_hash, fd, 0, size,
                                                          hasher)
                    result = await self._upload_single(data, key, hasher, task, then)
                else:
                    result = await self._upload_multipart(fd, size, key, hasher, task, then)
            except BaseException:
                task.end(False)
                raise
        finally:
            self.fs.close(fd)
        task.end(True)
        return result

    async def upload_stream(self, source: Iterator[bytes], key: str, *, label: str,
                            then: Published | None = None) -> UploadResult:
        """Upload the bytes ``source`` yields (a blocking iterator of unknown length: a
        pipe, a compressor) to ``key`` unless it exists, with ``then`` as for
        ``upload_file``. Up to the multipart threshold it is one PUT; beyond, a multipart
        upload whose parts grow (``stream_part_size``) so any length fits in 10,000 parts.
        Memory stays bounded as for files: the part being filled plus the parts in
        flight. The source is read in a worker thread, hashed as it is read."""
        then = then or _nothing_then
        hasher = BackgroundSha256()  # hashed beside the reading (and the compressing)
        reader = _StreamReader(source, hasher)
        task = self.progress.begin(label, None)
        first_size = self.settings.multipart_threshold + 1
        try:
            first = await anyio.to_thread.run_sync(reader.read, first_size,
                                                   abandon_on_cancel=True)
            if len(first) < first_size:
                result = await self._upload_single(first, key, hasher, task, then)
            else:
                result = await self._upload_unknown(reader, first, key, hasher, task, then)
        except BaseException:
            task.end(False)
            raise
        finally:
            hasher.close()
        task.end(True)
        return result

    def _read_and_hash(self, fd: int, offset: int, size: int, hasher: Any) -> bytes:
        data = self.fs.pread(fd, size, offset, "read the file")
        if len(data) != size:
            raise TransferError("the file changed size while it was being uploaded")
        hasher.update(data)
        return data

    async def _upload_single(
        self, data: bytes, key: str, hasher: Any, task: TaskProgress, then: Published,
    ) -> UploadResult:
        size = len(data)
        attempts = 0

        async def put() -> str:
            nonlocal attempts
            attempts += 1
            try:
                return await self.store.put_bytes(key, data, if_none_match=True)
            except PreconditionFailed:
                # A retried PUT whose first attempt did land finds its own object: same
                # size, and an ETag that is the MD5 of these bytes.
                if attempts > 1:
                    info = await self.store.head(key)
                    if (info is not None and info.size == size
                            and info.md5 == hashlib.md5(data).hexdigest()):
                        return info.etag
                raise

        try:
            etag = await self.call(put)
        except BaseException:
            # A PUT cut short by a signal or a lost answer may have landed all the same:
            # if the object is these bytes, it is recorded before the error goes on.
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHIELD_SECONDS):
                info = await _quietly(self.store.head(key))
                if (info is not None and info.size == size
                        and info.md5 == hashlib.md5(data).hexdigest()):
                    await then(UploadResult(size, hasher.hexdigest(), info.etag, 1))
            raise
        with _shielded(f"upload of {key}"):
            task.advance(size)
            result = UploadResult(size, hasher.hexdigest(), etag, 1)
            await then(result)
        return result

    async def _upload_unknown(
        self, reader: _StreamReader, first: bytes, key: str, hasher: Any,
        task: TaskProgress, then: Published,
    ) -> UploadResult:
        """A multipart upload of a stream: each part is read (its budget slot and memory
        taken first) and handed to its sender while the next one fills."""
        base = max(self.settings.part_size, self.settings.min_part_size)
        upload_id = await self.call(lambda: self.store.create_multipart(key, 0))
        self.stats.multipart_uploads += 1
        receipts: list[PartReceipt] = []
        memory = anyio.Semaphore(parts_in_memory(self.settings, base))
        carry = first
        offset = 0
        try:
            async with task_group() as tg:
                for number in range(1, MAX_PARTS + 1):
                    size = stream_part_size(number, base)
                    await memory.acquire()
                    lease = await self.budget.acquire()
                    try:
                        if len(carry) >= size:
                            data, carry = carry[:size], carry[size:]
                        else:
                            data = carry + await anyio.to_thread.run_sync(
                                reader.read, size - len(carry), abandon_on_cancel=True)
                            carry = b""
                    except BaseException:
                        lease.release()
                        memory.release()
                        raise
                    if not data and number > 1:
                        lease.release()
                        memory.release()
                        break
                    part = Part(number, offset, len(data))
                    offset += len(data)
                    receipts.append({})
                    tg.start_soon(self._send_part, key, upload_id, part, data, lease,
                                  receipts, task, memory)
                    if len(data) < size:
                        break
                else:
                    raise TransferError(f"{key}: the stream is longer than "
                                        f"{MAX_PARTS} growing parts can hold")
            log.debug("multipart upload of %s: a stream of %d bytes in %d parts", key,
                      offset, len(receipts))
            return await self._complete(key, upload_id, receipts, offset, hasher, then)
        except BaseException:
            await self._abort(key, upload_id)
            raise

    async def _upload_multipart(
        self, fd: int, size: int, key: str, hasher: Any, task: TaskProgress, then: Published,
    ) -> UploadResult:
        parts = plan_parts(size, self.settings.part_size, min_part=self.settings.min_part_size)
        upload_id = await self.call(lambda: self.store.create_multipart(key, size))
        self.stats.multipart_uploads += 1
        log.debug("multipart upload of %s: %d bytes in %d parts", key, size, len(parts))
        receipts: list[PartReceipt] = [{}] * len(parts)
        memory = anyio.Semaphore(parts_in_memory(self.settings, parts[0].size))
        try:
            async with task_group() as tg:
                for part in parts:
                    await memory.acquire()
                    lease = await self.budget.acquire()
                    try:
                        data = await anyio.to_thread.run_sync(
                            self._read_and_hash, fd, part.offset, part.size, hasher
                        )
                    except BaseException:
                        lease.release()
                        memory.release()
                        raise
                    tg.start_soon(self._send_part, key, upload_id, part, data, lease,
                                  receipts, task, memory)
            return await self._complete(key, upload_id, receipts, size, hasher, then)
        except BaseException:
            await self._abort(key, upload_id)
            raise

    async def _complete(self, key: str, upload_id: str, receipts: list[PartReceipt],
                        size: int, hasher: Any, then: Published) -> UploadResult:
        """Publish a multipart upload and record it, in one shielded scope."""
        with _shielded(f"upload of {key}"):
            etag = await self.call(
                lambda: self.store.complete_multipart(key, upload_id, receipts,
                                                      if_none_match=True)
            )
            result = UploadResult(size, hasher.hexdigest(), etag, len(receipts))
            await then(result)
        return result

    async def _abort(self, key: str, upload_id: str) -> None:
        """The upload's one cleanup, whatever failed or cancelled it (bounded)."""
        with (anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS),
              contextlib.suppress(Exception)):
            await self.store.abort_multipart(key, upload_id)

    async def _send_part(
        self, key: str, upload_id: str, part: Part, data: bytes, lease: Lease,
        receipts: list[PartReceipt], task: TaskProgress, memory: anyio.Semaphore,
    ) -> None:
        """Send one part; its first attempt uses the slot taken before the part was read."""
        try:
            receipts[part.number - 1] = await self.call(
                lambda: self.store.upload_part(key, upload_id, part, data), lease)
            task.advance(part.size)
        finally:
            memory.release()

    # -- download ----------------------------------------------------------------------------

    async def download(
        self, key: str, dest: Path, *, label: str, known: ObjectInfo | None = None,
        expected: ExpectedSource, finish: Callable[[ObjectInfo], None] | None = None,
    ) -> tuple[ObjectInfo, str]:
        """Fetch ``key`` into the regular file ``dest`` (atomically, by rename); return
        what was fetched and its SHA-256.

        Without ``known`` (a HEAD's answer), the first GET learns the object's size and
        ETag from its headers, and brings a small object whole: one request, not two.
        The other ranges start as soon as its first bytes arrive. A small object stays in
        memory and is checked, written and renamed in one step. ``expected`` says what
        the bytes must be; as a coroutine function it is asked once the object's size
        and ETag are known (the caller's integrity policy: the engine checks what it is
        told, no more); as an Expected, its size is known up front, and an object up to
        the multipart threshold is asked whole, without a Range. An object whose size is
        not the expected one is refused before anything is claimed on disk.
        Every later range requires the ETag of the first answer, so an object replaced
        mid-download fails it rather than mixing two versions. ``finish`` runs in the
        same worker thread right after the rename (the caller's sidecar): one thread hop
        fewer per file."""
        fetch = _Fetch(key, label, known, _Learned(expected))
        finish = finish or _nothing_finish
        temps: list[tuple[Path, int]] = []

        async def open_temp(size: int) -> _Writer:
            temp, fd = await anyio.to_thread.run_sync(self.fs.create_temp, dest, size)
            temps.append((temp, fd))
            fetch.fd = fd
            return functools.partial(self._pwrite, fd)

        learned = fetch.learned
        try:
            await self._fetch_file(fetch, open_temp)
            if fetch.small is not None and len(fetch.small) <= INLINE:
                # A few KiB: checked and written on the event loop, measured faster than a
                # thread hop (GIL hand-offs) for a pull-list of small packages.
                sha256 = self._finish_small(fetch.known, fetch.small, learned.value, dest,
                                            finish)
            elif fetch.small is not None:  # hashing a MiB is better done off the loop
                sha256 = await anyio.to_thread.run_sync(
                    self._finish_small, fetch.known, fetch.small, learned.value, dest, finish)
            else:
                sha256, md5 = fetch.digests
                _check(fetch.known, learned.value, sha256, md5)
                await anyio.to_thread.run_sync(self._finish_large, fetch.known, temps[0][0],
                                               dest, finish)
        except BaseException:
            fetch.end(False)
            for temp, _ in temps:
                self.fs.unlink(temp)
            raise
        finally:
            for _, fd in temps:
                self.fs.close(fd)
        fetch.end(True)
        return fetch.known, sha256

    def _pwrite(self, fd: int, offset: int, chunks: list[bytes]) -> None:
        self.fs.pwritev(fd, chunks, offset, "write the download")

    def _finish_small(self, info: ObjectInfo, data: bytes, want: Expected,
                      dest: Path, finish: Callable[[ObjectInfo], None]) -> str:
        """Check a small object held in memory, write it by temp file and rename, and
        run the caller's ``finish``."""
        sha256 = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data).hexdigest() if _needs_md5(want) else None
        _check(info, want, sha256, md5)
        self.fs.write_atomic(dest, data)
        finish(info)
        return sha256

    def _finish_large(self, info: ObjectInfo, temp: Path, dest: Path,
                      finish: Callable[[ObjectInfo], None]) -> None:
        self.fs.replace(temp, dest)
        finish(info)

    async def download_stream(
        self, key: str, sink: Callable[[bytes], None], *, label: str,
        expected: ExpectedSource,
    ) -> tuple[ObjectInfo, str]:
        """Fetch ``key`` in order into ``sink`` (called in a worker thread: a pipe, a
        device, standard output, an extractor), hashing as it goes. The size is checked
        on the first answer's headers, before ``sink`` sees a byte, and ``sink`` never
        gets more than that size; the digests are checked after the last byte, so the
        reader has seen the bytes by then (IntegrityError all the same)."""
        fetch = _Fetch(key, label, None, _Learned(expected))
        sha256 = hashlib.sha256()
        md5: list[Any] = []  # decided by the first answer's ETag, before its first byte

        def write(offset: int, chunks: list[bytes]) -> None:
            if offset == 0 and not md5:
                md5.append(hashlib.md5() if fetch.known.md5 else None)
            for data in chunks:
                sink(data)
                sha256.update(data)
                if md5[0] is not None:
                    md5[0].update(data)

        async def open_stream(size: int) -> _Writer:
            return write

        learned = fetch.learned
        try:
            await self._first(fetch, open_stream, plain=True)
            digest = md5[0] if md5 else (hashlib.md5() if fetch.known.md5 else None)
            _check(fetch.known, learned.value, sha256.hexdigest(),
                   digest.hexdigest() if digest else None)
        except BaseException:
            fetch.end(False)
            raise
        fetch.end(True)
        return fetch.known, sha256.hexdigest()

    async def _fetch_file(self, fetch: _Fetch, open_temp: _Opener) -> None:
        """Fetch every range at its offset (or, for a small object, into memory); the
        digests of the whole file end up in ``fetch.digests``."""
        async with task_group() as tg:
            if fetch.info is None:
                tg.start_soon(self._first, fetch, open_temp)
                await fetch.ready.wait()
                if fetch.small is not None:
                    return
            else:
                await fetch.learned.admit(fetch.info)
                fetch.write = await open_temp(fetch.info.size)
                fetch.plan(self.settings, head=0)
                fetch.begin(self.progress)
            info = fetch.known
            parts = [c.part for c in fetch.cursors]
            log.debug("download of %s: %d bytes in %d ranges", info.key, info.size, len(parts))
            tg.start_soon(self._hash_in_order, fetch, parts)
            for index, cursor in enumerate(fetch.cursors):
                if index == 0 and fetch.started_first:
                    continue  # the first GET fetches its own range
                tg.start_soon(self._fetch_part, fetch, cursor, fetch.done[index],
                              len(parts) > 1)

    async def _first(self, fetch: _Fetch, open_sink: _Opener, *, plain: bool = False) -> None:
        """The first GET of an object of unknown size: up to the multipart threshold from
        offset 0 (``plain``: the whole object, for in-order writes). Its first bytes tell
        the size; what it brings is the first range, or (up to ``small_object`` bytes,
        not ``plain``) the whole object, kept in memory. A body cut short is resumed like
        any other range; one that fails after its headers but before any byte is asked
        again as a plain GET, since some stores answer a ranged GET of an empty object
        with a malformed body."""
        fetch.started_first = True
        head = max(1, self.settings.multipart_threshold)
        # A size known up front (a record's) that one GET covers: asked without a Range,
        # which costs a store less than a ranged GET; still refused on the headers if the
        # object is another size, and bounded by it as it comes.
        known = fetch.learned.known_size
        single = known is not None and known <= head

        async def once() -> None:
            if fetch.ready.is_set():
                await self._resume(fetch, fetch.cursors[0])
                return
            whole = plain or single or fetch.malformed
            async with self.store.open_range(fetch.key, 0, None if whole else head) as body:
                try:
                    await fetch.learned.admit(body.info)  # before a byte is read
                except IntegrityError:
                    if whole or fetch.learned.value.size:
                        raise
                    fetch.malformed = True  # an empty object: the quirk below
                    raise _TransientCut(f"{fetch.key}: a ranged GET of an empty object "
                                        "was answered with a body") from None
                chunks = body.chunks
                try:
                    first = await anext(chunks, b"")
                except StoreError:
                    fetch.malformed = True
                    raise
                size = body.info.size
                if not plain and size <= min(head, self.settings.small_object):
                    data = await _whole(first, chunks, body.info)
                    fetch.info, fetch.small = body.info, data
                    fetch.begin(self.progress)
                    fetch.task.advance(size)
                    fetch.ready.set()
                    return
                fetch.info = body.info
                if fetch.write is None:
                    fetch.write = await open_sink(size)
                if plain:
                    fetch.cursors = [_Cursor(Part(1, 0, size))]
                    fetch.done = [anyio.Event()]
                else:
                    fetch.plan(self.settings, head=head)
                fetch.begin(self.progress)
                fetch.ready.set()
                await self._write_chunks(_prepend(first, chunks), fetch.cursors[0],
                                         fetch.write, fetch.task, size)

        try:
            await self.call(once)
        except StoreError as exc:
            moved = fetch.ready.is_set() and fetch.small is None and fetch.cursors[0].received
            if not (exc.transient and moved):
                raise
            await self._moving(fetch.cursors[0], once)  # it moved: a fresh round
        if fetch.small is None:
            fetch.done[0].set()

    async def _hash_in_order(self, fetch: _Fetch, parts: list[Part]) -> None:
        """Hash the file as its ranges complete, in order, from the page cache. MD5 only
        where it is what will be checked: a plain-MD5 ETag and no SHA-256 record."""
        await fetch.done[0].wait()
        want = fetch.learned.value  # admitted before the first range began
        sha256 = hashlib.sha256()
        md5 = hashlib.md5() if _needs_md5(want) else None
        hashers: list[Any] = [sha256] if md5 is None else [sha256, md5]
        fd = fetch.fd
        for part, event in zip(parts, fetch.done, strict=True):
            await event.wait()
            await anyio.to_thread.run_sync(
                self._hash_range, fd, part.offset, part.size, hashers, 1 << 20
            )
        fetch.digests = (sha256.hexdigest(), md5.hexdigest() if md5 else None)

    def _hash_range(self, fd: int, offset: int, size: int, hashers: list[Any],
                    chunk: int) -> None:
        end = offset + size
        while offset < end:
            data = self.fs.pread(fd, min(chunk, end - offset), offset, "read the download")
            if not data:
                raise TransferError("the temporary file is shorter than the download")
            for hasher in hashers:
                hasher.update(data)
            offset += len(data)

    async def _resume(self, fetch: _Fetch, cursor: _Cursor) -> None:
        if not cursor.remaining:
            return
        assert fetch.write is not None
        # the whole object (one range, a known size): a plain GET, bounded all the same
        whole = cursor.offset == 0 and cursor.part.end >= fetch.known.size
        async with self.store.open_range(fetch.key, cursor.offset,
                                         None if whole else cursor.part.end,
                                         if_match=fetch.known.etag) as body:
            await self._write_chunks(body.chunks, cursor, fetch.write, fetch.task,
                                     fetch.known.size)

    async def _fetch_part(
        self, fetch: _Fetch, cursor: _Cursor, done: anyio.Event, ranged: bool,
    ) -> None:
        if cursor.remaining:
            self.stats.ranged_gets += ranged
            await self._moving(cursor, lambda: self._resume(fetch, cursor))
        done.set()

    async def _moving(self, cursor: _Cursor, fetch: Callable[[], Awaitable[None]]) -> None:
        """Retry a range's requests: a round of attempts that moved the cursor forward
        starts a fresh round, so a link that cuts long bodies every few minutes cannot
        fail a large download that keeps advancing (bounded: each round moves on)."""
        while True:
            before = cursor.received
            try:
                await self.call(fetch)
                return
            except StoreError as exc:
                if not exc.transient or cursor.received == before:
                    raise

    async def _write_chunks(
        self, chunks: AsyncIterator[bytes], cursor: _Cursor, write: _Writer,
        task: TaskProgress, size: int,
    ) -> None:
        """Write a body at the cursor until the cursor's range is full; bytes past it are
        left unread (a store may ignore a range's end), but a body that goes past the
        object's ``size`` is refused (IntegrityError). A body that ends early raises a
        transient error with the cursor past every byte kept, so a retry resumes there."""
        pending: list[bytes] = []  # chunks as they came: written together, never joined
        held = 0
        last = cursor.part.end >= size  # this range ends the object

        async def flush() -> None:
            """Hand the held chunks to ``write`` once: taken off before the call, so a
            writer that raised (a full disk, a closed pipe) is not given them again by
            the flush on the way out, and a stream never gets a byte twice."""
            nonlocal held
            if pending:
                batch, nbytes = pending[:], held
                pending.clear()
                held = 0
                await anyio.to_thread.run_sync(write, cursor.offset, batch)
                cursor.received += nbytes

        try:
            async for chunk in chunks:
                room = cursor.remaining - held
                if last and len(chunk) > room:
                    raise _longer(size)
                take = chunk[:room]
                pending.append(take)
                held += len(take)
                task.advance(len(take))
                if (held >= min(self.settings.chunk_size, cursor.remaining)
                        or len(pending) >= MAX_IOV):
                    await flush()
                    if not cursor.remaining:
                        break
        finally:
            await flush()
        if cursor.remaining:
            raise _TransientCut(f"{cursor.part}: the body ended early")
        if last:
            more: bytes = await anext(chunks, b"")
            if more:
                raise _longer(size)


_Writer = Callable[[int, list[bytes]], None]
_Opener = Callable[[int], Awaitable[_Writer]]
Published = Callable[[UploadResult], Awaitable[None]]


async def _nothing_then(result: UploadResult) -> None:
    return None


def _nothing_finish(info: ObjectInfo) -> None:
    return None


async def _quietly(head: Awaitable[ObjectInfo | None]) -> ObjectInfo | None:
    """A HEAD whose failure only means "cannot tell"."""
    try:
        return await head
    except TransferError:
        return None


@contextlib.contextmanager
def _shielded(what: str) -> Iterator[None]:
    """Publishing a version and recording it run shielded from cancellation, within a
    time bound, so a signal or a closed stream never leaves one without the other."""
    try:
        with anyio.CancelScope(shield=True), anyio.fail_after(SHIELD_SECONDS):
            yield
    except TimeoutError as exc:
        raise TransferError(f"{what}: no answer within {SHIELD_SECONDS} s") from exc
ExpectedSource = Expected | Callable[[ObjectInfo], Awaitable[Expected]]


class _Fetch:
    """One download's state, shared by its ranges and their retries: what the object is
    (once known), the ranges and how far each got, the progress task."""

    def __init__(self, key: str, label: str, info: ObjectInfo | None,
                 learned: _Learned) -> None:
        self.key = key
        self.label = label
        self.info = info
        self.learned = learned
        self.cursors: list[_Cursor] = []
        self.done: list[anyio.Event] = []
        self.ready = anyio.Event()
        self.task: TaskProgress = _NoTask()
        self.began = False
        self.started_first = False
        self.malformed = False
        self.write: _Writer | None = None
        self.small: bytes | None = None  # a small object, whole, in memory
        self.digests: tuple[str, str | None] = ("", None)
        self.fd = -1  # the temp file, once there is one (hashed from the page cache)

    @property
    def known(self) -> ObjectInfo:
        assert self.info is not None
        return self.info

    def plan(self, settings: TransferSettings, *, head: int) -> None:
        self.cursors = [_Cursor(p) for p in plan_ranges(self.known.size, settings, head=head)]
        self.done = [anyio.Event() for _ in self.cursors]

    def begin(self, progress: ProgressSink) -> None:
        if not self.began:
            self.began = True
            self.task = progress.begin(self.label, self.known.size)

    def end(self, ok: bool) -> None:
        if self.began:
            self.began = False
            self.task.end(ok)


def _longer(size: int) -> IntegrityError:
    return IntegrityError(f"the store sent a body longer than the object's {size} bytes")


async def _whole(first: bytes, rest: AsyncIterator[bytes], info: ObjectInfo) -> bytes:
    """A small object's body, whole: refused as soon as it goes past its size."""
    pieces, held = [first], len(first)
    if held <= info.size:
        async for chunk in rest:
            pieces.append(chunk)
            held += len(chunk)
            if held > info.size:
                break
    if held > info.size:
        raise _longer(info.size)
    if held < info.size:
        raise _TransientCut(f"{info.key}: the body ended early")
    return b"".join(pieces)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


class _StreamReader:
    """Reads a blocking iterator of chunks in exact amounts, hashing what it hands out.
    Holds at most one chunk beyond what was asked (the rest of the last one read)."""

    def __init__(self, source: Iterator[bytes], hasher: Any) -> None:
        self._source = iter(source)
        self._hasher = hasher
        self._rest = b""
        self._ended = False

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        pieces = [self._rest[:size]]
        held = len(pieces[0])
        self._rest = self._rest[size:]
        while held < size and not self._ended:
            chunk = next(self._source, None)
            if chunk is None:
                self._ended = True
                break
            take = size - held
            pieces.append(chunk[:take])
            held += min(len(chunk), take)
            self._rest = chunk[take:]
        data = b"".join(pieces)
        self._hasher.update(data)
        return data


class _TransientCut(StoreError):
    """A body that ended before its range did: worth a retry, which resumes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


class _Learned:
    """What the bytes must match, asked of the caller when an answer's headers tell the
    object (again only if another answer tells another): ``admit`` refuses an object of
    another size before any byte moves."""

    def __init__(self, source: ExpectedSource) -> None:
        self._source = source
        self._lock = anyio.Lock()
        self._value: Expected | None = None
        self._asked: ObjectInfo | None = None

    async def admit(self, info: ObjectInfo) -> None:
        async with self._lock:
            if self._value is None or (callable(self._source) and info != self._asked):
                source = self._source
                self._value = await source(info) if callable(source) else source
                self._asked = info
        if info.size != self._value.size:
            raise _size_mismatch(info, self._value)

    @property
    def value(self) -> Expected:
        assert self._value is not None
        return self._value

    @property
    def known_size(self) -> int | None:
        """The size the bytes must have, when the caller knew it before any answer (an
        Expected, not a coroutine function asked on the headers)."""
        return None if callable(self._source) else self._source.size


def _needs_md5(want: Expected) -> bool:
    """Only what will be checked is computed."""
    return want.md5 is not None


def _size_mismatch(info: ObjectInfo, want: Expected) -> IntegrityError:
    return IntegrityError(f"{info.key}: the object is {info.size} bytes, "
                          f"{want.size} were pushed")


def _check(info: ObjectInfo, want: Expected, sha256: str, md5: str | None) -> None:
    """Refuse bytes that are not what the caller expects."""
    if info.size != want.size:
        raise _size_mismatch(info, want)
    if want.sha256 and sha256 != want.sha256:
        raise IntegrityError(f"{info.key}: SHA-256 mismatch: pushed {want.sha256}, "
                             f"received {sha256}")
    if want.md5 and md5 != want.md5:
        raise IntegrityError(f"{info.key}: MD5 mismatch: the ETag says {want.md5}, "
                             f"received {md5 or 'an object with another ETag'}")


class _Cursor:
    """How far one part has been written; survives the retries of that part."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self.received = 0

    @property
    def offset(self) -> int:
        return self.part.offset + self.received

    @property
    def remaining(self) -> int:
        return self.part.size - self.received
