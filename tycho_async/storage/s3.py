"""A registry in an S3 bucket (or any S3-compatible store).

Every request goes through the lean client (``s3lean``: our own SigV4 and HTTP/1.1 pool),
which costs a fraction of botocore's per-request pipeline and, with static keys and no
AWS config file, never imports botocore at all. botocore (``s3boto``) is loaded only
where it must decide: credentials that are not static keys, settings of a profile or of
``~/.aws/config``, and a bucket that answers from another region, after which every call
goes through botocore, which follows such redirects.

No request is retried here: the engine retries each one itself, with one backoff policy.
Payloads are not SHA-256 signed: a CRC32 header (or Content-MD5, ``checksums`` off) lets
the store refuse bytes damaged in flight, and the engine checks every download whole.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from ..errors import (
    ConfigError,
    MissingRegistry,
    NotFound,
    PreconditionFailed,
    StoreError,
    TychoError,
)
from ..logs import redact_url
from . import ObjectInfo, Part, PartReceipt, RangeBody, S3Options, UploadInfo
from .http import (
    ConnectFailed,
    ConnectTimeout,
    HTTPFailure,
    Pool,
    ReadTimeout,
    TLSFailure,
)
from .s3errors import (
    Silence,
    answer_error,
    check_span,
    connect_timeout,
    connection_failed,
    no_bytes,
    not_s3,
    past_the_end,
    range_header,
    read_timeout,
    tls_failed,
)
from .s3lean import (
    USER_AGENT,
    Address,
    Element,
    LeanS3,
    NotS3Answer,
    Redirected,
    S3ErrorAnswer,
    configured_endpoint,
    encoded_query,
    listed_key,
    plain_address,
    plain_credentials,
)
from .sigv4 import Credentials

if TYPE_CHECKING:
    from typing_extensions import Self

    from .s3boto import BotoS3

T = TypeVar("T")
log = logging.getLogger(__name__)
COMPLETE_TIMEOUT = 60.0  # seconds a CompleteMultipartUpload may take to answer
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


def _escaped(text: str) -> str:
    """Text for an XML element (xml.sax.saxutils would import urllib.request for this)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _static(credentials: Credentials) -> Callable[[], Awaitable[Credentials]]:
    async def get() -> Credentials:
        return credentials

    return get


