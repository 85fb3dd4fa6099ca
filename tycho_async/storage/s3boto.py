"""A registry in an S3 bucket (or any S3-compatible store) through aiobotocore: the path
for what only botocore knows (profiles, SSO, ``credential_process``, instance roles,
``~/.aws/config`` settings, redirects to a bucket's region). ``S3Store`` sends its
requests through the lean client and loads this module only when such a thing is in
play; it then asks this store for the bucket's URL and its refreshing credentials
(``lean_address``, ``credentials``) and sends every call here after a redirect.

botocore's own retries are off: the engine retries every request itself, per part and
with one backoff policy, so a throttled part never doubles its wait. The connection pool
is sized by ``S3Options.max_connections`` (the engine's concurrency plus a little), since
botocore's default of 10 would silently queue requests beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import io
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import anyio.to_thread
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.parsers import ResponseParserError

from ..errors import (
    ConfigError,
    MissingRegistry,
    NotFound,
    StoreError,
    TychoError,
)
from ..logs import redact_url
from . import ObjectInfo, Part, PartReceipt, RangeBody, S3Options, UploadInfo
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

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
_SENTINEL = "tychoreg-lean-probe"
_SIGNING_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request")


class _Captured(Exception):
    """Raised from a before-send hook: the request was prepared and signed, not sent."""


COMPLETE_TIMEOUT = 60.0  # seconds a CompleteMultipartUpload may take to answer


def translate(exc: BaseException, what: str, endpoint: str = "S3",
              timeouts: tuple[float, float] = (5.0, 5.0)) -> TychoError:
    """One place that turns botocore and aiohttp failures into our errors. ``timeouts``:
    the store's connect and read timeouts, which the messages name."""
    if isinstance(exc, ResponseParserError):
        return not_s3(endpoint, what, "an answer that is not S3's XML")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return answer_error(str(error.get("Code", "")), status, error.get("Message") or "",
                            exc.operation_name, what, endpoint)
    if isinstance(exc, ConnectTimeoutError) or (
            isinstance(exc, aiohttp.ServerTimeoutError)
            and str(exc).lower().startswith("connect")):
        return connect_timeout(what, endpoint, timeouts[0])
    if isinstance(exc, (ReadTimeoutError, asyncio.TimeoutError)):
        return read_timeout(what, endpoint, timeouts[1])
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreError(
            f"{what}: no usable AWS credentials (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, a profile, or keys in the config)"
        )
    if isinstance(exc, SSLError):
        return tls_failed(what, endpoint, exc.kwargs.get("error", exc))
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError,
                        ResponseStreamingError, aiohttp.ClientError, asyncio.TimeoutError,
                        ConnectionError)):
        return connection_failed(what, endpoint, type(exc).__name__)
    if isinstance(exc, BotoCoreError):
        return StoreError(f"{what}: {exc}")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


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


