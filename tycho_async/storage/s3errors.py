"""What the lean client's S3 store and botocore's share: what a failure means to tychoreg
(an error answer's code and status, an endpoint that is not S3, the messages that name
the timeouts) and how a ranged read is asked and its answer checked. Nothing here
imports botocore."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from ..errors import MissingRegistry, NotFound, NotS3, PreconditionFailed, StoreError, TychoError
from . import ObjectInfo

TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "503", "500", "502", "504",
    "ConditionalRequestConflict", "OperationAborted",
}
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
DENIED_CODES = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId",
                "SignatureDoesNotMatch"}
HEADS = {"HeadObject", "HeadBucket"}  # answers without a body: no error code to read
BLACK_HOLE = 5  # timeouts of a store that never answered after which it is given up


def not_s3(endpoint: str, what: str, detail: str) -> NotS3:
    return NotS3(f"the endpoint {endpoint} does not speak S3 ({detail}, to {what}); check "
                 "endpoint_url in the config (or AWS_ENDPOINT_URL)")


def answer_error(code: str, status: int, message: str, operation: str, what: str,
                 endpoint: str) -> TychoError:
    """The error an S3 error answer is: ``code`` from its body (the status where it has
    none), for ``operation``."""
    if code == str(status) and status in (400, 404, 405) and operation not in HEADS:
        return not_s3(endpoint, what, f"HTTP {status} without an S3 error code")
    if code in NOT_FOUND_CODES:
        return NotFound(f"{what}: not found")
    if code == "PreconditionFailed" or status == 412:
        return PreconditionFailed(f"{what}: precondition failed")
    if code == "NoSuchBucket":
        return MissingRegistry(f"{what}: no such bucket at {endpoint}")
    if code in DENIED_CODES:
        return StoreError(f"{what}: access denied ({code})", code=code)
    # 501 Not Implemented is a store's final word (no If-Match, no multipart listing)
    transient = code in TRANSIENT_CODES or (status >= 500 and status != 501) or status == 429
    return StoreError(f"{what}: {message or code or f'HTTP {status}'}", transient=transient,
                      code=code)


def connect_timeout(what: str, endpoint: str, seconds: float) -> StoreError:
    return StoreError(f"{what}: no connection to {endpoint} within {seconds:g} s "
                      "(connect_timeout)", transient=True)


def read_timeout(what: str, endpoint: str, seconds: float) -> StoreError:
    return StoreError(f"{what}: {endpoint} sent nothing for {seconds:g} s (read_timeout); "
                      "is the store up, and is it an S3 endpoint?", transient=True)


def tls_failed(what: str, endpoint: str, detail: object) -> StoreError:
    return StoreError(
        f"{what}: the TLS connection to {endpoint} failed ({detail}); for a private CA, set "
        "AWS_CA_BUNDLE or the s3 section's \"verify\" to its certificate bundle")


def connection_failed(what: str, endpoint: str, kind: str) -> StoreError:
    return StoreError(f"{what}: connection to {endpoint} failed ({kind})", transient=True)


class Silence:
    """A store that has timed out ``BLACK_HOLE`` times and never answered at all is a
    black hole: every further request fails at once, so that a command of many requests
    (a pull-list) fails as fast as a single one. A store that answered once keeps every
    retry (a stall in the middle of a transfer may pass)."""

    def __init__(self) -> None:
        self.answered = False
        self._silences = 0
        self._given_up: str | None = None

    def check(self, what: str) -> None:
        if self._given_up is not None:
            raise StoreError(f"{what}: {self._given_up}")

    def silent(self, message: str) -> None:
        """A request that timed out or could not connect (``message``: why)."""
        if self.answered:
            return
        self._silences += 1
        if self._silences >= BLACK_HOLE:
            self._given_up = (f"{message} (no answer to any of {self._silences} requests: "
                              "given up)")


def range_header(start: int, end: int | None) -> str | None:
    """The Range header of ``open_range``'s bounds; None for the whole object."""
    if end is not None:
        return f"bytes={start}-{end - 1}"
    return f"bytes={start}-" if start else None


def past_the_end(start: int, info: ObjectInfo | None, if_match: str | None) -> bool:
    """Whether S3's 416 to a range from ``start`` means no bytes (the range clipped to the
    object's size): the object is there, the range starts at or past its end (any range
    of an empty object), and its ETag is still ``if_match``."""
    return info is not None and start >= info.size and not (if_match and info.etag != if_match)


def check_span(key: str, start: int, span: str) -> None:
    """StoreError unless the answer's Content-Range starts at ``start``: a store that
    ignored Range would put byte 0 there."""
    if start and not span.startswith(f"bytes {start}-"):
        raise StoreError(f"read {key}: asked for bytes from {start}, the store answered "
                         f"{span or 'the whole object'}")


async def no_bytes() -> AsyncIterator[bytes]:
    """The body of a range past the end."""
    return
    yield


async def root_found(look: Callable[[], Awaitable[object]]) -> bool:
    """Whether the bucket exists, by ``look`` (a HEAD of it, its errors translated): a
    403 means it exists and we may not look at it, so the real call will say what is
    wrong; a 404 means no bucket. One reading for both of the S3 store's paths."""
    try:
        await look()
    except NotFound:
        return False
    except StoreError as exc:
        if exc.code in {"403", "AccessDenied"}:
            return True
        raise
    return True
