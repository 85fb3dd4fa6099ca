"""The aiobotocore client of the S3 store's botocore path, and what the lean path asks of
it: the client opened from ``S3Options`` (botocore's retries off: the engine retries; the
pool sized to the budget), a twin for CompleteMultipartUpload with a long read timeout,
the bucket's URL and signing region, the CA bundle and the refreshed credentials for the
lean client, and the one translation of botocore's and aiohttp's failures into ours.
``s3boto.BotoS3`` sends the Store's calls on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import anyio
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

from ..errors import ConfigError, MissingRegistry, StoreError, TychoError
from ..logs import redact_url
from . import S3Options
from .s3errors import (
    Silence,
    answer_error,
    connect_timeout,
    connection_failed,
    not_s3,
    read_timeout,
    tls_failed,
)

_SENTINEL = "tychoreg-lean-probe"
_SIGNING_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request")
COMPLETE_TIMEOUT = 60.0  # seconds a CompleteMultipartUpload may take to answer


class _Captured(Exception):
    """Raised from a before-send hook: the request was prepared and signed, not sent."""


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


_FOREIGN = (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError,
            ResponseParserError)


class BotoClient:
    """One aiobotocore client for one bucket, with its failures translated (counted toward
    the ``Silence`` the lean path shares) and its twin for completing uploads."""

    def __init__(self, client: Any, stack: AsyncExitStack, bucket: str,
                 timeouts: tuple[float, float] = (5.0, 5.0),
                 client_kwargs: Mapping[str, Any] | None = None, session: Any = None,
                 silence: Silence | None = None) -> None:
        self.client = client
        self._session = session  # the client's: its credentials and models, for the twin
        self.timeouts = timeouts  # connect, read: named by timeout messages
        self._silence = silence or Silence()  # shared with the lean path's store
        self._stack = stack
        self.bucket = bucket
        self.client_kwargs = dict(client_kwargs or {})  # what made the client, for its twin
        self._completer: Any = None  # the client for CompleteMultipartUpload
        self._region: str | None = None  # the bucket's, learnt from a redirect
        self._completer_lock = anyio.Lock()

    @classmethod
    async def open(cls, options: S3Options, silence: Silence | None = None) -> BotoClient:
        """The client open (``aclose`` it). ConfigError if botocore refuses the client
        options."""
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
        return cls(client, stack, options.bucket, (options.connect_timeout,
                                                   options.read_timeout),
                   options.client_kwargs, session, silence)

    @property
    def endpoint(self) -> str:
        """The endpoint's URL, for messages (never with credentials in it)."""
        return redact_url(str(self.client.meta.endpoint_url))

    @contextlib.contextmanager
    def translated(self, what: str, *, sends: bool = True, read_timeout: float | None = None
                    ) -> Iterator[None]:
        """Translate what the block raises; ``sends`` False for a block that sends no
        request (its success says nothing of the store); ``read_timeout``: the block's
        own, if not the store's."""
        self._silence.check(what)
        timeouts = (self.timeouts[0], read_timeout or self.timeouts[1])
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

    async def completing_client(self) -> Any:
        """The client for CompleteMultipartUpload, whose read timeout is at least
        COMPLETE_TIMEOUT: a store may assemble a large object for a while before its first
        byte (AWS sends spaces meanwhile, not every store does), and a completion retried
        after a cut one found the upload gone. Created on first use, beside the client,
        in the bucket's region if a redirect told it, from the client's session (its
        credentials are not resolved again: no second MFA prompt or SSO login)."""
        if self.timeouts[1] >= COMPLETE_TIMEOUT:
            return self.client
        async with self._completer_lock:
            if self._completer is None:
                config = self.client.meta.config.merge(
                    Config(read_timeout=COMPLETE_TIMEOUT, max_pool_connections=4))
                kwargs = dict(self.client_kwargs)
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
        self.client.meta.events.register_first(event, capture)
        try:
            with self.translated("resolve the bucket's address", sends=False):
                await self.client.head_object(Bucket=self.bucket, Key=_SENTINEL)
        except _Captured:
            pass
        finally:
            self.client.meta.events.unregister(event, capture)
        if not captured or not captured[0].url.endswith(_SENTINEL):
            return None
        auth = captured[0].headers.get("Authorization")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        match = _SIGNING_REGION.search(auth or "")
        if match is None or self.client._request_signer._credentials is None:
            return None
        return captured[0].url[: -len(_SENTINEL)], match.group(1)

    def ca_bundle(self) -> str | None:
        """The CA bundle botocore would verify TLS with (``AWS_CA_BUNDLE`` or a profile's
        ``ca_bundle``), for the lean client's connections."""
        bundle = self._session.get_config_variable("ca_bundle") if self._session else None
        return str(bundle) if bundle else None

    async def credentials(self) -> tuple[str, str, str | None]:
        """The client's credentials now (refreshed by botocore when they expire)."""
        with self.translated("get credentials", sends=False):
            frozen = self.client._request_signer._credentials.get_frozen_credentials()
            if inspect.isawaitable(frozen):
                frozen = await frozen
        return frozen.access_key, frozen.secret_key, frozen.token or None

    async def aclose(self) -> None:
        await self._stack.aclose()
