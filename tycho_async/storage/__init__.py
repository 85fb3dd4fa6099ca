"""The Store protocol: the few object operations the registry and the engine need.

A store knows one backend and nothing of packages. Keys are "/"-separated strings
relative to the registry root. It is configured by its own options (``S3Options``,
``LocalOptions``), never by the application's settings, and is an async resource:

    async with open_store(options) as store:
        info = await store.head("pkg/tycho.json")

Every failure leaves a store as a TychoError: NotFound where a method needs an object
that is missing (``get_bytes``, ``open_range``; ``head`` answers None instead, and
``delete`` and ``abort_multipart`` take a missing object as done), MissingRegistry for
a bucket that does not exist, PreconditionFailed for a lost conditional write,
ConfigError for options the backend refuses, StoreError (with ``transient`` set where a
retry may help) for the rest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from typing_extensions import Self

KiB = 1024


@dataclass(frozen=True)
class S3Options:
    """What an S3 store needs. ``prefix`` is "" or ends in "/"; ``client_kwargs`` go
    to the S3 client as they are (``endpoint_url``, ``region_name``, keys, ``verify``,
    ...; none: the AWS chain); ``checksums`` False sends Content-MD5 instead of CRC32s,
    for stores that refuse them; ``max_connections`` sizes the connection pool (the
    caller's concurrency plus a little); ``chunk_size`` is what a download body yields
    at a time. ``connect_timeout`` bounds opening a connection; ``read_timeout`` the
    wait for an answer's first byte, counted from the request's last byte sent (a slow
    upload is never cut), and every silence within a body: short, so that a store
    that accepts connections and never answers fails a command in seconds."""

    bucket: str
    prefix: str = ""
    client_kwargs: Mapping[str, Any] = field(default_factory=dict)
    checksums: bool = True
    addressing_style: str | None = None  # "path" or "virtual"; None: botocore decides
    max_connections: int = 34
    chunk_size: int = 256 * KiB
    connect_timeout: float = 5.0
    read_timeout: float = 5.0

    @property
    def location(self) -> str:
        """The registry's URL, ``s3://BUCKET/PREFIX``."""
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class LocalOptions:
    """A registry in a local directory (created by the first write)."""

    root: Path

    @property
    def location(self) -> str:
        """The directory."""
        return str(self.root)


StoreOptions = S3Options | LocalOptions


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
    # The store's own clock when it answered a HEAD (an HTTP Date; a local store's is
    # this machine's), so an age is Date minus Last-Modified, whatever the caller's clock.
    server_time: float | None = None

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
    """One backend's object operations. A store is an async resource: ``async with``
    it (``open_store`` yields one already entered) and leaving the block closes its
    connections."""

    async def __aenter__(self) -> Self:
        """The store itself (already open)."""
        ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        """Close the store, as ``aclose`` does, shielded from cancellation so that a
        cancelled block still releases its connections. Returns None (the block's
        exception, if any, goes on)."""
        ...

    @property
    def creates_root(self) -> bool:
        """Whether a first write creates the registry itself: a local directory appears,
        a bucket does not."""
        ...

    @property
    def location(self) -> str:
        """Where the store is, for messages: a bucket URL with its endpoint, or a path."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size, ETag and time, or None if there is no such object (not
        NotFound). StoreError for the rest."""
        ...

    async def root_exists(self) -> bool:
        """Whether the bucket (or directory) exists at all; a bucket we may not look at
        counts as existing. StoreError if the store cannot be asked."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error. Returns None; StoreError if
        the store refuses."""
        ...

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        """Multipart uploads in progress of keys starting with ``prefix`` (for a local
        store, its temporary files), in no particular order; [] if none (or if the store
        cannot list them). StoreError if the listing fails."""
        ...

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        """The whole (small) object and its ETag. NotFound if it does not exist,
        StoreError for the rest."""
        ...

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write a whole object; with ``if_none_match`` only if absent, with ``if_match``
        only if its ETag is still that one. Returns the new ETag; PreconditionFailed if
        the condition does not hold, StoreError for the rest."""
        ...

    def open_range(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> AbstractAsyncContextManager[RangeBody]:
        """Stream bytes ``start`` to ``end`` (exclusive; clipped to the object's size;
        None with ``start`` 0: the whole object, asked without a range) of an object.
        NotFound if it does not exist, PreconditionFailed if its ETag is not
        ``if_match``, StoreError for the rest (including a store that ignored the
        range). Yields a RangeBody: the whole object's info and the requested bytes."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, all pages, as ObjectInfo with
        keys relative to the registry root; nothing for a prefix with no objects.
        StoreError (MissingRegistry for a missing bucket) if a page cannot be read."""
        ...

    async def list_dirs(self, prefix: str) -> list[str]:
        """The names of the "directories" directly under ``prefix`` (without the
        trailing "/"); [] if none. StoreError if the listing fails."""
        ...

    async def create_multipart(self, key: str, size: int) -> str:
        """Start a multipart upload of ``size`` bytes (0 when not known yet; a local
        store preallocates it); returns its upload id. StoreError if the store
        refuses."""
        ...

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        """Send one part; returns its receipt (its ETag, its checksum), which goes back
        to ``complete_multipart``. NotFound (S3) or StoreError (local) if the upload
        is gone, StoreError for the rest."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, receipts: Sequence[PartReceipt], *,
        if_none_match: bool,
    ) -> str:
        """Join the parts (in order) into the object; with ``if_none_match`` only if
        it is absent. Returns the object's ETag; PreconditionFailed if it exists
        already, NotFound (S3) or StoreError (local) if the upload is gone,
        StoreError for the rest."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an upload and its parts; an upload already gone is not an error.
        StoreError if the store refuses."""
        ...

    async def aclose(self) -> None:
        """Close the store's connections; returns None. Prefer ``async with``."""
        ...


@asynccontextmanager
async def open_store(options: StoreOptions) -> AsyncIterator[Store]:
    """``async with open_store(options) as store:`` the store the options name, open
    for the block and closed when it ends (also on error or cancellation). Backends
    are imported only when used. ConfigError if the backend refuses the options."""
    store: Store
    if isinstance(options, S3Options):
        from .s3 import S3Store

        store = await S3Store.open(options)
    else:
        from .local import LocalStore

        store = LocalStore(options.root)
    async with store:
        yield store
