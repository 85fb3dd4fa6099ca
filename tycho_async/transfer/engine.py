"""The engine: the one Budget every request of a command goes through, the retries, the
statistics, and the requests the registry makes itself (HEAD, small GETs and PUTs,
listings, deletions). Moving a file's bytes is composed of two modules, each loaded on
its first use, so a pull never imports the upload code:

- ``upload.py``: a single PUT or a multipart upload, from a file or a stream;
- ``download.py``: ranged GETs into a temporary file renamed once checked, or one GET in
  order into a sink, checked against what the caller expects (``Expected``).

Every request is retried on transient errors with exponential backoff and full jitter
(one policy: ``retry.py``). Progress goes to a ``ProgressSink`` (``sink.py``); the engine
never prints. The value types the callers hand in and get back live here, beside the
Engine whose signatures name them, so a caller imports neither transfer module for them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio

from ..errors import StoreError, TychoError
from ..localfs import LocalFS
from ..storage import ObjectInfo, Store, UploadInfo
from .budget import Budget, Lease
from .plan import TransferSettings
from .retry import Backoff, RetryPolicy
from .sink import NoProgress, ProgressSink

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadResult:
    """What an upload published, for the caller's record: its size, digest, ETag, parts."""

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


ExpectedSource = Expected | Callable[[ObjectInfo], Awaitable[Expected]]
Published = Callable[[UploadResult], Awaitable[None]]


@dataclass
class EngineStatistics:
    """What a command's requests cost: what the tests read to tell retries and ranges."""

    requests: int = 0
    retries: int = 0
    ranged_gets: int = 0  # GETs of one range among several of an object
    multipart_uploads: int = 0


class Engine:
    """Moves bytes between local files and one Store for one command: every request within
    the command's Budget and retried by its RetryPolicy, progress to its ProgressSink."""

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

    # -- moving a file's bytes: composed of upload.py and download.py, loaded on first use -

    async def upload_file(self, path: Path, key: str, *, label: str,
                          then: Published | None = None) -> UploadResult:
        """Upload ``path`` to ``key`` unless ``key`` exists (PreconditionFailed then).

        ``then`` runs right after the object is published, in the same shielded scope
        as the request that publishes it: a signal waits (bounded) until the caller has
        recorded what it published, so no version is left published but unrecorded."""
        from .upload import upload_file

        return await upload_file(self, path, key, label=label, then=then)

    async def upload_stream(self, source: Iterator[bytes], key: str, *, label: str,
                            then: Published | None = None) -> UploadResult:
        """Upload the bytes ``source`` yields (a blocking iterator of unknown length: a
        pipe, a compressor) to ``key`` unless it exists, with ``then`` as for
        ``upload_file``. Up to the multipart threshold it is one PUT; beyond, a multipart
        upload whose parts grow (``stream_part_size``) so any length fits in 10,000 parts.
        Memory stays bounded as for files: the part being filled plus the parts in
        flight. The source is read in a worker thread, hashed as it is read."""
        from .upload import upload_stream

        return await upload_stream(self, source, key, label=label, then=then)

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
        from .download import download

        return await download(self, key, dest, label=label, known=known, expected=expected,
                              finish=finish)

    async def download_stream(
        self, key: str, sink: Callable[[bytes], None], *, label: str,
        expected: ExpectedSource,
    ) -> tuple[ObjectInfo, str]:
        """Fetch ``key`` in order into ``sink`` (called in a worker thread: a pipe, a
        device, standard output, an extractor), hashing as it goes. The size is checked
        on the first answer's headers, before ``sink`` sees a byte, and ``sink`` never
        gets more than that size; the digests are checked after the last byte, so the
        reader has seen the bytes by then (IntegrityError all the same)."""
        from .download import download_stream

        return await download_stream(self, key, sink, label=label, expected=expected)
