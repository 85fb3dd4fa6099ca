"""Downloads: one object into a file (ranged GETs at their offsets) or in order into a sink.

- Ranged GETs are written at their offsets into a temporary file beside the destination.
  When the size is not known yet, the first GET learns it (and brings a small object
  whole); when the caller knows it (a record) and one GET covers it, that GET is a plain
  one, without a Range, which costs a store less. A hasher follows the ranges in order,
  re-reading them from the page cache, and the file is renamed into place only once size
  and digests check out against the caller's ``Expected``.
- A download is bounded by what the caller expects: an object of another size is refused
  on the headers of its first answer, before a byte is written, and a body that goes on
  past the object's end (a hostile or broken server) is refused as it comes.
- An interrupted ranged GET resumes where its body stopped; a round of retries that moved
  forward starts a fresh one.
- One owner per failure cleanup: the download removes its temporary file, whatever the
  failure or cancellation.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..errors import IntegrityError, StoreError, TransferError
from ..localfs import LocalFS
from ..storage import ObjectInfo
from .engine import Expected, ExpectedSource
from .groups import task_group
from .plan import Part, plan_ranges
from .sink import NoTask, TaskProgress

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

MAX_IOV = 512  # chunks written by one pwritev (the system's limit is 1024)
INLINE = 64 * 1024  # small objects up to this size are written without a thread hop

_Writer = Callable[[int, list[bytes]], None]
_Opener = Callable[[int], Awaitable[_Writer]]


async def download(
    engine: Engine, key: str, dest: Path, *, label: str, known: ObjectInfo | None,
    expected: ExpectedSource, finish: Callable[[ObjectInfo], None] | None,
) -> tuple[ObjectInfo, str]:
    """``Engine.download``: into a temporary file beside ``dest``, renamed once checked."""
    fetch = _Download(engine, key, label, known, _Learned(expected))
    finish = finish or _nothing_finish
    fs = engine.fs
    temps: list[tuple[Path, int]] = []

    async def open_temp(size: int) -> _Writer:
        temp, fd = await anyio.to_thread.run_sync(fs.create_temp, dest, size)
        temps.append((temp, fd))
        fetch.fd = fd
        return functools.partial(_pwrite, fs, fd)

    learned = fetch.learned
    try:
        await fetch.fetch_file(open_temp)
        if fetch.small is not None and len(fetch.small) <= INLINE:
            # A few KiB: checked and written on the event loop, measured faster than a
            # thread hop (GIL hand-offs) for a pull-list of small packages.
            sha256 = _finish_small(fs, fetch.known, fetch.small, learned.value, dest, finish)
        elif fetch.small is not None:  # hashing a MiB is better done off the loop
            sha256 = await anyio.to_thread.run_sync(
                _finish_small, fs, fetch.known, fetch.small, learned.value, dest, finish)
        else:
            sha256, md5 = fetch.digests
            _check(fetch.known, learned.value, sha256, md5)
            await anyio.to_thread.run_sync(_finish_large, fs, fetch.known, temps[0][0],
                                           dest, finish)
    except BaseException:
        fetch.end(False)
        for temp, _ in temps:
            fs.unlink(temp)
        raise
    finally:
        for _, fd in temps:
            fs.close(fd)
    fetch.end(True)
    return fetch.known, sha256


async def download_stream(
    engine: Engine, key: str, sink: Callable[[bytes], None], *, label: str,
    expected: ExpectedSource,
) -> tuple[ObjectInfo, str]:
    """``Engine.download_stream``: one GET in order, resumed where it stopped."""
    fetch = _Download(engine, key, label, None, _Learned(expected))
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
        await fetch.first(open_stream, plain=True)
        digest = md5[0] if md5 else (hashlib.md5() if fetch.known.md5 else None)
        _check(fetch.known, learned.value, sha256.hexdigest(),
               digest.hexdigest() if digest else None)
    except BaseException:
        fetch.end(False)
        raise
    fetch.end(True)
    return fetch.known, sha256.hexdigest()


class _Download:
    """One download, its state shared by its ranges and their retries (what the object is
    once known, the ranges and how far each got, the progress task) and its steps."""

    def __init__(self, engine: Engine, key: str, label: str, info: ObjectInfo | None,
                 learned: _Learned) -> None:
        self.engine = engine
        self.key = key
        self.label = label
        self.info = info
        self.learned = learned
        self.cursors: list[_Cursor] = []
        self.done: list[anyio.Event] = []
        self.ready = anyio.Event()
        self.task: TaskProgress = NoTask()
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

    def plan(self, *, head: int) -> None:
        self.cursors = [_Cursor(p) for p in plan_ranges(self.known.size, self.engine.settings,
                                                        head=head)]
        self.done = [anyio.Event() for _ in self.cursors]

    def begin(self) -> None:
        if not self.began:
            self.began = True
            self.task = self.engine.progress.begin(self.label, self.known.size)

    def end(self, ok: bool) -> None:
        if self.began:
            self.began = False
            self.task.end(ok)

    async def fetch_file(self, open_temp: _Opener) -> None:
        """Fetch every range at its offset (or, for a small object, into memory); the
        digests of the whole file end up in ``digests``."""
        async with task_group() as tg:
            if self.info is None:
                tg.start_soon(self.first, open_temp)
                await self.ready.wait()
                if self.small is not None:
                    return
            else:
                await self.learned.admit(self.info)
                self.write = await open_temp(self.info.size)
                self.plan(head=0)
                self.begin()
            info = self.known
            parts = [c.part for c in self.cursors]
            log.debug("download of %s: %d bytes in %d ranges", info.key, info.size, len(parts))
            tg.start_soon(self._hash_in_order, parts)
            for index, cursor in enumerate(self.cursors):
                if index == 0 and self.started_first:
                    continue  # the first GET fetches its own range
                tg.start_soon(self._fetch_part, cursor, self.done[index], len(parts) > 1)

    async def first(self, open_sink: _Opener, *, plain: bool = False) -> None:
        """The first GET of an object of unknown size: up to the multipart threshold from
        offset 0 (``plain``: the whole object, for in-order writes). Its first bytes tell
        the size; what it brings is the first range, or (up to ``small_object`` bytes,
        not ``plain``) the whole object, kept in memory. A body cut short is resumed like
        any other range; one that fails after its headers but before any byte is asked
        again as a plain GET, since some stores answer a ranged GET of an empty object
        with a malformed body."""
        engine = self.engine
        self.started_first = True
        head = max(1, engine.settings.multipart_threshold)
        # A size known up front (a record's) that one GET covers: asked without a Range,
        # which costs a store less than a ranged GET; still refused on the headers if the
        # object is another size, and bounded by it as it comes.
        known = self.learned.known_size
        single = known is not None and known <= head

        async def once() -> None:
            if self.ready.is_set():
                await self._resume(self.cursors[0])
                return
            whole = plain or single or self.malformed
            async with engine.store.open_range(self.key, 0, None if whole else head) as body:
                try:
                    await self.learned.admit(body.info)  # before a byte is read
                except IntegrityError:
                    if whole or not self.learned.expects_empty:
                        raise
                    self.malformed = True  # an empty object: the quirk below
                    raise _TransientCut(f"{self.key}: a ranged GET of an empty object "
                                        "was answered with a body") from None
                chunks = body.chunks
                try:
                    first = await anext(chunks, b"")
                except StoreError:
                    self.malformed = True
                    raise
                size = body.info.size
                if not plain and size <= min(head, engine.settings.small_object):
                    data = await _whole(first, chunks, body.info)
                    self.info, self.small = body.info, data
                    self.begin()
                    self.task.advance(size)
                    self.ready.set()
                    return
                self.info = body.info
                if self.write is None:
                    self.write = await open_sink(size)
                if plain:
                    self.cursors = [_Cursor(Part(1, 0, size))]
                    self.done = [anyio.Event()]
                else:
                    self.plan(head=head)
                self.begin()
                self.ready.set()
                await self._write_chunks(_prepend(first, chunks), self.cursors[0],
                                         self.write, self.task, size)

        try:
            await engine.call(once)
        except StoreError as exc:
            moved = self.ready.is_set() and self.small is None and self.cursors[0].received
            if not (exc.transient and moved):
                raise
            await self._moving(self.cursors[0], once)  # it moved: a fresh round
        if self.small is None:
            self.done[0].set()

    async def _hash_in_order(self, parts: list[Part]) -> None:
        """Hash the file as its ranges complete, in order, from the page cache. MD5 only
        where it is what will be checked: a plain-MD5 ETag and no SHA-256 record."""
        await self.done[0].wait()
        want = self.learned.value  # admitted before the first range began
        sha256 = hashlib.sha256()
        md5 = hashlib.md5() if _needs_md5(want) else None
        hashers: list[Any] = [sha256] if md5 is None else [sha256, md5]
        fd = self.fd
        for part, event in zip(parts, self.done, strict=True):
            await event.wait()
            await anyio.to_thread.run_sync(
                _hash_range, self.engine.fs, fd, part.offset, part.size, hashers, 1 << 20
            )
        self.digests = (sha256.hexdigest(), md5.hexdigest() if md5 else None)

    async def _resume(self, cursor: _Cursor) -> None:
        if not cursor.remaining:
            return
        assert self.write is not None
        # the whole object (one range, a known size): a plain GET, bounded all the same
        whole = cursor.offset == 0 and cursor.part.end >= self.known.size
        async with self.engine.store.open_range(self.key, cursor.offset,
                                                None if whole else cursor.part.end,
                                                if_match=self.known.etag) as body:
            await self._write_chunks(body.chunks, cursor, self.write, self.task,
                                     self.known.size)

    async def _fetch_part(self, cursor: _Cursor, done: anyio.Event, ranged: bool) -> None:
        if cursor.remaining:
            self.engine.stats.ranged_gets += ranged
            await self._moving(cursor, lambda: self._resume(cursor))
        done.set()

    async def _moving(self, cursor: _Cursor, request: Callable[[], Awaitable[None]]) -> None:
        """Retry a range's requests: a round of attempts that moved the cursor forward
        starts a fresh round, so a link that cuts long bodies every few minutes cannot
        fail a large download that keeps advancing (bounded: each round moves on)."""
        while True:
            before = cursor.received
            try:
                await self.engine.call(request)
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
        chunk_size = self.engine.settings.chunk_size

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
                if held >= min(chunk_size, cursor.remaining) or len(pending) >= MAX_IOV:
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


def _pwrite(fs: LocalFS, fd: int, offset: int, chunks: list[bytes]) -> None:
    fs.pwritev(fd, chunks, offset, "write the download")


def _hash_range(fs: LocalFS, fd: int, offset: int, size: int, hashers: list[Any],
                chunk: int) -> None:
    end = offset + size
    while offset < end:
        data = fs.pread(fd, min(chunk, end - offset), offset, "read the download")
        if not data:
            raise TransferError("the temporary file is shorter than the download")
        for hasher in hashers:
            hasher.update(data)
        offset += len(data)


def _finish_small(fs: LocalFS, info: ObjectInfo, data: bytes, want: Expected,
                  dest: Path, finish: Callable[[ObjectInfo], None]) -> str:
    """Check a small object held in memory, write it by temp file and rename, and
    run the caller's ``finish``."""
    sha256 = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(data).hexdigest() if _needs_md5(want) else None
    _check(info, want, sha256, md5)
    fs.write_atomic(dest, data)
    finish(info)
    return sha256


def _finish_large(fs: LocalFS, info: ObjectInfo, temp: Path, dest: Path,
                  finish: Callable[[ObjectInfo], None]) -> None:
    fs.replace(temp, dest)
    finish(info)


def _nothing_finish(info: ObjectInfo) -> None:
    return None


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
    def expects_empty(self) -> bool:
        """The caller expects an empty object (False too when its policy refused the
        answer before saying what it expects)."""
        return self._value is not None and not self._value.size

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
