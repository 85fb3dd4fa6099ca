"""The lean path's requests for objects and listings: one request (or one listing, page by
page) per Store operation, its answer checked and its failure translated into our errors,
with what it costs a request read by hand (HTTP dates, listing times, the CRC32 header)
so that no datetime, email or xml.sax import lands on the request path. ``S3Store``
routes each call here or to botocore; ``s3uploads`` sends the multipart calls on the
same translation.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..errors import MissingRegistry, NotFound, StoreError, TychoError
from . import ObjectInfo, S3Options
from .http import ConnectFailed, ConnectTimeout, HTTPFailure, ReadTimeout, TLSFailure
from .s3errors import (
    Silence,
    answer_error,
    check_span,
    connect_timeout,
    connection_failed,
    not_s3,
    range_header,
    read_timeout,
    root_found,
    tls_failed,
)
from .s3lean import Element, LeanS3, NotS3Answer, S3ErrorAnswer, encoded_query, listed_key

_LEAN_FAILURES = (HTTPFailure, S3ErrorAnswer, NotS3Answer)
_MONTHS = {name: n for n, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _epoch_of(year: int, month: int, day: int, hour: int, minute: int, second: float
              ) -> float:
    """Seconds since the epoch of a UTC time (days from the civil date, as in Hinnant's
    algorithm): no datetime or email import on the request path."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


def http_date(value: str | None) -> float | None:
    """An HTTP date (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT") in seconds since the
    epoch; None if absent or not in that form."""
    try:
        _, day, month, year, clock, zone = (value or "").split()
        hour, minute, second = clock.split(":")
        if zone != "GMT":
            return None
        return _epoch_of(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                         int(second))
    except (ValueError, KeyError):
        return None


def iso_date(value: str | None) -> float | None:
    """An ISO 8601 UTC time of a listing ("2026-12-01T23:00:00.000Z")."""
    try:
        date, _, clock = (value or "").rstrip("Z").partition("T")
        year, month, day = date.split("-")
        hour, minute, second = clock.split(":")
        return _epoch_of(int(year), int(month), int(day), int(hour), int(minute),
                         float(second))
    except ValueError:
        return None


def checksum(data: bytes | memoryview, crc32: bool) -> dict[str, str]:
    """The CRC32 header botocore would add (the store verifies it): in-flight damage is
    refused at a fraction of the cost of signing the payload. Stores that refuse CRC32
    headers (``"checksums": false``) get Content-MD5, which every store takes."""
    if not crc32:
        return {"content-md5": base64.b64encode(hashlib.md5(data).digest()).decode()}
    crc = zlib.crc32(data).to_bytes(4, "big")
    return {"x-amz-checksum-crc32": base64.b64encode(crc).decode()}


