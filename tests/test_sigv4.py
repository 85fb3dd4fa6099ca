"""The lean client's SigV4 signer (``tycho_async/storage/sigv4.py``, issue 16) held to
botocore's ``S3SigV4Auth`` as an oracle: for the same request at the same instant both produce
the same x-amz-date, session token, SignedHeaders, Signature and Authorization header, byte
for byte. Then SeaweedFS, which checks signatures, serves requests signed by it alone.

botocore's ``add_auth`` reads the clock itself, so the oracle runs its own steps in
``add_auth``'s order with ``request.context["timestamp"]`` fixed beforehand: nothing of
botocore is patched.
"""

from __future__ import annotations

import calendar
import datetime
import hashlib
import http.client
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.storage.sigv4 import Credentials, Signer, signing_key

from .support import CREDS, REGION, make_bucket

KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDp+/=="
TOKENED = Credentials(KEYS.access_key, KEYS.secret_key, TOKEN)
NOW = calendar.timegm((2026, 12, 1, 13, 45, 7))
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=[^,]+, SignedHeaders=(?P<signed>[^,]+), "
                   r"Signature=(?P<signature>[0-9a-f]{64})")
_COMPARED = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


@dataclass(frozen=True)
class _S3Config:
    """The part of a client config ``S3SigV4Auth`` reads: whether to SHA-256 the payload."""

    s3: dict[str, bool]


def _key_path(key: str) -> str:
    """A key as botocore puts it in a path: percent-encoded, "/" and "~" kept."""
    return quote(key, safe="/~")


def _host(url: str) -> str:
    """host[:port] as the client sends it: the scheme's default port left out."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    assert parts.hostname is not None
    return parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"


def _botocore(credentials: Credentials, method: str, url: str, headers: dict[str, str],
              *, now: float, region: str = REGION, body: bytes | None = None
              ) -> dict[str, str]:
    """The headers botocore's S3 signer gives the request (host taken from ``url``, as
    botocore does), at ``now``. A ``body`` is SHA-256 signed, else the payload is unsigned."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    request.context["client_config"] = _S3Config({"payload_signing_enabled": body is not None})
    request.context["timestamp"] = datetime.datetime.fromtimestamp(
        now, datetime.timezone.utc).strftime(SIGV4_TIMESTAMP)
    auth = S3SigV4Auth(BotoCredentials(credentials.access_key, credentials.secret_key,
                                       credentials.token), "s3", region)
    auth._modify_request_before_signing(request)
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    auth._inject_signature_to_request(request, auth.signature(string_to_sign, request))
    return {name.lower(): value for name, value in request.headers.items()}


def _ours(credentials: Credentials, method: str, url: str, headers: dict[str, str],
          *, now: float, signer: Signer | None = None) -> dict[str, str]:
    """The headers our signer gives the same request; ``url`` split as the client sends it."""
    parts = urlsplit(url)
    sent = {"host": _host(url), **headers}
    (signer or Signer(REGION)).sign(credentials, method, parts.path, parts.query, sent, now=now)
    return sent


