"""The lean request path: the hot S3 calls (GET, ranged GET, HEAD, PUT, UploadPart) sent
without botocore's per-request pipeline (parameter validation, serialization, endpoint
rules, event hooks, response parsing: 3.5-4 ms of CPU a request, measured), yet with
everything of botocore that users rely on:

- the URL comes from botocore's own endpoint resolution, captured once per store from a
  HeadObject that is prepared and signed but never sent (addressing style, custom
  endpoints, regions, FIPS/dual-stack settings all apply as botocore decides);
- requests are signed with botocore's SigV4 signer (``S3SigV4Auth``) and the client's
  own credentials object, so refreshing credentials (SSO, instance roles,
  ``credential_process``) and session tokens work as they do for botocore;
- they go out through the client's own aiohttp session (aiobotocore's): the same pool,
  TLS settings (``verify``, ``AWS_CA_BUNDLE``), proxies and timeouts.

A bucket in another region (a redirect) makes the store fall back to botocore for good,
which follows redirects itself. Payloads are not SHA-256 signed (``UNSIGNED-PAYLOAD``):
their integrity is carried by a CRC32 checksum header, which the store verifies, at a
fraction of the cost.
"""

from __future__ import annotations

import inspect
import io
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)
_SENTINEL = "tychoreg-lean-probe"
_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request")
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_BODY_REGION = re.compile(rb"<Region>([^<]*)</Region>")
_REDIRECT_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed",
                   "IllegalLocationConstraintException"}


class _Captured(Exception):
    """Raised from a before-send hook: the request was prepared and signed, not sent."""


class Redirected(Exception):
    """The bucket lives in another region: botocore's path follows such redirects."""


class NotS3Answer(Exception):
    """An answer no S3 store gives (an error without an S3 error code, an object
    without an ETag): the endpoint is something else. The argument describes it."""


def _described(response: Any) -> str:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    return f"HTTP {response.status_code}" + (f", {kind}" if kind else "")


@dataclass(frozen=True)
class _Unsigned:
    """What ``S3SigV4Auth`` reads from a client config: no SHA-256 of the payload."""

    s3: Mapping[str, Any]


_UNSIGNED = _Unsigned({"payload_signing_enabled": False})


class LeanS3:
    """Builds, signs and sends one request; returns aiobotocore's response object."""

    def __init__(self, client: Any, bucket: str, base: str, region: str,
                 user_agent: str = "") -> None:
        self._client = client
        self._user_agent = user_agent
        self._http = client._endpoint.http_session
        self._credentials = client._request_signer._credentials
        self._bucket = bucket
        self._base = base
        self._region = region

    @classmethod
    async def resolve(cls, client: Any, bucket: str) -> LeanS3 | None:
        """Let botocore prepare and sign a HeadObject of a sentinel key, and keep its URL
        (minus the key) and signing region. None where the lean path cannot mirror
        botocore (unsigned requests, an unexpected URL shape): botocore then serves."""
        captured: list[Any] = []

        def capture(request: Any, **kwargs: Any) -> None:
            captured.append(request)
            raise _Captured

        event = "before-send.s3.HeadObject"
        client.meta.events.register_first(event, capture)
        try:
            await client.head_object(Bucket=bucket, Key=_SENTINEL)
        except _Captured:
            pass
        finally:
            client.meta.events.unregister(event, capture)
        if not captured or not captured[0].url.endswith(_SENTINEL):
            return None
        auth = captured[0].headers.get("Authorization")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        match = _REGION.search(auth or "")
        if match is None or client._request_signer._credentials is None:
            return None
        base = captured[0].url[: -len(_SENTINEL)]
        agent = captured[0].headers.get("User-Agent") or b""
        log.debug("lean request path: %s..., region %s", base, match.group(1))
        return cls(client, bucket, base, match.group(1),
                   agent.decode() if isinstance(agent, bytes) else str(agent))

    def url(self, key: str, query: str = "") -> str:
        return self._base + quote(key, safe="/~") + (f"?{query}" if query else "")

    async def send(self, method: str, key: str, *, headers: dict[str, str] | None = None,
                   body: bytes | io.RawIOBase = b"", query: str = "", stream: bool = False,
                   operation: str = "") -> Any:
        """Sign and send; the response of aiobotocore's session (body read unless
        ``stream``). Errors become botocore's own exceptions (ClientError for an error
        answer), which the store translates like any other."""
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        headers = dict(headers or {})
        if self._user_agent:
            headers["User-Agent"] = self._user_agent
        request = AWSRequest(method=method, url=self.url(key, query), headers=headers,
                             data=body)
        request.context = {"client_config": _UNSIGNED}  # the signer writes into it
        S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        prepared = request.prepare()
        prepared.stream_output = stream
        response = await self._http.send(prepared)
        log.debug("%s %s -> %d", method, prepared.url, response.status_code)
        if response.status_code >= 300:
            await self._raise(response, operation or method)
        if "etag" not in response.headers:  # every answer to these requests has one
            response.raw.release()
            raise NotS3Answer(f"{_described(response)} without an ETag")
        return response

    async def _raise(self, response: Any, operation: str) -> None:
        status = response.status_code
        region = response.headers.get("x-amz-bucket-region")
        if status in (301, 307) or (region and region != self._region):
            response.raw.release()
            raise Redirected(region)
        content = await response.content or b""
        code = _CODE.search(content)
        if code is None and content and 400 <= status < 500 and status not in (412, 416):
            raise NotS3Answer(f"{_described(response)} without an S3 error code")
        name = code.group(1).decode() if code else str(status)
        in_body = _BODY_REGION.search(content)
        if name in _REDIRECT_CODES and in_body and in_body.group(1).decode() != self._region:
            raise Redirected(in_body.group(1).decode())  # the region named in the body only
        message = _MESSAGE.search(content)
        error = {"Code": name, "Message": message.group(1).decode() if message else ""}
        raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},
                          operation)
