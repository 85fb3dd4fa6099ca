"""The redaction every diagnostic line goes through (the --debug log, error messages)."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from tycho_async import logs
from tycho_async.logs import redact, register_secrets

_SECRET = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)


@given(_SECRET, _SECRET)
def test_a_canonical_request_and_a_presigned_url_keep_no_secret(token: str, secret: str
                                                                 ) -> None:
    before = set(logs._known)
    register_secrets([token, secret])
    try:
        _check(token, secret)
    finally:
        logs._known.intersection_update(before)  # no random secret stays for other tests


def _check(token: str, secret: str) -> None:
    signature = "ab12" * 16
    canonical = ("CanonicalRequest:\nGET\n/bucket/key\n"
                 f"X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&"
                 f"X-Amz-Security-Token={quote(token, safe='')}&X-Amz-Signature={signature}\n"
                 f"host:example.com\nx-amz-security-token:{token}\n\nhost\nUNSIGNED-PAYLOAD\n"
                 f"Signature:\n{signature}\nsecret {secret} and {quote(secret)}")
    shown = redact(canonical)
    for leaked in (token, quote(token, safe=""), secret, quote(secret), signature,
                   "AKIDEXAMPLE"):
        assert leaked not in shown


def test_credentials_in_urls_are_dropped() -> None:
    assert redact("connection to https://AK:S3cr3t@s3.example.com:9000/b failed") == (
        "connection to https://***@s3.example.com:9000/b failed")
    assert redact("s3://bucket/user@example/key") == "s3://bucket/user@example/key"