def assert_same(credentials: Credentials, method: str, url: str,
                headers: dict[str, str] | None = None, *, now: float = NOW,
                signer: Signer | None = None) -> dict[str, str]:
    """Sign the request both ways and compare what reaches the wire; our headers back."""
    headers = headers or {}
    ours = _ours(credentials, method, url, headers, now=now, signer=signer)
    theirs = _botocore(credentials, method, url, headers, now=now,
                       region=signer.region if signer else REGION)
    mine, boto = _AUTH.fullmatch(ours["authorization"]), _AUTH.fullmatch(theirs["authorization"])
    assert mine is not None and boto is not None, (ours, theirs)
    assert mine["signed"] == boto["signed"]
    assert mine["signature"] == boto["signature"]
    for name in _COMPARED:
        assert ours.get(name) == theirs.get(name), name
    assert {k: v for k, v in ours.items() if k != "host"} == theirs
    return ours


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8333/bucket/key.bin",  # path style, with port
    "http://localhost/bucket/key.bin",  # path style, default port
    "http://localhost:80/bucket/key.bin",  # default port written out: not sent
    "https://s3.eu-west-1.amazonaws.com/bucket/pkg/1.0/file.tar.gz",
    "https://bucket.s3.amazonaws.com/pkg/1.0/file.tar.gz",  # virtual-host style
    "https://bucket.s3.amazonaws.com:443/pkg/file",
    "https://bucket.minio.internal:9000/pkg/file",
])
@pytest.mark.parametrize("credentials", [KEYS, TOKENED], ids=["static", "session-token"])
def test_hosts_and_tokens(url: str, credentials: Credentials) -> None:
    ours = assert_same(credentials, "GET", url)
    assert ("x-amz-security-token" in ours) == (credentials.token is not None)
    assert ours["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"


@pytest.mark.parametrize("key", [
    "plain", "with space", "a+b", "tilde~x", "100%", "pct%20literal", "ünïcødé/文件.bin",
    "a//b", "//leading", "dir/", "dir//", "q?x#y&z=1", "emoji-🙂", "semi;colon,comma",
])
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_keys_needing_encoding(key: str, style: str) -> None:
    url = (f"http://127.0.0.1:9000/bucket/{_key_path(key)}" if style == "path"
           else f"https://bucket.s3.amazonaws.com/{_key_path(key)}")
    assert_same(TOKENED, "HEAD", url)


def test_upload_part_with_an_awkward_upload_id() -> None:
    upload_id = "2~Zx/+Ab=c/d+e=="
    url = (f"http://127.0.0.1:8333/bucket/big%20file.bin"
           f"?partNumber=12&uploadId={quote(upload_id, safe='~')}")
    assert_same(KEYS, "PUT", url, {"content-length": "5242880",
                                   "x-amz-checksum-crc32": "AAAAAA=="})


@pytest.mark.parametrize("query", ["uploads", "uploads=", "delete", "uploadId=abc%2B%2F%3D"])
def test_bare_and_single_keys(query: str) -> None:
    assert_same(KEYS, "POST", f"http://127.0.0.1:8333/bucket/k?{query}")


@pytest.mark.parametrize("query", [
    "list-type=2&prefix=pkg%2F1.0%2F&continuation-token=1%2Fab%2Bcd%3D%3D&delimiter=%2F",
    "list-type=2&prefix=pkg/&delimiter=/",
    "prefix=z&list-type=2&max-keys=1000&encoding-type=url&start-after=a%20b",
    "b=2&a=2&a=1&a=&c",  # repeated keys: sorted by value too
])
def test_list_objects_v2_queries(query: str) -> None:
    assert_same(TOKENED, "GET", f"http://127.0.0.1:8333/bucket?{query}")


def test_conditional_and_checksum_headers() -> None:
    assert_same(KEYS, "GET", "http://127.0.0.1:8333/b/k", {
        "range": "bytes=0-1048575", "if-match": '"0123456789abcdef0123456789abcdef"'})
    assert_same(TOKENED, "PUT", "http://127.0.0.1:8333/b/pkg/tycho.json", {
        "if-none-match": "*", "content-length": "321", "content-type": "application/json",
        "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "x-amz-checksum-crc32": "NhCmhg=="})
    assert_same(KEYS, "PUT", "http://127.0.0.1:8333/b/pkg/tycho.json", {
        "if-match": '"abc"', "content-length": "0", "x-amz-meta-sha256": "f" * 64})


def test_header_values_are_trimmed_and_collapsed() -> None:
    ours = assert_same(KEYS, "PUT", "http://127.0.0.1:8333/b/k", {
        "content-type": "  text/plain;   charset=utf-8  ", "x-amz-meta-note": "a \t b\t\tc ",
        "content-length": " 3"})
    assert ours["content-type"] == "  text/plain;   charset=utf-8  ", "the value sent is kept"


def test_headers_botocore_never_signs() -> None:
    ours = assert_same(KEYS, "PUT", "http://127.0.0.1:8333/b/k", {
        "user-agent": "tychoreg/0.1", "expect": "100-continue", "content-length": "9",
        "x-amzn-trace-id": "Root=1-abc", "transfer-encoding": "identity"})
    match = _AUTH.fullmatch(ours["authorization"])
    assert match is not None
    assert match["signed"] == "content-length;host;x-amz-content-sha256;x-amz-date"


def test_a_payload_hash_set_by_the_caller_is_signed() -> None:
    body = b"signed body\n"
    url = "http://127.0.0.1:8333/b/k"
    ours = _ours(KEYS, "PUT", url, {"content-length": str(len(body)),
                                    "x-amz-content-sha256": hashlib.sha256(body).hexdigest()},
                 now=NOW)
    theirs = _botocore(KEYS, "PUT", url, {"content-length": str(len(body))}, now=NOW, body=body)
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"]


def test_signing_the_same_headers_again_replaces_the_old_signature() -> None:
    """A retry re-signs the headers it sent: date and authorization are replaced, nothing
    of the first signature leaks into the second."""
    signer = Signer(REGION)
    url = "http://127.0.0.1:8333/b/k"
    headers = _ours(TOKENED, "GET", url, {"range": "bytes=5-"}, now=NOW, signer=signer)
    signer.sign(TOKENED, "GET", "/b/k", "", headers, now=NOW + 90)
    theirs = _botocore(TOKENED, "GET", url, {"range": "bytes=5-"}, now=NOW + 90)
    for name in _COMPARED:
        assert headers[name] == theirs[name], name


def test_midnight_rolls_the_signing_key_over() -> None:
    signer = Signer("eu-central-1")
    before = calendar.timegm((2026, 12, 31, 23, 59, 59))
    after = before + 2  # 2027-01-01T00:00:01Z
    signing_key.cache_clear()
    late = assert_same(KEYS, "GET", "http://127.0.0.1:8333/b/k", now=before, signer=signer)
    early = assert_same(KEYS, "GET", "http://127.0.0.1:8333/b/k", now=after, signer=signer)
    assert late["x-amz-date"] == "20261231T235959Z"
    assert early["x-amz-date"] == "20270101T000001Z"
    assert "/20270101/eu-central-1/s3/aws4_request" in early["authorization"]
    assert signing_key.cache_info().currsize == 2


def test_the_signing_key_is_derived_once_a_day() -> None:
    signer = Signer(REGION)
    signing_key.cache_clear()
    for second in range(200):
        _ours(KEYS, "GET", f"http://127.0.0.1:8333/b/k{second}", {}, now=NOW + second * 60,
              signer=signer)
    info = signing_key.cache_info()
    assert (info.currsize, info.misses, info.hits) == (1, 1, 199)


_UTF8 = st.characters(codec="utf-8")  # what a key or a query value can be: no lone surrogates
_TEXT = st.text(_UTF8, max_size=20)
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"),
                       max_size=40)
_QUERY_PAIRS = st.lists(st.tuples(
    st.sampled_from(["prefix", "delimiter", "list-type", "uploadId", "partNumber",
                     "continuation-token", "x-id", "uploads", "a", "a-b", "Z"]),
    st.one_of(st.none(), _TEXT)), max_size=6)


_PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                     max_size=30)


@settings(max_examples=150, deadline=None)
@given(method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
       key=st.text(_UTF8, min_size=1, max_size=60),
       pairs=_QUERY_PAIRS,
       values=st.dictionaries(st.sampled_from(["range", "if-match", "content-type",
                                               "x-amz-meta-a", "x-amz-meta-zz", "content-md5"]),
                              _HEADER_TEXT, max_size=4),
       secret=_PRINTABLE, token=st.one_of(st.none(), _PRINTABLE),
       region=st.sampled_from(["us-east-1", "eu-central-1", "ap-southeast-2"]),
       virtual=st.booleans())
def test_any_request_signs_as_botocore_does(
        method: str, key: str, pairs: list[tuple[str, str | None]], values: dict[str, str],
        secret: str, token: str | None, region: str, virtual: bool) -> None:
    query = "&".join(name if value is None else f"{name}={quote(value, safe='~')}"
                     for name, value in pairs)
    base = "https://bkt.s3.amazonaws.com/" if virtual else "http://127.0.0.1:8333/bkt/"
    url = base + _key_path(key) + (f"?{query}" if query else "")
    assert_same(Credentials("AKID", secret, token), method, url, values, signer=Signer(region))


def test_importing_the_signer_loads_only_the_standard_library() -> None:
    """In a fresh interpreter: no botocore at all, and nothing new outside the standard
    library but the package itself (what the interpreter loaded at start-up is not ours)."""
    code = ("import json, sys\n"
            "before = set(sys.modules)\n"
            "import tycho_async.storage.sigv4\n"
            "new = {m.partition('.')[0] for m in set(sys.modules) - before}\n"
            "print(json.dumps({'botocore': sorted(m for m in sys.modules if 'botocore' in m),\n"
            "                  'new': sorted(new - set(sys.stdlib_module_names))}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(run.stdout) == {"botocore": [], "new": ["tycho_async"]}


def _send(endpoint: str, credentials: Credentials, method: str, target: str,
          body: bytes = b"") -> tuple[int, bytes]:
    """One request signed by our signer alone, over http.client: status and body."""
    parts = urlsplit(endpoint + target)
    headers = {"host": _host(endpoint), "content-length": str(len(body))}
    Signer(REGION).sign(credentials, method, parts.path, parts.query, headers)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_seaweedfs_serves_requests_it_signed(seaweed_endpoint: str) -> None:
    """SeaweedFS checks every signature: a PUT, a GET and a ListObjectsV2 of an awkward key,
    signed with static keys, go through; the same requests with a wrong secret do not."""
    bucket = make_bucket(seaweed_endpoint)
    good = Credentials(CREDS["aws_access_key_id"], CREDS["aws_secret_access_key"])
    key = _key_path("pkg/1.0/a b+c~ü.bin")
    blob = bytes(range(256)) * 3
    assert _send(seaweed_endpoint, good, "PUT", f"/{bucket}/{key}", blob)[0] == 200
    assert _send(seaweed_endpoint, good, "GET", f"/{bucket}/{key}") == (200, blob)
    status, listing = _send(seaweed_endpoint, good, "GET",
                            f"/{bucket}?list-type=2&prefix=pkg%2F1.0%2F&delimiter=%2F")
    assert status == 200
    assert b"<Key>pkg/1.0/a b+c~\xc3\xbc.bin</Key>" in listing
    bad = Credentials(good.access_key, good.secret_key + "x")
    assert _send(seaweed_endpoint, bad, "GET", f"/{bucket}/{key}")[0] == 403
    assert _send(seaweed_endpoint, bad, "PUT", f"/{bucket}/other", b"x")[0] == 403
