"""AWS Signature Version 4 for the lean S3 client, with the standard library only.

What it does: signs one S3 request in its ``Authorization`` header the way botocore's
``S3SigV4Auth`` does (the tests hold it to botocore byte for byte): every header the caller
passes is signed but the few botocore never signs, values are trimmed and their inner runs of
whitespace collapsed, the path is taken as sent (S3 paths are not encoded twice, nor
normalised), the query is sorted by key then value with its encoding kept, and the payload is
``UNSIGNED-PAYLOAD`` unless the caller set ``x-amz-content-sha256`` itself. The signing key
(four HMACs over date, region and service) is derived once per secret and UTC day, not per
request, so that signing stays one SHA-256 and one HMAC. Header names are expected in
lowercase, as the client sends them (one name given twice in two cases is not merged).

What it does not do: no signing of the payload itself (the caller hashes a body if it wants
one signed), no chunked or streaming (``aws-chunked``) signatures, no SigV4a, no presigned
URLs or query-string authentication, no credential lookup or refresh (it signs with what it
is given), and no ``Date`` header handling (``x-amz-date`` is the request's time).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["UNSIGNED_PAYLOAD", "Credentials", "Signer", "signing_key"]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_ALGORITHM = "AWS4-HMAC-SHA256"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
# Never signed, as in botocore: proxies and HTTP stacks may change or drop them.
_UNSIGNED_HEADERS = frozenset(
    {"authorization", "expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})


@dataclass(frozen=True)
class Credentials:
    """Static keys to sign with; ``token`` is the session token of temporary credentials."""

    access_key: str
    secret_key: str
    token: str | None = None


@lru_cache(maxsize=16)
def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key of ``date`` (YYYYMMDD), cached: it changes once a day per secret,
    so the four HMACs are paid once a day (and again whenever credentials rotate), not per
    request. The cache is small and bounded: stale days simply fall out of it."""
    key = hmac.digest(("AWS4" + secret_key).encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def _canonical_query(query: str) -> str:
    """The query as botocore canonicalises it for S3: pairs sorted by key then value, both
    kept as encoded, a bare key (``uploads``) written ``uploads=``."""
    if not query:
        return ""
    if "&" not in query:
        return query if "=" in query else query + "="
    # (key, "=" or "", value) sorts as botocore's (key, value): a bare key has value ""
    pairs = sorted([pair.partition("=") for pair in query.split("&")])
    return "&".join([f"{key}={value}" for key, _, value in pairs])


class Signer:
    """Signs requests to one region and service (``s3``) with whatever credentials are passed
    per call, so that refreshed credentials need no new signer."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._scope_tail = f"/{region}/{service}/aws4_request"
        self._stamp = (-1, "")  # (second, its x-amz-date): one strftime per second

    def sign(self, credentials: Credentials, method: str, path: str, query: str,
             headers: dict[str, str], *, now: float | None = None) -> None:
        """Adds to ``headers`` (lowercase names): x-amz-date, x-amz-content-sha256 =
        "UNSIGNED-PAYLOAD" unless the caller set it already, x-amz-security-token when the
        credentials carry a token, and authorization. ``headers`` must already hold "host"
        (host[:port] exactly as sent, default port omitted) and every other header to be sent;
        all of them are signed except the ones botocore never signs (user-agent, expect,
        transfer-encoding, x-amzn-trace-id, and authorization itself). ``path``: the request
        target's path exactly as it goes on the wire (already percent-encoded: S3 is not
        double-encoded); ``query``: the query string as sent, without "?" ("" for none),
        canonicalised as botocore does for S3 (sorted by key then value, values kept as
        encoded, "uploads" / "list-type=2" style keys handled). ``now``: seconds since the epoch
        (tests fix it; None: time.time())."""
        second = int(time.time() if now is None else now)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, time.strftime(_TIMESTAMP, time.gmtime(second)))
        amz_date = headers["x-amz-date"] = stamp[1]
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        payload = headers.setdefault("x-amz-content-sha256", UNSIGNED_PAYLOAD)
        signed = {lname: " ".join(value.split()) for name, value in headers.items()
                  if (lname := name.lower()) not in _UNSIGNED_HEADERS}
        names = sorted(signed)
        signed_headers = ";".join(names)
        canonical = "\n".join([
            method.upper(), path, _canonical_query(query),
            "".join([f"{name}:{signed[name]}\n" for name in names]),
            signed_headers, payload])
        date = amz_date[:8]
        scope = date + self._scope_tail
        string_to_sign = "\n".join([
            _ALGORITHM, amz_date, scope,
            hashlib.sha256(canonical.encode()).hexdigest()])
        key = signing_key(credentials.secret_key, date, self.region, self.service)
        signature = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
        headers["authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}")