class LeanCalls:
    """The lean client's side of each object and listing call, for one bucket and prefix.

    Every request runs under :meth:`translated`, which also keeps the count of
    ``Silence`` (shared with botocore's path, so a black hole is one count)."""

    def __init__(self, options: S3Options, endpoint: str, silence: Silence) -> None:
        self._options = options
        self.bucket = options.bucket
        self.prefix = options.prefix
        self.endpoint = endpoint  # for messages: already without credentials
        self.silence = silence

    def key(self, key: str) -> str:
        return self.prefix + key

    # -- errors ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def translated(self, what: str, *, read_timeout_: float | None = None) -> Iterator[None]:
        """Translate what the block raises into our errors (a redirect passes: the caller
        falls back to botocore)."""
        self.silence.check(what)
        try:
            yield
        except _LEAN_FAILURES as exc:
            error = self._error(exc, what, read_timeout_ or self._options.read_timeout)
            if isinstance(error, MissingRegistry):
                error = MissingRegistry(f"bucket {self.bucket!r} does not exist at "
                                        f"{self.endpoint}")
            if isinstance(exc, (ConnectFailed, ReadTimeout)) and \
                    not isinstance(exc, TLSFailure):
                self.silence.silent(error.message.removeprefix(f"{what}: "))
            else:
                self.silence.answered = isinstance(exc, (S3ErrorAnswer, NotS3Answer)) \
                    or self.silence.answered
            raise error from exc
        self.silence.answered = True

    def _error(self, exc: BaseException, what: str, read_seconds: float) -> TychoError:
        if isinstance(exc, S3ErrorAnswer):
            return answer_error(exc.code, exc.status, exc.message, exc.operation, what,
                                self.endpoint)
        if isinstance(exc, NotS3Answer):
            return not_s3(self.endpoint, what, str(exc))
        if isinstance(exc, ConnectTimeout):
            return connect_timeout(what, self.endpoint, self._options.connect_timeout)
        if isinstance(exc, ReadTimeout):
            return read_timeout(what, self.endpoint, read_seconds)
        if isinstance(exc, TLSFailure):
            return tls_failed(what, self.endpoint, str(exc).partition(": ")[2] or exc)
        if isinstance(exc, ConnectFailed) and "proxy" in str(exc):
            return StoreError(f"{what}: {exc}", transient=True)
        return connection_failed(what, self.endpoint, type(exc).__name__)

    def etag(self, headers: dict[str, str], what: str, status: int) -> str:
        """The answer's ETag: every answer to these requests has one."""
        etag = headers.get("etag")
        if etag is None:
            raise not_s3(self.endpoint, what, f"HTTP {status} without an ETag")
        return etag

    def check_listing(self, page: Element, what: str) -> None:
        """Well-formed HTML parses as XML too, into a page with none of S3's fields,
        which must not read as an empty bucket."""
        if page.tag not in ("ListBucketResult", "ListMultipartUploadsResult") or \
                page.text_of("IsTruncated") is None:
            raise not_s3(self.endpoint, what, "an answer without S3's listing fields")

    # -- objects --------------------------------------------------------------------------

    async def head(self, client: LeanS3, key: str) -> ObjectInfo | None:
        try:
            with self.translated(f"head {key}"):
                resp = await client.send("HEAD", self.key(key), operation="HeadObject")
                await resp.read()
        except NotFound:
            return None
        headers = resp.headers
        if "etag" not in headers:
            raise not_s3(self.endpoint, f"head {key}", f"HTTP {resp.status} without an "
                         "ETag")
        return ObjectInfo(key, int(headers.get("content-length", 0)), headers["etag"],
                          http_date(headers.get("last-modified")),
                          http_date(headers.get("date")))

    async def root_exists(self, client: LeanS3) -> bool:
        async def look() -> None:
            with self.translated(f"look up the bucket {self.bucket}"):
                resp = await client.send("HEAD", "", operation="HeadBucket", bucket=True)
                await resp.read()

        return await root_found(look)

    async def delete(self, client: LeanS3, key: str) -> None:
        with self.translated(f"delete {key}"):
            await (await client.send("DELETE", self.key(key),
                                     operation="DeleteObject")).read()

    async def get_bytes(self, client: LeanS3, key: str) -> tuple[bytes, str]:
        with self.translated(f"read {key}"):
            resp = await client.send("GET", self.key(key), operation="GetObject")
            content = await resp.read()
        return content, self.etag(resp.headers, f"read {key}", resp.status)

    async def put_bytes(self, client: LeanS3, key: str, data: bytes, *, if_none_match: bool,
                        if_match: str | None) -> str:
        headers = checksum(data, self._options.checksums)
        if if_none_match:
            headers["if-none-match"] = "*"
        if if_match is not None:
            headers["if-match"] = if_match
        with self.translated(f"write {key}"):
            resp = await client.send("PUT", self.key(key), headers=headers, body=data,
                                     operation="PutObject")
            await resp.read()
        return self.etag(resp.headers, f"write {key}", resp.status)

    async def get_range(self, client: LeanS3, key: str, start: int, end: int | None,
                        if_match: str | None) -> Any:
        """The answer to a ranged GET, its body not yet read (the caller releases it)."""
        headers = {"if-match": if_match} if if_match is not None else {}
        span = range_header(start, end)
        if span is not None:
            headers["range"] = span
        with self.translated(f"read {key}"):
            return await client.send("GET", self.key(key), headers=headers,
                                     operation="GetObject")

    def range_info(self, key: str, start: int, resp: Any) -> ObjectInfo:
        headers = resp.headers
        span = str(headers.get("content-range", ""))
        check_span(key, start, span)
        etag = self.etag(headers, f"read {key}", resp.status)
        total = int(span.rpartition("/")[2] or headers.get("content-length", 0))
        return ObjectInfo(key, total, etag, http_date(headers.get("last-modified")))

    async def chunks(self, resp: Any, what: str) -> AsyncIterator[bytes]:
        with self.translated(what):
            async for chunk in resp.chunks():
                yield chunk

    # -- listings -------------------------------------------------------------------------

    async def list_keys(self, client: LeanS3, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for page in self._pages(client, self.key(prefix), None):
            for item in page.children("Contents"):
                yield ObjectInfo(listed_key(item.text_of("Key"))[len(self.prefix):],
                                 int(item.text_of("Size") or 0),
                                 item.text_of("ETag") or "",
                                 iso_date(item.text_of("LastModified")))

    async def list_dirs(self, client: LeanS3, prefix: str) -> list[str]:
        full = self.key(prefix)
        names = []
        async for page in self._pages(client, full, "/"):
            for item in page.children("CommonPrefixes"):
                names.append(listed_key(item.text_of("Prefix"))[len(full):].rstrip("/"))
        return names

    async def _pages(self, client: LeanS3, prefix: str, delimiter: str | None
                     ) -> AsyncIterator[Element]:
        """ListObjectsV2, every page, keys url-encoded by the store (as botocore asks,
        so that any key survives the XML)."""
        token: str | None = None
        what = "list the bucket"
        for _ in range(1_000_000):  # a store that never stops truncating is cut off
            params = {"list-type": "2", "encoding-type": "url", "prefix": prefix}
            if delimiter:
                params["delimiter"] = delimiter
            if token:
                params["continuation-token"] = token
            with self.translated(what):
                page = await client.xml("GET", "", query=encoded_query(dict(sorted(
                    params.items()))), operation="ListObjectsV2", bucket=True)
            self.check_listing(page, what)
            yield page
            token = page.text_of("NextContinuationToken")
            if page.text_of("IsTruncated") != "true" or not token:
                return
