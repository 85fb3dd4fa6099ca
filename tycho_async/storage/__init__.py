"""The Store protocol: the few object operations the registry and the engine need.

A store knows one backend and nothing of packages. Keys are "/"-separated strings
relative to the registry root. Every failure leaves a store as a TychoError: NotFound
for a missing object, PreconditionFailed for a lost conditional write, StoreError
(with ``transient`` set where a retry may help) for the rest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True)
class Part:
    """A byte range of an object: a part of a multipart upload (``number`` is 1-based,
    as S3 numbers parts) or a range of a download."""

    number: int
    offset: int
    size: int

    @property
    def end(self) -> int:
        """Offset one past the last byte."""
        return self.offset + self.size


_MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')


def plain_md5(etag: str) -> str | None:
    """The MD5 an ETag is, for objects written in one PUT; None for multipart ETags
    ("...-N") and for stores whose ETags are not digests."""
    match = _MD5_ETAG.fullmatch(etag)
    return match.group(1).lower() if match else None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # exactly as the backend reports it, quotes included
    modified: float | None = None  # seconds since the epoch, where the answer says

    @property
    def md5(self) -> str | None:
        """What the ETag says of the bytes: their MD5 for a single-part upload, else
        nothing (a fact about the store, not a registry rule)."""
        return plain_md5(self.etag)


@dataclass(frozen=True)
class UploadInfo:
    """A multipart upload in progress."""

    key: str
    upload_id: str
    initiated: float  # seconds since the epoch


PartReceipt = Mapping[str, str]
"""What a store returns for an uploaded part and needs again to complete the upload."""


@dataclass(frozen=True)
class RangeBody:
    """An open ranged GET: the whole object's size and ETag (from the response headers,
    so a first GET can replace a HEAD) and the requested bytes, in chunks."""

    info: ObjectInfo
    chunks: AsyncIterator[bytes]


class Store(Protocol):
    @property
    def creates_root(self) -> bool:
        """Whether a first write creates the registry itself: a local directory appears,
        a bucket does not."""
        ...

    @property
    def location(self) -> str:
        """Where the store is, for messages: a bucket URL with its endpoint, or a path."""
        ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def root_exists(self) -> bool:
        """Whether the bucket (or directory) exists at all."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error."""
        ...

    async def list_uploads(self, key: str) -> list[UploadInfo]:
        """Multipart uploads of ``key`` in progress."""
        ...

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        """The whole (small) object and its ETag."""
        ...

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write a whole object; with ``if_none_match`` only if absent, with ``if_match``
        only if its ETag is still that one. Returns the new ETag."""
        ...

    def open_range(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> AbstractAsyncContextManager[RangeBody]:
        """Stream bytes ``start`` to ``end`` (exclusive; clipped to the object's size;
        None with ``start`` 0: the whole object, asked without a range) of an object.
        NotFound if it does not exist, PreconditionFailed if its ETag is not
        ``if_match``."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, all pages."""
        ...

    async def list_dirs(self, prefix: str) -> list[str]:
        """The names of the "directories" directly under ``prefix``."""
        ...

    async def create_multipart(self, key: str, size: int) -> str: ...

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        """Send one part; the receipt (its ETag, its checksum) goes back to complete."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, receipts: Sequence[PartReceipt], *,
        if_none_match: bool,
    ) -> str: ...

    async def abort_multipart(self, key: str, upload_id: str) -> None: ...

    async def aclose(self) -> None: ...


async def open_store(settings: Settings) -> Store:
    """The store the settings name; backends are imported only when used."""
    if settings.backend == "s3":
        from .s3 import S3Store

        return await S3Store.open(settings)
    from .local import LocalStore

    assert settings.local_root is not None
    return LocalStore(settings.local_root)
