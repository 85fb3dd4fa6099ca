"""Uploads: one object from a file or a stream, as a single PUT or a multipart upload.

- Up to the multipart threshold, one PUT with If-None-Match; a retried PUT whose first
  attempt landed finds its own object (same size, the MD5 of these bytes as its ETag).
- Beyond, a multipart upload: one reader goes through the file (or the stream) in order,
  hashing as it reads, so the SHA-256 costs no second pass, and hands each part to its
  own sender; a part's budget slot is taken before it is read, and at most
  ``parts_in_memory`` parts are held at once. A stream's parts grow
  (``stream_part_size``), so any length fits in 10,000 parts.
- Publishing and the caller's record of it (``then``) run in one shielded, time-bound scope.
- One owner per failure cleanup: the multipart upload aborts itself, whatever the failure
  or cancellation.

Loaded by the engine on the first upload only: a pull never imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..errors import PreconditionFailed, TransferError
from ..hashing import BackgroundSha256
from ..localfs import LocalFS
from ..storage import ObjectInfo, PartReceipt
from .budget import Lease
from .engine import Published, UploadResult
from .groups import task_group
from .plan import MAX_PARTS, Part, parts_in_memory, plan_parts, stream_part_size
from .sink import TaskProgress

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

SHIELD_SECONDS = 120  # the longest a signal waits for a version's publication to be recorded
CLEANUP_SECONDS = 15  # the longest an interrupted upload spends aborting itself


async def upload_file(engine: Engine, path: Path, key: str, *, label: str,
                      then: Published | None) -> UploadResult:
    """``Engine.upload_file``: a single PUT up to the threshold, multipart beyond."""
    fd = await anyio.to_thread.run_sync(engine.fs.open_read, path)
    try:
        size = os.fstat(fd).st_size
        task = engine.progress.begin(label, size)
        upload = _Upload(engine, key, hashlib.sha256(), task, then or _nothing_then)
        try:
            if size <= engine.settings.multipart_threshold:
                data = await anyio.to_thread.run_sync(_read_and_hash, engine.fs, fd, 0, size,
                                                      upload.hasher)
                result = await upload.single(data)
            else:
                result = await upload.multipart(fd, size)
        except BaseException:
            task.end(False)
            raise
    finally:
        engine.fs.close(fd)
    task.end(True)
    return result


async def upload_stream(engine: Engine, source: Iterator[bytes], key: str, *, label: str,
                        then: Published | None) -> UploadResult:
    """``Engine.upload_stream``: a single PUT if the stream ends within the threshold, a
    multipart upload of growing parts otherwise."""
    hasher = BackgroundSha256()  # hashed beside the reading (and the compressing)
    reader = _StreamReader(source, hasher)
    task = engine.progress.begin(label, None)
    upload = _Upload(engine, key, hasher, task, then or _nothing_then)
    first_size = engine.settings.multipart_threshold + 1
    try:
        first = await anyio.to_thread.run_sync(reader.read, first_size,
                                               abandon_on_cancel=True)
        if len(first) < first_size:
            result = await upload.single(first)
        else:
            result = await upload.stream(reader, first)
    except BaseException:
        task.end(False)
        raise
    finally:
        hasher.close()
    task.end(True)
    return result


class _Upload:
    """One object's upload: the steps share its key, its hasher, its progress task and
    the caller's ``then``."""

    def __init__(self, engine: Engine, key: str, hasher: Any, task: TaskProgress,
                 then: Published) -> None:
        self.engine = engine
        self.key = key
        self.hasher = hasher
        self.task = task
        self.then = then

    async def single(self, data: bytes) -> UploadResult:
        engine, key = self.engine, self.key
        size = len(data)
        attempts = 0

        async def put() -> str:
            nonlocal attempts
            attempts += 1
            try:
                return await engine.store.put_bytes(key, data, if_none_match=True)
            except PreconditionFailed:
                # A retried PUT whose first attempt did land finds its own object: same
                # size, and an ETag that is the MD5 of these bytes.
                if attempts > 1:
                    info = await engine.store.head(key)
                    if (info is not None and info.size == size
                            and info.md5 == hashlib.md5(data).hexdigest()):
                        return info.etag
                raise

        try:
            etag = await engine.call(put)
        except BaseException:
            # A PUT cut short by a signal or a lost answer may have landed all the same:
            # if the object is these bytes, it is recorded before the error goes on.
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHIELD_SECONDS):
                info = await _quietly(engine.store.head(key))
                if (info is not None and info.size == size
                        and info.md5 == hashlib.md5(data).hexdigest()):
                    await self.then(UploadResult(size, self.hasher.hexdigest(), info.etag, 1))
            raise
        with _shielded(f"upload of {key}"):
            self.task.advance(size)
            result = UploadResult(size, self.hasher.hexdigest(), etag, 1)
            await self.then(result)
        return result

    async def stream(self, reader: _StreamReader, first: bytes) -> UploadResult:
        """A multipart upload of a stream: each part is read (its budget slot and memory
        taken first) and handed to its sender while the next one fills."""
        engine, key = self.engine, self.key
        settings = engine.settings
        base = max(settings.part_size, settings.min_part_size)
        upload_id = await engine.call(lambda: engine.store.create_multipart(key, 0))
        engine.stats.multipart_uploads += 1
        receipts: list[PartReceipt] = []
        memory = anyio.Semaphore(parts_in_memory(settings, base))
        carry = first
        offset = 0
        try:
            async with task_group() as tg:
                for number in range(1, MAX_PARTS + 1):
                    size = stream_part_size(number, base)
                    await memory.acquire()
                    lease = await engine.budget.acquire()
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
                    tg.start_soon(self._send_part, upload_id, part, data, lease, receipts,
                                  memory)
                    if len(data) < size:
                        break
                else:
                    raise TransferError(f"{key}: the stream is longer than "
                                        f"{MAX_PARTS} growing parts can hold")
            log.debug("multipart upload of %s: a stream of %d bytes in %d parts", key,
                      offset, len(receipts))
            return await self._complete(upload_id, receipts, offset)
        except BaseException:
            await self._abort(upload_id)
            raise

    async def multipart(self, fd: int, size: int) -> UploadResult:
        engine, key = self.engine, self.key
        settings = engine.settings
        parts = plan_parts(size, settings.part_size, min_part=settings.min_part_size)
        upload_id = await engine.call(lambda: engine.store.create_multipart(key, size))
        engine.stats.multipart_uploads += 1
        log.debug("multipart upload of %s: %d bytes in %d parts", key, size, len(parts))
        receipts: list[PartReceipt] = [{}] * len(parts)
        memory = anyio.Semaphore(parts_in_memory(settings, parts[0].size))
        try:
            async with task_group() as tg:
                for part in parts:
                    await memory.acquire()
                    lease = await engine.budget.acquire()
                    try:
                        data = await anyio.to_thread.run_sync(
                            _read_and_hash, engine.fs, fd, part.offset, part.size, self.hasher
                        )
                    except BaseException:
                        lease.release()
                        memory.release()
                        raise
                    tg.start_soon(self._send_part, upload_id, part, data, lease, receipts,
                                  memory)
            return await self._complete(upload_id, receipts, size)
        except BaseException:
            await self._abort(upload_id)
            raise

    async def _complete(self, upload_id: str, receipts: list[PartReceipt],
                        size: int) -> UploadResult:
        """Publish a multipart upload and record it, in one shielded scope."""
        engine, key = self.engine, self.key
        with _shielded(f"upload of {key}"):
            etag = await engine.call(
                lambda: engine.store.complete_multipart(key, upload_id, receipts,
                                                        if_none_match=True)
            )
            result = UploadResult(size, self.hasher.hexdigest(), etag, len(receipts))
            await self.then(result)
        return result

    async def _abort(self, upload_id: str) -> None:
        """The upload's one cleanup, whatever failed or cancelled it (bounded)."""
        with (anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS),
              contextlib.suppress(Exception)):
            await self.engine.store.abort_multipart(self.key, upload_id)

    async def _send_part(
        self, upload_id: str, part: Part, data: bytes, lease: Lease,
        receipts: list[PartReceipt], memory: anyio.Semaphore,
    ) -> None:
        """Send one part; its first attempt uses the slot taken before the part was read."""
        engine, key = self.engine, self.key
        try:
            receipts[part.number - 1] = await engine.call(
                lambda: engine.store.upload_part(key, upload_id, part, data), lease)
            self.task.advance(part.size)
        finally:
            memory.release()


def _read_and_hash(fs: LocalFS, fd: int, offset: int, size: int, hasher: Any) -> bytes:
    data = fs.pread(fd, size, offset, "read the file")
    if len(data) != size:
        raise TransferError("the file changed size while it was being uploaded")
    hasher.update(data)
    return data


async def _nothing_then(result: UploadResult) -> None:
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
