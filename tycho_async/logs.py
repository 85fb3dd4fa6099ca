"""The ``--debug`` log, and the redaction every diagnostic line goes through.

botocore's debug output carries signed headers (``Credential=AKIA.../...``,
``Signature=...``, session tokens), its own ``Signature:`` line and canonical requests
(multi-line messages); our own lines may quote a config value or an endpoint URL with
``user:password@`` in it. Every secret we know of (the config's keys, the AWS variables,
also percent-encoded), URL credentials and every signature- or token-shaped fragment is
replaced by ``***`` before a line leaves the process.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from urllib.parse import quote

_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
               "AWS_ACCESS_KEY_ID")
# user:password@ in any URL (an endpoint written as http://KEY:SECRET@host)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"<>]+@")
_PATTERNS = [
    (_USERINFO, r"\1***@"),
    # the Authorization header, and X-Amz-Credential of a presigned URL (encoded or not)
    (re.compile(r"(Credential=)[^,\s'\"&]+"), r"\1***"),
    # Signature=..., X-Amz-Signature=..., and botocore's own "Signature:\n<hex>" line
    (re.compile(r"(?i)(Signature['\"]?\s*[:=]?\s*)[0-9a-f]{16,}"), r"\1***"),
    # a session token as a header (also "x-amz-security-token:..." in a canonical
    # request) or as a presigned URL's query parameter
    (re.compile(r"(?i)(X-Amz-Security-Token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}&]+"),
     r"\1***"),
]
_known: set[str] = set()


def register_secrets(values: Iterable[object]) -> None:
    """Remember secret values (from the config) so that no output shows them."""
    _known.update(v for v in values if isinstance(v, str) and len(v) >= 4)


def _forms(secret: str) -> set[str]:
    """A secret as it may appear: as is, and percent-encoded in a URL or a canonical
    request ("/" and "+" of a key or token become %2F and %2B)."""
    return {secret, quote(secret, safe=""), quote(secret, safe="-_.~"), quote(secret)}


def redact(text: str) -> str:
    """``text`` with every known secret, URL credentials, signature and session token
    replaced by ``***``; multi-line text (a canonical request) is redacted whole."""
    secrets = _known | {os.environ[name] for name in _SECRET_ENV
                        if len(os.environ.get(name, "")) >= 4}
    forms = {form for secret in secrets for form in _forms(secret)}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL without the credentials it may hold (``http://***@host``), for messages."""
    return _USERINFO.sub(r"\1***@", url)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def enable_debug() -> None:
    """Send our log and botocore's to stderr, redacted (once per process)."""
    if any(isinstance(h.formatter, _RedactingFormatter)
           for h in logging.getLogger("tycho_async").handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(
        "%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("tycho_async", "botocore", "aiobotocore"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
