"""A Store wrapper that injects faults and delays, and records what was asked of it.

Each method takes its next outcome from a queue: None (behave), an exception (raise it
before calling through), for ``open_range`` the strings "truncate" (end the body
halfway), "corrupt" (flip a bit of the first chunk) and "extend" (the body goes on past its
end, as a hostile server's might: ``EXTRA`` bytes more than its headers said), for
``put_bytes`` "landed" (write, then lose the answer). ``delivered`` counts the body bytes
handed to the caller.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import anyio

from tycho_async.errors import StoreError
from tycho_async.storage import ObjectInfo, Part, PartReceipt, RangeBody, Store, UploadInfo

EXTRA = 2 << 20  # what an "extend" outcome adds to a body


class FaultyStore:
    def __init__(self, inner: Store, *, delay: float = 0.0,
                 slow: frozenset[str] | None = None) -> None:
        self.inner = inner
        self.delay = delay
        self.slow = slow  # the methods that get the delay; None: all
        self.faults: dict[str, list[Any]] = defaultdict(list)
        self.calls: dict[str, int] = defaultdict(int)
        self.ranges: list[tuple[int, int | None]] = []
        self.in_flight = 0
        self.peak = 0
        self.delivered = 0

    def inject(self, method: str, *outcomes: Any) -> None:
        self.faults[method].extend(outcomes)

    async def _enter(self, method: str) -> Any:
        self.calls[method] += 1
        outcome = self.faults[method].pop(0) if self.faults[method] else None
        if self.delay and (self.slow is None or method in self.slow):
            await anyio.sleep(self.delay)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @contextlib.asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    @property
    def creates_root(self) -> bool:
        return self.inner.creates_root

    @property
    def location(self) -> str:
        return self.inner.location

    async def root_exists(self) -> bool:
        return await self.inner.root_exists()

    async def delete(self, key: str) -> None:
        await self._enter("delete")
        await self.inner.delete(key)

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return await self.inner.list_uploads(prefix)

    async def head(self, key: str) -> ObjectInfo | None:
        await self._enter("head")
        return await self.inner.head(key)

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        await self._enter("get_bytes")
        return await self.inner.get_bytes(key)

    async def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                        if_match: str | None = None) -> str:
        outcome = await self._enter("put_bytes")
        etag = await self.inner.put_bytes(key, data, if_none_match=if_none_match,
                                          if_match=if_match)
        if outcome == "landed":  # the write happened, but its answer was lost
            raise StoreError("connection reset after the write", transient=True)
        return etag

    @contextlib.asynccontextmanager
    async def open_range(self, key: str, start: int, end: int | None, *,
                         if_match: str | None = None) -> AsyncIterator[RangeBody]:
        async with self._tracked():
            outcome = await self._enter("open_range")
            self.ranges.append((start, end))
            async with self.inner.open_range(key, start, end, if_match=if_match) as body:
                size = (body.info.size if end is None else min(end, body.info.size)) - start
                yield RangeBody(body.info, self._altered(body.chunks, outcome, size))

    async def _altered(self, chunks: AsyncIterator[bytes], outcome: Any,
                       size: int) -> AsyncIterator[bytes]:
        sent = 0
        first = True
        async for chunk in chunks:
            if outcome == "truncate" and sent + len(chunk) > size // 2:
                yield chunk[: size // 2 - sent]
                return
            if outcome == "corrupt" and first:
                chunk = bytes([chunk[0] ^ 1]) + chunk[1:]
            first = False
            sent += len(chunk)
            self.delivered += len(chunk)
            yield chunk
        if outcome == "extend":
            for _ in range(EXTRA // 65536):
                self.delivered += 65536
                yield bytes(65536)

    def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.inner.list_keys(prefix)

    async def list_dirs(self, prefix: str) -> list[str]:
        return await self.inner.list_dirs(prefix)

    async def create_multipart(self, key: str, size: int) -> str:
        await self._enter("create_multipart")
        return await self.inner.create_multipart(key, size)

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        async with self._tracked():
            await self._enter("upload_part")
            return await self.inner.upload_part(key, upload_id, part, data)

    async def complete_multipart(self, key: str, upload_id: str,
                                 receipts: Sequence[PartReceipt], *, if_none_match: bool) -> str:
        await self._enter("complete_multipart")
        return await self.inner.complete_multipart(key, upload_id, receipts,
                                                   if_none_match=if_none_match)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self.calls["abort_multipart"] += 1
        await self.inner.abort_multipart(key, upload_id)

    async def __aenter__(self) -> FaultyStore:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self.inner.aclose()
