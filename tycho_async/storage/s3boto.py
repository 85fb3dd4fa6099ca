"""The Store's calls through aiobotocore: the path for what only botocore knows (profiles,
SSO, ``credential_process``, instance roles, ``~/.aws/config`` settings, redirects to a
bucket's region). ``S3Store`` sends its requests through the lean client and loads this
module only when such a thing is in play; it then asks this store's client for the
bucket's URL and its refreshing credentials (``conn.lean_address``, ``conn.credentials``)
and sends every call here after a redirect.

botocore's own retries are off: the engine retries every request itself, per part and
with one backoff policy, so a throttled part never doubles its wait. The connection pool
is sized by ``S3Options.max_connections`` (the engine's concurrency plus a little), since
botocore's default of 10 would silently queue requests beyond it. The client itself, its
translation of failures and what the lean path asks of it are ``s3botoclient``'s.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import NotFound, StoreError
from . import ObjectInfo, Part, PartReceipt, RangeBody, S3Options, UploadInfo
from .s3botoclient import COMPLETE_TIMEOUT, BotoClient
from .s3errors import (
    Silence,
    check_span,
    no_bytes,
    not_s3,
    past_the_end,
    range_header,
    root_found,
)


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class _PartReader(io.RawIOBase):
    """A seekable reader over bytes already in memory. aiohttp copies a bytes or BytesIO
    body whole (and Python 3.11's transport copies what the socket does not take at once),
    but streams any other file object in small chunks: this keeps one copy of each part."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos:self._pos + len(buffer)]
        buffer[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def __len__(self) -> int:
        return len(self._view)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else None


class BotoS3:
    """Each Store call as one botocore request (or paginated listing) on ``conn``."""

    def __init__(self, conn: BotoClient, prefix: str, chunk_size: int, checksums: bool
                 ) -> None:
        self.conn = conn
        self._client = conn.client
        self.bucket = conn.bucket
        self.prefix = prefix
        self.chunk_size = chunk_size
        # As s3transfer does: botocore adds a CRC32 to every part, so the upload must be
        # created with that algorithm and completed with each part's checksum, or
        # stricter stores refuse the parts ("checksum type mismatch").
        self._part_checksum = {"ChecksumAlgorithm": "CRC32"} if checksums else {}

    @classmethod
    async def open(cls, options: S3Options, silence: Silence | None = None) -> BotoS3:
        """A store with its client open: ``aclose`` it. ConfigError if botocore refuses
        the client options."""
        return cls(await BotoClient.open(options, silence), options.prefix,
                   options.chunk_size, options.checksums)

    def _key(self, key: str) -> str:
        return self.prefix + key

    @property
    def endpoint(self) -> str:
        """The endpoint's URL, for messages (never with credentials in it)."""
        return self.conn.endpoint

    def _page(self, page: dict[str, Any], what: str) -> dict[str, Any]:
        """A listing page, checked: well-formed HTML parses as XML too, into a page with
        none of S3's fields, which must not read as an empty bucket."""
        if not {"IsTruncated", "Name", "Bucket"} & set(page):
            raise not_s3(self.endpoint, what, "an answer without S3's listing fields")
        return page

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            with self.conn.translated(f"head {key}"):
                resp = await self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return None
        headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return ObjectInfo(key, int(resp["ContentLength"]), resp["ETag"],
                          _epoch(resp.get("LastModified")), _http_date(headers.get("date")))

    async def root_exists(self) -> bool:
        async def look() -> None:
            with self.conn.translated(f"look up the bucket {self.bucket}"):
                await self._client.head_bucket(Bucket=self.bucket)

        return await root_found(look)

    async def delete(self, key: str) -> None:
        with self.conn.translated(f"delete {key}"):
            await self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        found: list[UploadInfo] = []
        full = self._key(prefix)
        cut = len(self.prefix)
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self.conn.translated("list uploads in progress"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in self._page(page, "list uploads in progress").get("Uploads", []):
                    if item["Key"].startswith(full):
                        found.append(UploadInfo(item["Key"][cut:], item["UploadId"],
                                                _epoch(item.get("Initiated")) or 0.0))
        return found

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        with self.conn.translated(f"read {key}"):
            resp = await self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            async with resp["Body"] as body:
                return await body.read(), resp["ETag"]

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        with self.conn.translated(f"write {key}"):
            extra: dict[str, str] = {}
            if if_none_match:
                extra["IfNoneMatch"] = "*"
            if if_match is not None:
                extra["IfMatch"] = if_match
            resp = await self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **extra
            )
        return str(resp["ETag"])

    @contextlib.asynccontextmanager
    async def open_range(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> AsyncIterator[RangeBody]:
        resp: Any = None
        empty: ObjectInfo | None = None
        try:
            with self.conn.translated(f"read {key}"):
                extra = {"IfMatch": if_match} if if_match is not None else {}
                span = range_header(start, end)
                if span is not None:
                    extra["Range"] = span
                resp = await self._client.get_object(
                    Bucket=self.bucket, Key=self._key(key), **extra)
        except StoreError as exc:
            if exc.code != "InvalidRange":
                raise
            empty = await self.head(key)
            if not past_the_end(start, empty, if_match):
                raise
        if empty is not None:
            yield RangeBody(empty, no_bytes())
            return
        span = str(resp.get("ContentRange", ""))
        try:
            check_span(key, start, span)
        except StoreError:
            resp["Body"].close()
            raise
        total = int(span.rpartition("/")[2] or resp["ContentLength"])
        body = resp["Body"]
        info = ObjectInfo(key, total, resp["ETag"], _epoch(resp.get("LastModified")))
        try:
            yield RangeBody(info, self._chunks(body, key))
        finally:
            body.close()

    async def _chunks(self, body: Any, key: str) -> AsyncIterator[bytes]:
        with self.conn.translated(f"read {key}"):
            while chunk := await body.read(self.chunk_size):
                yield chunk

    async def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        cut = len(self.prefix)
        with self.conn.translated("list the bucket"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in self._page(page, "list the bucket").get("Contents", []):
                    yield ObjectInfo(item["Key"][cut:], int(item["Size"]), item["ETag"],
                                     _epoch(item.get("LastModified")))

    async def list_dirs(self, prefix: str) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        names: list[str] = []
        with self.conn.translated("list the bucket"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for item in self._page(page, "list the bucket").get("CommonPrefixes", []):
                    names.append(item["Prefix"][len(full):].rstrip("/"))
        return names

    async def create_multipart(self, key: str, size: int) -> str:
        with self.conn.translated(f"start upload of {key}"):
            resp = await self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), **self._part_checksum
            )
        return str(resp["UploadId"])

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        with self.conn.translated(f"upload part {part.number} of {key}"):
            resp = await self._client.upload_part(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                PartNumber=part.number, Body=_PartReader(data), **self._part_checksum,
            )
        return {name: str(resp[name]) for name in ("ETag", "ChecksumCRC32") if name in resp}

    async def complete_multipart(
        self, key: str, upload_id: str, receipts: Sequence[PartReceipt], *,
        if_none_match: bool,
    ) -> str:
        parts = [{"PartNumber": n, **receipt} for n, receipt in enumerate(receipts, start=1)]
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        what = f"finish upload of {key}"
        with self.conn.translated(what, read_timeout=max(COMPLETE_TIMEOUT, self.conn.timeouts[1])):
            client = await self.conn.completing_client()
            resp = await client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                MultipartUpload={"Parts": parts}, **extra,
            )
        return str(resp["ETag"])

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            with self.conn.translated(f"abort upload of {key}"):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
                )
        except NotFound:
            return

    async def aclose(self) -> None:
        await self.conn.aclose()