_FOREIGN = (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError,
            ResponseParserError)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class BotoS3:
    def __init__(self, client: Any, stack: AsyncExitStack, bucket: str, prefix: str,
                 chunk_size: int, checksums: bool,
                 timeouts: tuple[float, float] = (5.0, 5.0),
                 client_kwargs: Mapping[str, Any] | None = None, session: Any = None,
                 silence: Silence | None = None) -> None:
        self._client = client
        self._session = session  # the client's: its credentials and models, for the twin
        self._timeouts = timeouts  # connect, read: named by timeout messages
        self._silence = silence or Silence()  # shared with the lean path's store
        self._stack = stack
        self.bucket = bucket
        self.prefix = prefix
        self.chunk_size = chunk_size
        # As s3transfer does: botocore adds a CRC32 to every part, so the upload must be
        # created with that algorithm and completed with each part's checksum, or
        # stricter stores refuse the parts ("checksum type mismatch").
        self._part_checksum = {"ChecksumAlgorithm": "CRC32"} if checksums else {}
        self._checksums = checksums
        self._client_kwargs = dict(client_kwargs or {})  # what made the client, for its twin
        self._completer: Any = None  # the client for CompleteMultipartUpload
        self._region: str | None = None  # the bucket's, learnt from a redirect
        self._completer_lock = anyio.Lock()

    @classmethod
    async def open(cls, options: S3Options, silence: Silence | None = None) -> BotoS3:
        """A store with its client open: ``async with`` it, or ``aclose`` it. ConfigError
        if botocore refuses the client options."""
        # Uploads send CRC32s so the store refuses bytes damaged in flight. Downloads skip
        # botocore's CRC32 pass: the engine checks every file whole (SHA-256, or size and
        # MD5) before it may appear, which is stronger, and the CPU is better spent there.
        checksum_mode = "when_supported" if options.checksums else "when_required"
        s3_options = {"addressing_style": options.addressing_style} \
            if options.addressing_style else None
        config = Config(
            max_pool_connections=options.max_connections,
            retries={"total_max_attempts": 1, "mode": "standard"},  # the engine retries
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            request_checksum_calculation=checksum_mode,
            response_checksum_validation="when_required",
            s3=s3_options,
        )
        stack = AsyncExitStack()
        session = get_session()
        try:
            client = await stack.enter_async_context(
                session.create_client("s3", config=config, **options.client_kwargs)
            )
        except TypeError as exc:
            await stack.aclose()
            raise ConfigError(f"invalid key in the s3 section of the config: {exc}") from exc
        except (BotoCoreError, ValueError) as exc:
            await stack.aclose()
            raise ConfigError(f"cannot set up the S3 client: {redact_url(str(exc))}") from exc
        endpoint = str(client.meta.endpoint_url)
        if redact_url(endpoint) != endpoint:
            await stack.aclose()
            raise ConfigError(
                f"the S3 endpoint {redact_url(endpoint)} holds credentials (user:password@), "
                "which S3 requests cannot use: put them in aws_access_key_id and "
                "aws_secret_access_key (or the AWS variables) instead")
        return cls(client, stack, options.bucket, options.prefix, options.chunk_size,
                   options.checksums, (options.connect_timeout, options.read_timeout),
                   options.client_kwargs, session, silence)

    def _key(self, key: str) -> str:
        return self.prefix + key

    @property
    def endpoint(self) -> str:
        """The endpoint's URL, for messages (never with credentials in it)."""
        return redact_url(str(self._client.meta.endpoint_url))

    @contextlib.contextmanager
    def _translated(self, what: str, *, sends: bool = True, read_timeout: float | None = None
                    ) -> Any:
        """Translate what the block raises; ``sends`` False for a block that sends no
        request (its success says nothing of the store); ``read_timeout``: the block's
        own, if not the store's."""
        self._silence.check(what)
        timeouts = (self._timeouts[0], read_timeout or self._timeouts[1])
        try:
            yield
        except _FOREIGN as exc:
            error = translate(exc, what, self.endpoint, timeouts)
            if isinstance(error, MissingRegistry):
                error = MissingRegistry(f"bucket {self.bucket!r} does not exist at "
                                        f"{self.endpoint}")
            self._count(exc, error.message.removeprefix(f"{what}: "))
            raise error from exc
        if sends:
            self._silence.answered = True

    def _count(self, exc: BaseException, message: str) -> None:
        """Counts toward ``Silence``'s black hole: timeouts before any answer."""
        if isinstance(exc, (ClientError, ResponseParserError)):
            self._silence.answered = True
        elif isinstance(exc, (BotoConnectionError, ReadTimeoutError, asyncio.TimeoutError)):
            self._silence.silent(message)

    def _page(self, page: dict[str, Any], what: str) -> dict[str, Any]:
        """A listing page, checked: well-formed HTML parses as XML too, into a page with
        none of S3's fields, which must not read as an empty bucket."""
        if not {"IsTruncated", "Name", "Bucket"} & set(page):
            raise not_s3(self.endpoint, what, "an answer without S3's listing fields")
        return page

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            with self._translated(f"head {key}"):
                resp = await self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return None
        headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return ObjectInfo(key, int(resp["ContentLength"]), resp["ETag"],
                          _epoch(resp.get("LastModified")), _http_date(headers.get("date")))

    async def root_exists(self) -> bool:
        try:
            with self._translated(f"look up the bucket {self.bucket}"):
                await self._client.head_bucket(Bucket=self.bucket)
        except NotFound:
            return False
        except StoreError as exc:
            if exc.code in {"403", "AccessDenied"}:
                return True  # it exists, we may not look at it: the real call will say
            raise
        return True

    async def delete(self, key: str) -> None:
        with self._translated(f"delete {key}"):
            await self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        found: list[UploadInfo] = []
        full = self._key(prefix)
        cut = len(self.prefix)
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self._translated("list uploads in progress"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in self._page(page, "list uploads in progress").get("Uploads", []):
                    if item["Key"].startswith(full):
                        found.append(UploadInfo(item["Key"][cut:], item["UploadId"],
                                                _epoch(item.get("Initiated")) or 0.0))
        return found

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        with self._translated(f"read {key}"):
            resp = await self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            async with resp["Body"] as body:
                return await body.read(), resp["ETag"]

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        with self._translated(f"write {key}"):
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
            with self._translated(f"read {key}"):
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
        with self._translated(f"read {key}"):
            while chunk := await body.read(self.chunk_size):
                yield chunk

    async def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        cut = len(self.prefix)
        with self._translated("list the bucket"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in self._page(page, "list the bucket").get("Contents", []):
                    yield ObjectInfo(item["Key"][cut:], int(item["Size"]), item["ETag"],
                                     _epoch(item.get("LastModified")))

    async def list_dirs(self, prefix: str) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        names: list[str] = []
        with self._translated("list the bucket"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for item in self._page(page, "list the bucket").get("CommonPrefixes", []):
                    names.append(item["Prefix"][len(full):].rstrip("/"))
        return names

    async def create_multipart(self, key: str, size: int) -> str:
        with self._translated(f"start upload of {key}"):
            resp = await self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), **self._part_checksum
            )
        return str(resp["UploadId"])

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        with self._translated(f"upload part {part.number} of {key}"):
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
        with self._translated(what, read_timeout=max(COMPLETE_TIMEOUT, self._timeouts[1])):
            client = await self._completing_client()
            resp = await client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                MultipartUpload={"Parts": parts}, **extra,
            )
        return str(resp["ETag"])

    async def _completing_client(self) -> Any:
        """The client for CompleteMultipartUpload, whose read timeout is at least
        COMPLETE_TIMEOUT: a store may assemble a large object for a while before its first
        byte (AWS sends spaces meanwhile, not every store does), and a completion retried
        after a cut one found the upload gone. Created on first use, beside the client,
        in the bucket's region if a redirect told it, from the client's session (its
        credentials are not resolved again: no second MFA prompt or SSO login)."""
        if self._timeouts[1] >= COMPLETE_TIMEOUT:
            return self._client
        async with self._completer_lock:
            if self._completer is None:
                config = self._client.meta.config.merge(
                    Config(read_timeout=COMPLETE_TIMEOUT, max_pool_connections=4))
                kwargs = dict(self._client_kwargs)
                if self._region:
                    kwargs["region_name"] = self._region
                session = self._session or get_session()
                self._completer = await self._stack.enter_async_context(
                    session.create_client("s3", config=config, **kwargs))
        return self._completer

    def redirected(self, region: object) -> None:
        """The bucket answered from ``region``: the completing client starts there."""
        if isinstance(region, str) and region:
            self._region = region

    async def lean_address(self) -> tuple[str, str] | None:
        """The bucket's URL (up to where a key starts) and signing region, as botocore's
        endpoint rules give them, captured from a HeadObject that is prepared and signed
        but never sent. None where the lean client cannot mirror botocore (unsigned
        requests, an unexpected URL shape): botocore then serves every call."""
        captured: list[Any] = []

        def capture(request: Any, **kwargs: Any) -> None:
            captured.append(request)
            raise _Captured

        event = "before-send.s3.HeadObject"
        self._client.meta.events.register_first(event, capture)
        try:
            with self._translated("resolve the bucket's address", sends=False):
                await self._client.head_object(Bucket=self.bucket, Key=_SENTINEL)
        except _Captured:
            pass
        finally:
            self._client.meta.events.unregister(event, capture)
        if not captured or not captured[0].url.endswith(_SENTINEL):
            return None
        auth = captured[0].headers.get("Authorization")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        match = _SIGNING_REGION.search(auth or "")
        if match is None or self._client._request_signer._credentials is None:
            return None
        return captured[0].url[: -len(_SENTINEL)], match.group(1)

    def ca_bundle(self) -> str | None:
        """The CA bundle botocore would verify TLS with (``AWS_CA_BUNDLE`` or a profile's
        ``ca_bundle``), for the lean client's connections."""
        bundle = self._session.get_config_variable("ca_bundle") if self._session else None
        return str(bundle) if bundle else None

    async def credentials(self) -> tuple[str, str, str | None]:
        """The client's credentials now (refreshed by botocore when they expire)."""
        with self._translated("get credentials", sends=False):
            frozen = self._client._request_signer._credentials.get_frozen_credentials()
            if inspect.isawaitable(frozen):
                frozen = await frozen
        return frozen.access_key, frozen.secret_key, frozen.token or None

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            with self._translated(f"abort upload of {key}"):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
                )
        except NotFound:
            return

    async def aclose(self) -> None:
        await self._stack.aclose()