class S3Store:
    def __init__(self, options: S3Options, pool: Pool, lean: LeanS3 | None,
                 boto: BotoS3 | None, endpoint: str, silence: Silence | None = None) -> None:
        self._options = options
        self.bucket = options.bucket
        self.prefix = options.prefix
        self._pool = pool
        self._lean = lean
        self._boto = boto
        self._endpoint = endpoint
        self._silence = silence or Silence()  # one count for both paths

    @classmethod
    async def open(cls, options: S3Options) -> S3Store:
        """A store ready for requests: ``async with`` it, or ``aclose`` it. ConfigError
        for options the client refuses."""
        kwargs = options.client_kwargs
        endpoint = configured_endpoint(kwargs)
        if endpoint and redact_url(endpoint) != endpoint:
            raise ConfigError(
                f"the S3 endpoint {redact_url(endpoint)} holds credentials (user:password@), "
                "which S3 requests cannot use: put them in aws_access_key_id and "
                "aws_secret_access_key (or the AWS variables) instead")
        verify = kwargs.get("verify")
        verify = verify if isinstance(verify, (bool, str)) else None

        def pool(bundle: str | None = None) -> Pool:
            return Pool(connect_timeout=options.connect_timeout,
                        read_timeout=options.read_timeout, max_idle=options.max_connections,
                        verify=bundle if verify is None and bundle else verify,
                        user_agent=USER_AGENT)

        address = plain_address(options.bucket, kwargs, options.addressing_style)
        credentials = plain_credentials(kwargs)
        if address is not None and credentials is not None:
            connections = pool()
            origin = address.origin
            shown = endpoint or f"{origin.scheme}://{origin.netloc}"
            return cls(options, connections, LeanS3(connections, address,
                                                    _static(credentials)), None, shown)
        from .s3boto import BotoS3  # only where botocore must decide

        silence = Silence()
        boto = await BotoS3.open(options, silence)
        try:
            resolved = await boto.lean_address()
        except BaseException:
            await boto.aclose()
            raise
        lean = None
        connections = pool(boto.ca_bundle())
        if resolved is not None:
            url, region = resolved
            log.debug("lean request path: %s..., region %s", redact_url(url), region)

            async def refreshed() -> Credentials:
                return Credentials(*await boto.credentials())

            lean = LeanS3(connections, Address.of_url(url, region), refreshed)
        return cls(options, connections, lean, boto, boto.endpoint, silence)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        import anyio

        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await self.aclose()

    creates_root = False  # whether a first write creates the registry itself

    @property
    def endpoint(self) -> str:
        """The endpoint's URL, for messages (never with credentials in it)."""
        return redact_url(self._endpoint)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    # -- errors ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self, what: str, *, read_timeout_: float | None = None) -> Iterator[None]:
        """Translate what the block raises into our errors (a redirect passes: the caller
        falls back to botocore)."""
        self._silence.check(what)
        try:
            yield
        except _LEAN_FAILURES as exc:
            error = self._error(exc, what, read_timeout_ or self._options.read_timeout)
            if isinstance(error, MissingRegistry):
                error = MissingRegistry(f"bucket {self.bucket!r} does not exist at "
                                        f"{self.endpoint}")
            if isinstance(exc, (ConnectFailed, ReadTimeout)) and \
                    not isinstance(exc, TLSFailure):
                self._silence.silent(error.message.removeprefix(f"{what}: "))
            else:
                self._silence.answered = isinstance(exc, (S3ErrorAnswer, NotS3Answer)) \
                    or self._silence.answered
            raise error from exc
        self._silence.answered = True

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

    # -- the two paths --------------------------------------------------------------------

    async def _botocore(self) -> BotoS3:
        if self._boto is None:
            from .s3boto import BotoS3

            self._boto = await BotoS3.open(self._options, self._silence)
        return self._boto

    async def _fall_back(self, region: object) -> BotoS3:
        log.debug("bucket %s answers from region %s: requests go through botocore from now",
                  self.bucket, region)
        self._lean = None
        boto = await self._botocore()
        boto.redirected(region)
        return boto

    async def _either(self, lean_call: Callable[[LeanS3], Awaitable[T]],
                      boto_call: Callable[[BotoS3], Awaitable[T]]) -> T:
        if self._lean is not None:
            try:
                return await lean_call(self._lean)
            except Redirected as exc:
                return await boto_call(await self._fall_back(exc.args[0]))
        return await boto_call(await self._botocore())

    # -- the Store operations -------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        async def lean(client: LeanS3) -> ObjectInfo | None:
            try:
                with self._translated(f"head {key}"):
                    resp = await client.send("HEAD", self._key(key), operation="HeadObject")
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

        return await self._either(lean, lambda boto: boto.head(key))

    async def root_exists(self) -> bool:
        async def lean(client: LeanS3) -> bool:
            try:
                with self._translated(f"look up the bucket {self.bucket}"):
                    resp = await client.send("HEAD", "", operation="HeadBucket", bucket=True)
                    await resp.read()
            except NotFound:
                return False
            except StoreError as exc:
                if exc.code in {"403", "AccessDenied"}:
                    return True  # it exists, we may not look at it: the real call will say
                raise
            return True

        return await self._either(lean, lambda boto: boto.root_exists())

    async def delete(self, key: str) -> None:
        async def lean(client: LeanS3) -> None:
            with self._translated(f"delete {key}"):
                await (await client.send("DELETE", self._key(key),
                                         operation="DeleteObject")).read()

        await self._either(lean, lambda boto: boto.delete(key))

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        async def lean(client: LeanS3) -> tuple[bytes, str]:
            with self._translated(f"read {key}"):
                resp = await client.send("GET", self._key(key), operation="GetObject")
                content = await resp.read()
            return content, self._etag(resp.headers, f"read {key}", resp.status)

        return await self._either(lean, lambda boto: boto.get_bytes(key))

    def _etag(self, headers: dict[str, str], what: str, status: int) -> str:
        """The answer's ETag: every answer to these requests has one."""
        etag = headers.get("etag")
        if etag is None:
            raise not_s3(self.endpoint, what, f"HTTP {status} without an ETag")
        return etag

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        async def lean(client: LeanS3) -> str:
            headers = checksum(data, self._options.checksums)
            if if_none_match:
                headers["if-none-match"] = "*"
            if if_match is not None:
                headers["if-match"] = if_match
            with self._translated(f"write {key}"):
                resp = await client.send("PUT", self._key(key), headers=headers, body=data,
                                         operation="PutObject")
                await resp.read()
            return self._etag(resp.headers, f"write {key}", resp.status)

        try:
            return await self._either(lean, lambda boto: boto.put_bytes(
                key, data, if_none_match=if_none_match, if_match=if_match))
        except NotFound as exc:
            if if_match is None:
                raise
            # S3 answers If-Match on a missing object with 404: the ETag did not hold
            raise PreconditionFailed(f"{key} changed since it was read") from exc

    @contextlib.asynccontextmanager
    async def open_range(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> AsyncIterator[RangeBody]:
        what = f"read {key}"
        if self._lean is not None:
            headers = {"if-match": if_match} if if_match is not None else {}
            span = range_header(start, end)
            if span is not None:
                headers["range"] = span
            resp: Any = None
            empty: ObjectInfo | None = None
            try:
                with self._translated(what):
                    resp = await self._lean.send("GET", self._key(key), headers=headers,
                                                 operation="GetObject")
            except Redirected as exc:
                await self._fall_back(exc.args[0])
            except StoreError as exc:
                if exc.code != "InvalidRange":
                    raise
                empty = await self.head(key)
                if not past_the_end(start, empty, if_match):
                    raise
            if empty is not None:
                yield RangeBody(empty, no_bytes())  # outside the except: no hidden cause
                return
            if resp is not None:
                try:
                    yield RangeBody(self._range_info(key, start, resp), self._chunks(resp, what))
                finally:
                    resp.release()
                return
        boto = await self._botocore()
        async with boto.open_range(key, start, end, if_match=if_match) as body:
            yield body

    def _range_info(self, key: str, start: int, resp: Any) -> ObjectInfo:
        headers = resp.headers
        span = str(headers.get("content-range", ""))
        check_span(key, start, span)
        etag = self._etag(headers, f"read {key}", resp.status)
        total = int(span.rpartition("/")[2] or headers.get("content-length", 0))
        return ObjectInfo(key, total, etag, http_date(headers.get("last-modified")))

    async def _chunks(self, resp: Any, what: str) -> AsyncIterator[bytes]:
        with self._translated(what):
            async for chunk in resp.chunks():
                yield chunk

    async def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if self._lean is not None:
            try:
                async for page in self._pages(self._lean, self._key(prefix), None):
                    for item in page.children("Contents"):
                        yield ObjectInfo(listed_key(item.text_of("Key"))[len(self.prefix):],
                                         int(item.text_of("Size") or 0),
                                         item.text_of("ETag") or "",
                                         iso_date(item.text_of("LastModified")))
                return
            except Redirected as exc:
                await self._fall_back(exc.args[0])
        boto = await self._botocore()
        async for info in boto.list_keys(prefix):
            yield info

    async def list_dirs(self, prefix: str) -> list[str]:
        full = self._key(prefix)

        async def lean(client: LeanS3) -> list[str]:
            names = []
            async for page in self._pages(client, full, "/"):
                for item in page.children("CommonPrefixes"):
                    names.append(listed_key(item.text_of("Prefix"))[len(full):].rstrip("/"))
            return names

        return await self._either(lean, lambda boto: boto.list_dirs(prefix))

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
            with self._translated(what):
                page = await client.xml("GET", "", query=encoded_query(dict(sorted(
                    params.items()))), operation="ListObjectsV2", bucket=True)
            self._listing(page, what)
            yield page
            token = page.text_of("NextContinuationToken")
            if page.text_of("IsTruncated") != "true" or not token:
                return

    def _listing(self, page: Element, what: str) -> None:
        """Well-formed HTML parses as XML too, into a page with none of S3's fields,
        which must not read as an empty bucket."""
        if page.tag not in ("ListBucketResult", "ListMultipartUploadsResult") or \
                page.text_of("IsTruncated") is None:
            raise not_s3(self.endpoint, what, "an answer without S3's listing fields")

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        full = self._key(prefix)
        what = "list uploads in progress"

        async def lean(client: LeanS3) -> list[UploadInfo]:
            found: list[UploadInfo] = []
            markers: dict[str, str] = {}
            for _ in range(1_000_000):
                params = {"uploads": None, "prefix": full, **markers}
                with self._translated(what):
                    page = await client.xml("GET", "", query=encoded_query(dict(sorted(
                        params.items()))), operation="ListMultipartUploads", bucket=True)
                self._listing(page, what)
                for item in page.children("Upload"):
                    name = item.text_of("Key") or ""
                    if name.startswith(full):
                        found.append(UploadInfo(name[len(self.prefix):],
                                                item.text_of("UploadId") or "",
                                                iso_date(item.text_of("Initiated")) or 0.0))
                key_marker = page.text_of("NextKeyMarker")
                if page.text_of("IsTruncated") != "true" or not key_marker:
                    break
                markers = {"key-marker": key_marker,
                           "upload-id-marker": page.text_of("NextUploadIdMarker") or ""}
            return found

        return await self._either(lean, lambda boto: boto.list_uploads(prefix))

    async def create_multipart(self, key: str, size: int) -> str:
        async def lean(client: LeanS3) -> str:
            headers = {"x-amz-checksum-algorithm": "CRC32"} if self._options.checksums else {}
            with self._translated(f"start upload of {key}"):
                root = await client.xml("POST", self._key(key), query="uploads",
                                        headers=headers, operation="CreateMultipartUpload")
            upload_id = root.text_of("UploadId")
            if not upload_id:
                raise not_s3(self.endpoint, f"start upload of {key}", "no UploadId")
            return upload_id

        return await self._either(lean, lambda boto: boto.create_multipart(key, size))

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        async def lean(client: LeanS3) -> PartReceipt:
            import anyio.to_thread

            what = f"upload part {part.number} of {key}"
            headers = await anyio.to_thread.run_sync(checksum, data, self._options.checksums)
            query = f"partNumber={part.number}&uploadId={quote(upload_id, safe='-_.~')}"
            with self._translated(what):
                resp = await client.send("PUT", self._key(key), headers=headers, body=data,
                                         query=query, operation="UploadPart")
                await resp.read()
            receipt = {"ETag": self._etag(resp.headers, what, resp.status)}
            if "x-amz-checksum-crc32" in headers:
                receipt["ChecksumCRC32"] = headers["x-amz-checksum-crc32"]
            return receipt

        return await self._either(lean, lambda boto: boto.upload_part(key, upload_id, part,
                                                                      data))

    async def complete_multipart(
        self, key: str, upload_id: str, receipts: Sequence[PartReceipt], *,
        if_none_match: bool,
    ) -> str:
        async def lean(client: LeanS3) -> str:
            parts = "".join(
                f"<Part><PartNumber>{n}</PartNumber>" + "".join(
                    f"<{name}>{_escaped(value)}</{name}>" for name, value in receipt.items())
                + "</Part>" for n, receipt in enumerate(receipts, start=1))
            body = (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"{parts}</CompleteMultipartUpload>").encode()
            headers = {"if-none-match": "*"} if if_none_match else {}
            seconds = max(COMPLETE_TIMEOUT, self._options.read_timeout)
            what = f"finish upload of {key}"
            with self._translated(what, read_timeout_=seconds):
                root = await client.xml(
                    "POST", self._key(key), query=f"uploadId={quote(upload_id, safe='-_.~')}",
                    body=body, headers=headers, operation="CompleteMultipartUpload",
                    read_timeout=seconds)
            etag = root.text_of("ETag")
            if not etag:
                raise not_s3(self.endpoint, what, "no ETag in the answer")
            return etag

        return await self._either(lean, lambda boto: boto.complete_multipart(
            key, upload_id, receipts, if_none_match=if_none_match))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        async def lean(client: LeanS3) -> None:
            try:
                with self._translated(f"abort upload of {key}"):
                    await (await client.send(
                        "DELETE", self._key(key),
                        query=f"uploadId={quote(upload_id, safe='-_.~')}",
                        operation="AbortMultipartUpload")).read()
            except NotFound:
                return

        await self._either(lean, lambda boto: boto.abort_multipart(key, upload_id))

    async def aclose(self) -> None:
        await self._pool.aclose()
        if self._boto is not None:
            await self._boto.aclose()
