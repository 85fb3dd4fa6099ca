"""The engine: moves bytes between files and a Store, every request within one Budget.

- Uploads above the threshold are multipart: one reader goes through the file in order
  (hashing as it reads, so the SHA-256 costs no second pass) and hands each part to its
  own sender; a part's budget slot is taken before it is read, and at most
  ``parts_in_memory`` parts are held at once.
- Downloads are ranged GETs written at their offsets into a temporary file beside the
  destination. When the size is not known yet, the first GET learns it (and brings a
  small object whole). A hasher follows the ranges in order, re-reading them from the
  page cache, and the file is renamed into place only once size and digests check out.
- Every request is retried on transient errors with exponential backoff and full jitter;
  an interrupted ranged GET resumes where its body stopped.
- One owner per failure cleanup: the upload aborts its multipart upload, the download
  removes its temporary file, whatever the failure or cancellation.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from ..errors import IntegrityError, PreconditionFailed, StoreError, TransferError
from ..storage import ObjectInfo, PartReceipt, Store
from .budget import Budget, Lease
from .groups import task_group
from .plan import Part, TransferSettings, parts_in_memory, plan_parts, plan_ranges

T = TypeVar("T")
log = logging.getLogger(__name__)
TEMP_MARK = ".tychoreg-"
TEMP_SUFFIX = ".part"


class TaskProgress(Protocol):
    def advance(self, nbytes: int) -> None:
        """Bytes moved (kept: a retry resumes after them)."""

    def end(self, ok: bool) -> None: ...


class ProgressSink(Protocol):
    def begin(self, label: str, total: int) -> TaskProgress: ...


class _NoTask:
    def advance(self, nbytes: int) -> None:
        return None

    def end(self, ok: bool) -> None:
        return None


class NoProgress:
    def begin(self, label: str, total: int) -> TaskProgress:
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


_MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')


def plain_md5(etag: str) -> str | None:
    """The MD5 an ETag is, for objects written in one PUT; None for multipart ETags
    ("...-N") and for stores whose ETags are not digests."""
    match = _MD5_ETAG.fullmatch(etag)
    return match.group(1).lower() if match else None


def temp_path_for(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
                          f"{TEMP_SUFFIX}")


def remove_stale_temps(dest: Path) -> None:
    """Remove temporary files of ``dest`` left by processes that no longer run (SIGKILL)."""
    head = f".{dest.name}{TEMP_MARK}"
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(head) and entry.name.endswith(TEMP_SUFFIX)):
            continue
        pid_text = entry.name[len(head):].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_and_hash(fd: int, offset: int, size: int, hasher: Any) -> bytes:
    try:
        data = os.pread(fd, size, offset)
    except OSError as exc:
        raise _os_failure(exc, "read the file") from exc
    if len(data) != size:
        raise TransferError("the file changed size while it was being uploaded")
    hasher.update(data)
    return data


def _hash_range(fd: int, offset: int, size: int, hashers: list[Any], chunk: int) -> None:
    end = offset + size
    while offset < end:
        data = os.pread(fd, min(chunk, end - offset), offset)
        if not data:
            raise TransferError("the temporary file is shorter than the download")
        for hasher in hashers:
            hasher.update(data)
        offset += len(data)


def _os_failure(exc: OSError, what: str) -> TransferError:
    return TransferError(f"cannot {what}: {exc.strerror or exc}")


class Engine:
    def __init__(
        self,
        store: Store,
        settings: TransferSettings | None = None,
        progress: ProgressSink | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.store = store
        self.settings = settings or TransferSettings()
        self.progress: ProgressSink = progress or NoProgress()
        self.budget = Budget(self.settings.concurrency)
        self.stats = EngineStatistics()
        self._sleep = sleep

    # -- one request: a budget slot, retries with backoff ---------------------------------

    async def _backoff(self, attempt: int, error: StoreError) -> None:
        self.stats.retries += 1
        cap = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** attempt)
        delay = random.uniform(0, cap)
        log.debug("retry %d in %.2f s after: %s", attempt + 1, delay, error.message)
        await self._sleep(delay)

    async def call(self, fn: Callable[[], Awaitable[T]], lease: Lease | None = None) -> T:
        """Run one request within the budget, retrying transient failures with backoff.
        ``lease``: a slot already taken, for the first attempt."""
        for attempt in range(self.settings.max_attempts):
            slot = lease if attempt == 0 and lease is not None else await self.budget.acquire()
            try:
                async with slot:
                    self.stats.requests += 1
                    return await fn()
            except StoreError as exc:
                if not exc.transient or attempt + 1 == self.settings.max_attempts:
                    raise
                await self._backoff(attempt, exc)
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

    # -- upload ------------------------------------------------------------------------------

    async def upload_file(self, path: Path, key: str, *, label: str) -> UploadResult:
        """Upload ``path`` to ``key`` unless ``key`` exists (PreconditionFailed then)."""
        try:
            fd = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        except OSError as exc:
            raise _os_failure(exc, f"read {path}") from exc
        try:
            size = os.fstat(fd).st_size
            task = self.progress.begin(label, size)
            hasher = hashlib.sha256()
            try:
                if size <= self.settings.multipart_threshold:
                    result = await self._upload_single(fd, size, key, hasher, task)
                else:
                    result = await self._upload_multipart(fd, size, key, hasher, task)
            except BaseException:
                task.end(False)
                raise
        finally:
            os.close(fd)
        task.end(True)
        return result

    async def _upload_single(
        self, fd: int, size: int, key: str, hasher: Any, task: TaskProgress
    ) -> UploadResult:
        data = await anyio.to_thread.run_sync(_read_and_hash, fd, 0, size, hasher)
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
                            and plain_md5(info.etag) == hashlib.md5(data).hexdigest()):
                        return info.etag
                raise

        etag = await self.call(put)
        task.advance(size)
        return UploadResult(size, hasher.hexdigest(), etag, 1)

    async def _upload_multipart(
        self, fd: int, size: int, key: str, hasher: Any, task: TaskProgress
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
                            _read_and_hash, fd, part.offset, part.size, hasher
                        )
                    except BaseException:
                        lease.release()
                        memory.release()
                        raise
                    tg.start_soon(self._send_part, key, upload_id, part, data, lease,
                                  receipts, task, memory)
            etag = await self.call(
                lambda: self.store.complete_multipart(key, upload_id, receipts,
                                                      if_none_match=True)
            )
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.store.abort_multipart(key, upload_id)
            raise
        return UploadResult(size, hasher.hexdigest(), etag, len(parts))

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
        expected: Expected | Callable[[], Awaitable[Expected | None]] | None = None,
    ) -> tuple[ObjectInfo, str]:
        """Fetch ``key`` into ``dest`` (atomically, by rename); return what was fetched
        and its SHA-256.

        Without ``known`` (a HEAD's answer), the first GET learns the object's size and
        ETag from its headers, and brings a small object whole: one request, not two.
        ``expected`` may be a coroutine function, run beside the transfer; it is awaited
        before the file may appear. None (or a None answer) means no record: the size
        and, where the ETag is a plain MD5, the MD5 are checked. Every later range
        requires the ETag of the first answer, so an object replaced mid-download fails
        it rather than mixing two versions."""
        await anyio.to_thread.run_sync(remove_stale_temps, dest)
        temp = temp_path_for(dest)
        try:
            fd = await anyio.to_thread.run_sync(
                lambda: os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            )
        except OSError as exc:
            raise _os_failure(exc, f"write to {dest.parent}") from exc
        task: TaskProgress | None = None
        try:
            learned: list[Expected | None] = []
            async with task_group() as tg:
                tg.start_soon(_learn, expected, learned)
                info, first = known, None
                if info is None:
                    info, first = await self._probe(key, fd)
                else:
                    await self._reserve(fd, info.size)
                task = self.progress.begin(label, info.size)
                task.advance(first.received if first else 0)
                digests = await self._fetch_all(info, fd, first, task)
            _check(info, learned[0], *digests)
            try:
                await anyio.to_thread.run_sync(os.replace, temp, dest)
            except OSError as exc:
                raise _os_failure(exc, f"write {dest}") from exc
        except BaseException:
            if task is not None:
                task.end(False)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        finally:
            os.close(fd)
        task.end(True)
        return info, digests[0]

    async def _reserve(self, fd: int, size: int) -> None:
        try:
            await anyio.to_thread.run_sync(_preallocate, fd, size)
        except OSError as exc:
            raise _os_failure(exc, "write the download") from exc

    async def _probe(self, key: str, fd: int) -> tuple[ObjectInfo, _Cursor]:
        """The first GET of an object of unknown size: up to the multipart threshold from
        offset 0. What it brings is the first range; a body cut short is resumed like any
        other range."""
        head = max(1, self.settings.multipart_threshold)

        async def once() -> tuple[ObjectInfo, _Cursor]:
            async with self.store.open_range(key, 0, head) as body:
                await self._reserve(fd, body.info.size)
                cursor = _Cursor(plan_ranges(body.info.size, self.settings, head=head)[0])
                with contextlib.suppress(_TransientCut):
                    await self._write_chunks(body.chunks, cursor, fd, _NoTask())
            return body.info, cursor

        return await self.call(once)

    async def _fetch_all(
        self, info: ObjectInfo, fd: int, first: _Cursor | None, task: TaskProgress
    ) -> tuple[str, str | None]:
        """Fetch every range not yet written; return the SHA-256 and, where the ETag is a
        plain MD5, the MD5 of the whole file."""
        parts = plan_ranges(info.size, self.settings, head=first.part.size if first else 0)
        log.debug("download of %s: %d bytes in %d ranges", info.key, info.size, len(parts))
        cursors = [_Cursor(part) for part in parts]
        if first is not None:
            cursors[0] = first
        sha256 = hashlib.sha256()
        md5 = hashlib.md5() if plain_md5(info.etag) else None
        hashers: list[Any] = [sha256] if md5 is None else [sha256, md5]
        done = [anyio.Event() for _ in parts]
        async with task_group() as tg:
            tg.start_soon(self._hash_in_order, fd, parts, done, hashers)
            for cursor, event in zip(cursors, done, strict=True):
                tg.start_soon(self._fetch_part, info, cursor, fd, event, task, len(parts) > 1)
        return sha256.hexdigest(), md5.hexdigest() if md5 else None

    async def _hash_in_order(
        self, fd: int, parts: list[Part], done: list[anyio.Event], hashers: list[Any]
    ) -> None:
        for part, event in zip(parts, done, strict=True):
            await event.wait()
            await anyio.to_thread.run_sync(
                _hash_range, fd, part.offset, part.size, hashers, 1 << 20
            )

    async def _fetch_part(
        self, info: ObjectInfo, cursor: _Cursor, fd: int, done: anyio.Event,
        task: TaskProgress, ranged: bool,
    ) -> None:
        async def rest() -> None:
            if not cursor.remaining:
                return
            self.stats.ranged_gets += ranged
            async with self.store.open_range(info.key, cursor.offset, cursor.part.end,
                                             if_match=info.etag) as body:
                await self._write_chunks(body.chunks, cursor, fd, task)

        if cursor.remaining:
            await self.call(rest)
        done.set()

    async def _write_chunks(
        self, chunks: AsyncIterator[bytes], cursor: _Cursor, fd: int, task: TaskProgress
    ) -> None:
        """Write a body at the cursor until the cursor's range is full; bytes past it are
        left unread. A body that ends early raises a transient error with the cursor past
        every byte kept, so a retry resumes there."""
        buffer = bytearray()

        async def flush() -> None:
            if buffer:
                try:
                    await anyio.to_thread.run_sync(os.pwrite, fd, bytes(buffer), cursor.offset)
                except OSError as exc:
                    raise _os_failure(exc, "write the download") from exc
                cursor.received += len(buffer)
                buffer.clear()

        try:
            async for chunk in chunks:
                take = chunk[: cursor.remaining - len(buffer)]
                buffer += take
                task.advance(len(take))
                if len(buffer) >= min(self.settings.chunk_size, cursor.remaining):
                    await flush()
                    if not cursor.remaining:
                        return
        finally:
            await flush()
        if cursor.remaining:
            raise _TransientCut(f"{cursor.part}: the body ended early")


class _TransientCut(StoreError):
    """A body that ended before its range did: worth a retry, which resumes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


async def _learn(expected: Expected | Callable[[], Awaitable[Expected | None]] | None,
                 out: list[Expected | None]) -> None:
    out.append(await expected() if callable(expected) else expected)


def _check(info: ObjectInfo, want: Expected | None, sha256: str, md5: str | None) -> None:
    """Refuse bytes that are not what was pushed: by the record when there is one, else
    (a version pushed by tycho-station) by size and, for a plain-MD5 ETag, by MD5."""
    if want is None:
        want = Expected(info.size, md5=plain_md5(info.etag))
    if info.size != want.size:
        raise IntegrityError(f"{info.key}: the object is {info.size} bytes, "
                             f"{want.size} were pushed")
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


def _preallocate(fd: int, size: int) -> None:
    """Claim the space up front, so a full disk fails at once rather than mid-download."""
    if size == 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in {errno.EOPNOTSUPP, errno.EINVAL}:
            raise
        os.ftruncate(fd, size)
