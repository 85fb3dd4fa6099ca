"""The lean S3 client: every request tychoreg sends to a bucket, built, signed (SigV4, by
``sigv4``) and sent (by ``http``) without botocore's per-request pipeline, and answers
parsed with the standard library (ElementTree for the few XML bodies).

Where the bucket is and who signs come either from here (``plain_address``,
``plain_credentials``: an endpoint_url or AWS itself, static keys from the config or the
AWS variables, no profile and no AWS config file), so that botocore is never imported, or
from botocore when it must decide (profiles, SSO, ``credential_process``, instance roles,
``~/.aws/config`` settings): the store then hands this client botocore's URL and its
refreshing credentials.

What it does not do: follow a redirect to another region (``Redirected`` is raised: the
store falls back to botocore, which does), sign payloads (``UNSIGNED-PAYLOAD``: a CRC32
or Content-MD5 header carries integrity, and the store checks it), presign, or parse any
answer beyond the fields tychoreg reads.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from .. import __version__
from .http import Origin, Pool, Response
from .sigv4 import Credentials, Signer

log = logging.getLogger(__name__)
USER_AGENT = (f"tychoreg/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}."
              f"{sys.version_info[2]}")
_ERROR_LIMIT = 1024 * 1024  # bytes of an error answer read, at most
_XML_LIMIT = 64 * 1024 * 1024  # bytes of a listing page or multipart answer, at most
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_BODY_REGION = re.compile(rb"<Region>([^<]*)</Region>")
_REDIRECT_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed",
                   "IllegalLocationConstraintException"}
# A bucket name that can be a host name label (no dots: TLS certificates cover one label)
_HOSTABLE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_IP = re.compile(r"\d+\.\d+\.\d+\.\d+|\[?[0-9a-fA-F:]*:[0-9a-fA-F:.]*\]?")
# Environment settings whose meaning only botocore knows: with any of them set, botocore
# resolves the endpoint and the credentials.
_BOTOCORE_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_USE_FIPS_ENDPOINT",
                 "AWS_USE_DUALSTACK_ENDPOINT", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
                 "AWS_S3_USE_ARN_REGION", "AWS_S3_DISABLE_MULTIREGION_ACCESS_POINTS")
# Client options this module maps itself; any other makes botocore decide.
_PLAIN_KWARGS = {"endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key",
                 "aws_session_token", "verify"}


class Redirected(Exception):
    """The bucket lives in another region (the argument: that region, if the answer
    named it): botocore's path follows such redirects."""


class NotS3Answer(Exception):
    """An answer no S3 store gives (an error without an S3 error code, an object without
    an ETag, a body that is not S3's XML): the endpoint is something else."""


class S3ErrorAnswer(Exception):
    """An S3 error answer: its code (the status where the body has none), message and
    HTTP status, and the operation that got it."""

    def __init__(self, code: str, message: str, status: int, operation: str) -> None:
        super().__init__(f"{operation}: {code} {message}")
        self.code = code
        self.message = message
        self.status = status
        self.operation = operation


@dataclass(frozen=True)
class Address:
    """Where a bucket's objects are: the origin, the encoded path before every key, and
    the region requests are signed for."""

    origin: Origin
    base: str  # "/bucket/" for path style, "/" for virtual-host style (endpoint path first)
    region: str

    @classmethod
    def of_url(cls, url: str, region: str) -> Address:
        """From a bucket URL that ends where the key would start."""
        parts = urlsplit(url)
        return cls(Origin.of(url), parts.path or "/", region)


def _config_file() -> bool:
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    return os.path.isfile(path)


def configured_endpoint(kwargs: Mapping[str, Any]) -> str:
    """The endpoint URL the options or the AWS variables name ("" for AWS itself)."""
    endpoint = kwargs.get("endpoint_url")
    if not endpoint and os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() \
            != "true":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return str(endpoint or "")


