"""The ``--debug`` log, and the redaction every diagnostic line goes through.

botocore's debug output carries signed headers (``Credential=AKIA.../...``,
``Signature=...``, session tokens); our own lines may quote a config value. Every secret
we know of (the config's keys, the AWS variables) and every signature-shaped fragment is
replaced by ``***`` before a line leaves the process.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable

_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
               "AWS_ACCESS_KEY_ID")
_PATTERNS = [
    (re.compile(r"(Credential=)[^,\s'\"]+"), r"\1***"),
    (re.compile(r"(Signature=)[0-9a-fA-F]+"), r"\1***"),
    (re.compile(r"((?:X-Amz-Security-Token|x-amz-security-token)['\"]?\s*[:=]\s*b?['\"]?)"
                r"[^'\"\s,}]+"), r"\1***"),
]
_known: set[str] = set()


def register_secrets(values: Iterable[object]) -> None:
    """Remember secret values (from the config) so that no output shows them."""
    _known.update(v for v in values if isinstance(v, str) and len(v) >= 4)


def redact(text: str) -> str:
    secrets = _known | {os.environ[name] for name in _SECRET_ENV
                        if len(os.environ.get(name, "")) >= 4}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


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
