"""A SHA-256 computed beside the code that produces the bytes: a stream push hashes the
tree and the compressed stream while it builds the tar, and hashlib releases the GIL on
large buffers, so a worker thread of its own turns two sequential passes into parallel
ones (measured: a directory push spent a third of its producer thread's time hashing)."""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

LIMIT = 8 << 20  # bytes queued for hashing at most: memory stays bounded


class BackgroundSha256:
    """``update`` queues the bytes for a worker thread that hashes them in order;
    ``hexdigest`` waits for it. Call ``close`` when done, whatever happened."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tychoreg-sha256")
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._queued = 0
        self._limit = limit

    def update(self, data: bytes) -> None:
        while self._pending and self._queued + len(data) > self._limit:
            self._settle()
        self._pending.append((self._pool.submit(self._hash.update, data), len(data)))
        self._queued += len(data)

    def _settle(self) -> None:
        future, size = self._pending.popleft()
        future.result()
        self._queued -= size

    def hexdigest(self) -> str:
        while self._pending:
            self._settle()
        return self._hash.hexdigest()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