def plain_address(bucket: str, kwargs: Mapping[str, Any], style: str | None
                  ) -> Address | None:
    """The bucket's address as botocore would compute it, for the settings this module
    knows (a test holds it to botocore's); None where botocore must decide."""
    if set(kwargs) - _PLAIN_KWARGS or any(os.environ.get(name) for name in _BOTOCORE_ENV):
        return None
    if _config_file():
        return None  # it may name a region, an endpoint, an addressing style
    region = (kwargs.get("region_name") or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    endpoint = configured_endpoint(kwargs)
    name = quote(bucket, safe="")
    if endpoint:
        parts = urlsplit(str(endpoint))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            return None
        path = parts.path.rstrip("/")
        if style == "virtual":
            if not _HOSTABLE.fullmatch(bucket) or _IP.fullmatch(parts.hostname):
                return None if "." in bucket else Address(
                    Origin.of(str(endpoint)), f"{path}/{name}/", region)
            host = f"{bucket}.{parts.netloc}"
            return Address(Origin.of(f"{parts.scheme}://{host}"), f"{path}/", region)
        if style not in (None, "path", "auto"):
            return None
        return Address(Origin.of(str(endpoint)), f"{path}/{name}/", region)
    host = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
    if style == "path" or not _HOSTABLE.fullmatch(bucket):
        return Address(Origin("https", host, 443), f"/{name}/", region)
    if style not in (None, "virtual", "auto"):
        return None
    return Address(Origin("https", f"{bucket}.{host}", 443), "/", region)


def plain_credentials(kwargs: Mapping[str, Any]) -> Credentials | None:
    """Static keys, from the config's s3 section or the AWS variables (botocore's order:
    explicit keys first, then the environment); None where botocore's chain must look
    further (profiles, SSO, roles)."""
    key, secret = kwargs.get("aws_access_key_id"), kwargs.get("aws_secret_access_key")
    if key and secret:
        return Credentials(str(key), str(secret), kwargs.get("aws_session_token") or None)
    if key or secret:
        return None  # half a pair: botocore says what is missing
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        token = os.environ.get("AWS_SESSION_TOKEN") or os.environ.get("AWS_SECURITY_TOKEN")
        return Credentials(key, secret, token or None)
    return None


def _described(response: Response) -> str:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    return f"HTTP {response.status}" + (f", {kind}" if kind else "")


class LeanS3:
    """Signs and sends one request to the bucket; answers errors as exceptions."""

    def __init__(self, pool: Pool, address: Address,
                 credentials: Callable[[], Awaitable[Credentials]]) -> None:
        self.pool = pool
        self.address = address
        self._credentials = credentials
        self._signer = Signer(address.region)

    def target(self, key: str, query: str = "") -> str:
        """The request target of ``key`` (path and query, encoded)."""
        path = self.address.base + quote(key, safe="/~")
        return f"{path}?{query}" if query else path

    def url(self, key: str, query: str = "") -> str:
        return f"{self.address.origin.scheme}://{self.address.origin.netloc}" + \
            self.target(key, query)

    async def send(self, method: str, key: str, *, headers: Mapping[str, str] | None = None,
                   body: bytes | memoryview = b"", query: str = "", operation: str = "",
                   read_timeout: float | None = None, bucket: bool = False) -> Response:
        """Sign and send; the answer once its headers are in (read or release its body).
        ``bucket``: a request to the bucket itself (no key). Error answers raise
        S3ErrorAnswer, Redirected or NotS3Answer."""
        credentials = await self._credentials()
        path = self.address.base if bucket else self.address.base + quote(key, safe="/~")
        signed = {"host": self.address.origin.netloc, **(headers or {})}
        self._signer.sign(credentials, method, path, query, signed)
        del signed["host"]  # the pool sets it, from the same origin
        target = f"{path}?{query}" if query else path
        response = await self.pool.request(method, self.address.origin, target, signed, body,
                                           read_timeout=read_timeout)
        if log.isEnabledFor(logging.DEBUG):  # the URL only: headers carry the signature
            log.debug("%s %s://%s%s -> %d", method, self.address.origin.scheme,
                      self.address.origin.netloc, target, response.status)
        if response.status >= 300:
            await self._raise(response, operation or method)
        return response

    async def _raise(self, response: Response, operation: str) -> None:
        status = response.status
        region = response.headers.get("x-amz-bucket-region")
        if status in (301, 307) or (region and region != self.address.region):
            response.release()
            raise Redirected(region)
        # to its end (none for a HEAD), so that the connection stays
        content = await response.read(_ERROR_LIMIT)
        code = _CODE.search(content)
        if code is None and content and 400 <= status < 500 and status not in (412, 416):
            raise NotS3Answer(f"{_described(response)} without an S3 error code")
        name = code.group(1).decode() if code else str(status)
        in_body = _BODY_REGION.search(content)
        if name in _REDIRECT_CODES and in_body and \
                in_body.group(1).decode() != self.address.region:
            raise Redirected(in_body.group(1).decode())  # the region named in the body only
        message = _MESSAGE.search(content)
        raise S3ErrorAnswer(name, message.group(1).decode() if message else "", status,
                            operation)

    async def xml(self, method: str, key: str, *, query: str, operation: str,
                  body: bytes = b"", headers: Mapping[str, str] | None = None,
                  read_timeout: float | None = None, bucket: bool = False) -> Element:
        """A request whose answer is an XML document (its root, namespace-free). An
        error document in a 200 answer (CompleteMultipartUpload may send one after a
        while) is raised like any error answer."""
        response = await self.send(method, key, query=query, operation=operation, body=body,
                                   headers=headers, read_timeout=read_timeout, bucket=bucket)
        content = await response.read(_XML_LIMIT)
        root = parse_xml(content, f"{_described(response)} that is not S3's XML")
        if root.tag == "Error":
            raise S3ErrorAnswer(root.text_of("Code") or str(response.status),
                                root.text_of("Message") or "", response.status, operation)
        return root


class Element:
    """An XML element with the namespace cut from every tag, and the two lookups the S3
    answers need."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.tag = node.tag.rpartition("}")[2]

    def children(self, tag: str) -> Iterator[Element]:
        for child in self._node:
            if child.tag.rpartition("}")[2] == tag:
                yield Element(child)

    def text_of(self, tag: str) -> str | None:
        for child in self.children(tag):
            return str(child._node.text or "")
        return None


def parse_xml(content: bytes, what: str) -> Element:
    """The document's root; NotS3Answer (``what``) if it is not XML."""
    import xml.etree.ElementTree as ElementTree  # only listings and multipart answers

    try:
        return Element(ElementTree.fromstring(content))
    except ElementTree.ParseError:
        raise NotS3Answer(what) from None


def encoded_query(params: Mapping[str, str | None]) -> str:
    """A query string in the order given; a None value is a bare key (``?uploads``)."""
    return "&".join(quote(name, safe="-_.~") if value is None
                    else f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
                    for name, value in params.items())


def listed_key(value: str | None) -> str:
    """A key or prefix of a listing asked with ``encoding-type=url``, decoded as botocore
    decodes it."""
    return unquote_plus(value or "")
