"""A registry in an S3 bucket (or any S3-compatible store). ``S3Store`` only routes: each
Store call goes to the lean calls (``s3calls`` for objects and listings, ``s3uploads`` for
multipart) or, once botocore must decide, to ``s3boto``; it sends no request itself.

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

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigError, NotFound, PreconditionFailed, StoreError
from ..logs import redact_url
from . import ObjectInfo, Part, PartReceipt, RangeBody, S3Options, UploadInfo
from .http import Pool
from .s3calls import LeanCalls
from .s3errors import Silence, no_bytes, past_the_end
from .s3lean import (
    USER_AGENT,
    Address,
    LeanS3,
    Redirected,
    configured_endpoint,
    plain_address,
    plain_credentials,
)
from .sigv4 import Credentials

if TYPE_CHECKING:
    from typing_extensions import Self

    from .s3boto import BotoS3
    from .s3uploads import LeanUploads

T = TypeVar("T")
log = logging.getLogger(__name__)


def _static(credentials: Credentials) -> Callable[[], Awaitable[Credentials]]:
    async def get() -> Credentials:
        return credentials

    return get


class S3Store:
    """The Store on S3: each operation goes to the lean client (``s3calls``,
    ``s3uploads``) while it can, and to botocore from the first redirect on, or from the
    start where only botocore can sign."""

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
        self._calls = LeanCalls(options, self.endpoint, self._silence)
        self._lean_uploads: LeanUploads | None = None  # loaded by the first multipart call

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
            resolved = await boto.conn.lean_address()
        except BaseException:
            await boto.aclose()
            raise
        lean = None
        connections = pool(boto.conn.ca_bundle())
        if resolved is not None:
            url, region = resolved
            log.debug("lean request path: %s..., region %s", redact_url(url), region)

            async def refreshed() -> Credentials:
                return Credentials(*await boto.conn.credentials())

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

    @property
    def _uploads(self) -> LeanUploads:
        """The lean multipart calls, loaded on first use: a pull never needs them."""
        if self._lean_uploads is None:
            from .s3uploads import LeanUploads

            self._lean_uploads = LeanUploads(self._calls, self._options)
        return self._lean_uploads

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
        boto.conn.redirected(region)
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
        return await self._either(lambda lean: self._calls.head(lean, key),
                                  lambda boto: boto.head(key))

    async def root_exists(self) -> bool:
        return await self._either(self._calls.root_exists, lambda boto: boto.root_exists())

    async def delete(self, key: str) -> None:
        await self._either(lambda lean: self._calls.delete(lean, key),
                           lambda boto: boto.delete(key))

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        return await self._either(lambda lean: self._calls.get_bytes(lean, key),
                                  lambda boto: boto.get_bytes(key))

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        try:
            return await self._either(
                lambda lean: self._calls.put_bytes(lean, key, data, if_none_match=if_none_match,
                                                   if_match=if_match),
                lambda boto: boto.put_bytes(key, data, if_none_match=if_none_match,
                                            if_match=if_match))
        except NotFound as exc:
            if if_match is None:
                raise
            # S3 answers If-Match on a missing object with 404: the ETag did not hold
            raise PreconditionFailed(f"{key} changed since it was read") from exc

    @contextlib.asynccontextmanager
    async def open_range(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> AsyncIterator[RangeBody]:
        if self._lean is not None:
            resp: Any = None
            empty: ObjectInfo | None = None
            try:
                resp = await self._calls.get_range(self._lean, key, start, end, if_match)
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
                    yield RangeBody(self._calls.range_info(key, start, resp),
                                    self._calls.chunks(resp, f"read {key}"))
                finally:
                    resp.release()
                return
        boto = await self._botocore()
        async with boto.open_range(key, start, end, if_match=if_match) as body:
            yield body

    async def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if self._lean is not None:
            try:
                async for info in self._calls.list_keys(self._lean, prefix):
                    yield info
                return
            except Redirected as exc:
                await self._fall_back(exc.args[0])
        boto = await self._botocore()
        async for info in boto.list_keys(prefix):
            yield info

    async def list_dirs(self, prefix: str) -> list[str]:
        return await self._either(lambda lean: self._calls.list_dirs(lean, prefix),
                                  lambda boto: boto.list_dirs(prefix))

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return await self._either(lambda lean: self._uploads.list(lean, prefix),
                                  lambda boto: boto.list_uploads(prefix))

    async def create_multipart(self, key: str, size: int) -> str:
        return await self._either(lambda lean: self._uploads.create(lean, key),
                                  lambda boto: boto.create_multipart(key, size))

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        return await self._either(
            lambda lean: self._uploads.upload_part(lean, key, upload_id, part, data),
            lambda boto: boto.upload_part(key, upload_id, part, data))

    async def complete_multipart(
        self, key: str, upload_id: str, receipts: Sequence[PartReceipt], *,
        if_none_match: bool,
    ) -> str:
        return await self._either(
            lambda lean: self._uploads.complete(lean, key, upload_id, receipts,
                                                if_none_match=if_none_match),
            lambda boto: boto.complete_multipart(key, upload_id, receipts,
                                                 if_none_match=if_none_match))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._either(lambda lean: self._uploads.abort(lean, key, upload_id),
                           lambda boto: boto.abort_multipart(key, upload_id))

    async def aclose(self) -> None:
        await self._pool.aclose()
        if self._boto is not None:
            await self._boto.aclose()
