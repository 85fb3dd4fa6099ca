"""Offline evidence that the lean request path (``tycho_async/storage/s3lean.py``) keeps what
users rely on (issue 9, item 2): the same requests as botocore's for the same calls, refreshing
``credential_process`` credentials, session tokens, TLS with a private CA (``AWS_CA_BUNDLE`` and
``verify``), HTTP(S)_PROXY through a loopback proxy, and a bucket that answers with a region
redirect. Every byte goes to 127.0.0.1; the requests of the first test are never sent at all.

Lean requests are told apart from botocore's by what botocore adds to each of its own:
``amz-sdk-invocation-id``.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.credentials import RefreshableCredentials

from tycho_async.storage import Part, S3Options, open_store

from .httpproxy import FaultProxy, RequestRecord
from .support import CREDS, REGION, TYCHOREG, _env, make_bucket, opened, s3_client, write_file

MiB = 1024 * 1024
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
               "http_proxy", "https_proxy", "all_proxy", "no_proxy")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=[0-9a-f]{64}")
_DISCARD = "127.0.0.1:9"  # nothing listens there: reachable only through a proxy


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Signature:
    key: str  # access key id
    region: str
    service: str
    signed: frozenset[str]  # SignedHeaders


def _signature(authorization: str) -> Signature:
    match = _AUTH.fullmatch(authorization)
    assert match is not None, f"not a SigV4 Authorization header: {authorization!r}"
    return Signature(match["key"], match["region"], match["service"],
                     frozenset(match["signed"].split(";")))


def _is_lean(record: RequestRecord) -> bool:
    return "amz-sdk-invocation-id" not in record.headers


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _base_env() -> dict[str, str]:
    """The test's environment (no AWS_*: conftest's isolated_env) without any proxy."""
    return {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}


def _config_env(endpoint: str, bucket: str, **s3: str) -> dict[str, str]:
    """The environment of a command whose registry comes from ./.tychoreg.json, with
    ``s3`` added to the config's s3 section."""
    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "s3"},
        "s3": {"bucket": bucket, "endpoint_url": endpoint, "region_name": REGION, **CREDS,
               **s3}}))
    Path(".tychoreg.json").chmod(0o600)
    return _base_env()


def _s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    env = _env(endpoint, bucket)
    for name in _PROXY_VARS:
        env.pop(name, None)
    return env


def _tychoreg(*args: str, env: dict[str, str], timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TYCHOREG, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def _round_trip(env: dict[str, str], size: int = 11 * MiB + 5) -> None:
    """Push a file of ``size`` bytes (multipart in 5 MiB parts when larger), pull it back
    under another directory and compare the bytes."""
    blob = write_file(Path("blob.bin"), size, seed=size)
    push = _tychoreg("push", "blob", "1.0", "blob.bin", "--promote-latest",
                     "--part-size", "5MiB", env=env)
    assert push.returncode == 0, push.stderr
    pull = _tychoreg("pull", "blob", "--outdir", "pulled", env=env)
    assert pull.returncode == 0, pull.stderr
    assert Path("pulled/blob.bin").read_bytes() == blob


LEAN_KINDS = {"GET", "HEAD", "PUT", "UploadPart"}


def _lean_kinds(records: list[RequestRecord]) -> set[str]:
    """What the lean path sent among these requests: methods, UploadPart apart."""
    return {"UploadPart" if "partNumber=" in r.path else r.method
            for r in records if _is_lean(r)}


# 1. the same requests as botocore's ----------------------------------------------------------

class _Held(Exception):
    """Raised where a request would leave: it was recorded and is never sent."""


BUCKET = "tycho-lean-bucket"
PREFIX = "pre fix/"
KEY = "a b+c~d"
ENCODED_KEY = "pre%20fix/a%20b%2Bc~d"
DATA = b"lean path bytes \x00\xff" * 5
ETAG = '"0123456789abcdef0123456789abcdef"'
UPLOAD_ID = "upload/id+with=chars"
TOKEN = "IQoJb3JpZ2luX2Vj/session+token=="

# addressing: client kwargs, addressing style, and the URL botocore gives the bucket
ADDRESSING: dict[str, tuple[dict[str, str], str | None, str]] = {
    "path": ({"endpoint_url": "http://127.0.0.1:9", "region_name": REGION}, None,
             f"http://127.0.0.1:9/{BUCKET}/"),
    "virtual": ({"endpoint_url": "http://localhost:9", "region_name": REGION}, "virtual",
                f"http://{BUCKET}.localhost:9/"),
    # botocore never puts a bucket in front of an IP address, whatever the style asked
    "virtual-ip": ({"endpoint_url": "http://127.0.0.1:9", "region_name": REGION}, "virtual",
                   f"http://127.0.0.1:9/{BUCKET}/"),
    # no endpoint: AWS itself (nothing is sent)
    "aws": ({"region_name": "eu-west-2"}, None, f"https://{BUCKET}.s3.eu-west-2.amazonaws.com/"),
}

# Signed by botocore, deliberately not sent by the lean path:
BOTOCORE_ONLY = frozenset({
    # names the algorithm of the checksum; the lean path sends the checksum header itself
    "x-amz-sdk-checksum-algorithm",
    # botocore's aws-chunked body with the CRC32 in a trailer (https endpoints): the lean path
    # sends the body as it is and the CRC32 as a header
    "content-encoding", "x-amz-decoded-content-length", "x-amz-trailer",
})
# Neither signs nor compares the unsigned headers that botocore adds and the lean path does
# not: user-agent, expect (100-continue), amz-sdk-invocation-id, amz-sdk-request,
# transfer-encoding. The lean path signs UNSIGNED-PAYLOAD where botocore signs the SHA-256
# of the payload (plain http) or a streaming trailer (https): x-amz-content-sha256 is signed
# by both, with another value.


async def _ranged(store: Any) -> None:
    async with store.open_range(KEY, 3, 10, if_match=ETAG):
        pass


OPERATIONS: dict[str, Callable[[Any], Awaitable[object]]] = {
    "HeadObject": lambda store: store.head(KEY),
    "GetObject": lambda store: store.get_bytes(KEY),
    "GetObject Range If-Match": _ranged,
    "PutObject If-None-Match": lambda store: store.put_bytes(KEY, DATA, if_none_match=True),
    "PutObject If-Match": lambda store: store.put_bytes(KEY, DATA, if_match=ETAG),
    "UploadPart": lambda store: store.upload_part(KEY, UPLOAD_ID, Part(3, 0, len(DATA)), DATA),
}


def _headers(request: Any) -> dict[str, str]:
    return {str(name).lower(): _text(value) for name, value in request.headers.items()}


def _body(request: Any) -> bytes:
    body = request.body
    if hasattr(body, "read"):
        body.seek(0)
        return bytes(body.read())
    return bytes(body or b"")


def _compare(operation: str, lean: Any, boto: Any, *, token: str | None,
             checksums: bool, base: str) -> None:
    what = f"{operation}: lean {lean.method} {lean.url} / botocore {boto.method} {boto.url}"
    assert lean.method == boto.method, what
    # the URL: botocore's, to the byte, but for the order of the query parameters (UploadPart:
    # botocore puts uploadId first; SigV4 and S3 sort them, so the order carries nothing)
    lean_url, boto_url = urlsplit(lean.url), urlsplit(boto.url)
    assert lean.url.partition("?")[0] == base + ENCODED_KEY, what
    assert lean_url[:3] == boto_url[:3], what
    assert sorted(parse_qsl(lean_url.query, keep_blank_values=True)) == sorted(
        parse_qsl(boto_url.query, keep_blank_values=True)), what

    lean_h, boto_h = _headers(lean), _headers(boto)
    lean_sig, boto_sig = _signature(lean_h["authorization"]), _signature(boto_h["authorization"])
    assert (lean_sig.key, lean_sig.region, lean_sig.service) == (
        boto_sig.key, boto_sig.region, "s3"), what
    expected = set(boto_sig.signed - BOTOCORE_ONLY)
    if checksums and lean.method == "PUT":
        expected.add("x-amz-checksum-crc32")  # where botocore carried it in a trailer
    if not checksums and lean.method == "PUT":
        expected.add("content-md5")  # where botocore signed the payload's SHA-256
    expected.discard("content-length")  # the pool sets it after signing, from the body
    assert lean_sig.signed == expected, what
    # user-agent is never signed (botocore's SigV4 leaves it out too)
    assert set(lean_h) - lean_sig.signed <= {"authorization", "content-length", "user-agent"}, \
        what
    assert lean_h["user-agent"].startswith("tychoreg/"), what  # ours: botocore is not loaded
    for name in ("range", "if-match", "if-none-match", "x-amz-security-token",
                 "x-amz-checksum-crc32"):
        if name in boto_h:
            assert lean_h.get(name) == boto_h[name], f"{what}: {name}"
    if token is None:
        assert "x-amz-security-token" not in lean_h and "x-amz-security-token" not in boto_h
    else:
        assert lean_h["x-amz-security-token"] == boto_h["x-amz-security-token"] == token, what
        assert "x-amz-security-token" in lean_sig.signed & boto_sig.signed, what
    assert lean_h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", what
    if lean.method == "PUT":
        assert _body(lean) == DATA, what
        crc = base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()
        assert lean_h.get("x-amz-checksum-crc32") == (crc if checksums else None), what


@pytest.mark.anyio
@pytest.mark.parametrize("checksums", [True, False], ids=["crc32", "no-checksums"])
@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize("addressing", list(ADDRESSING))
async def test_lean_requests_are_botocores(addressing: str, token: str | None,
                                           checksums: bool) -> None:
    kwargs, style, base = ADDRESSING[addressing]
    credentials = {**CREDS, **({"aws_session_token": token} if token else {})}
    options = S3Options(BUCKET, prefix=PREFIX, client_kwargs={**kwargs, **credentials},
                        addressing_style=style, checksums=checksums)
    async with open_store(options) as opened:
        store: Any = opened
        lean = store._lean
        assert lean is not None, "the lean path was not resolved"
        sent: list[_Sent] = []

        async def hold_lean(method: str, origin: Any, target: str, headers: Any,
                            body: Any = b"", **_: Any) -> Any:
            sent.append(_Sent(method, f"{origin.scheme}://{origin.netloc}{target}",
                              {"host": origin.netloc, "user-agent": lean.pool._user_agent,
                               **headers}, bytes(body)))
            raise _Held

        lean.pool.request = hold_lean  # the lean path's way out: our own pool
        lean_requests = {}
        for operation, call in OPERATIONS.items():
            with pytest.raises(_Held):
                await call(store)
            assert len(sent) == 1, operation
            lean_requests[operation] = sent.pop()

        held: list[Any] = []

        def hold_botocore(request: Any, **_: Any) -> None:
            held.append(request)
            raise _Held

        store._lean = None  # the store's botocore path, as after a redirect
        boto = await store._botocore()
        boto._client.meta.events.register("before-send.s3", hold_botocore)
        for operation, call in OPERATIONS.items():
            with pytest.raises(_Held):
                await call(store)
            assert len(held) == 1 and not sent, operation
            _compare(operation, lean_requests[operation], held.pop(), token=token,
                     checksums=checksums, base=base)


@dataclass(frozen=True)
class _Sent:
    """A request the lean client was about to send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


# 2. credential_process credentials that expire and refresh mid-command -------------------------

_CREDENTIAL_PROCESS = """\
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
expires = (datetime.datetime.now(datetime.timezone.utc)
           + datetime.timedelta(seconds=float(sys.argv[2])))
print(json.dumps({"Version": 1, "AccessKeyId": f"PROCKEY{n:04d}",
                  "SecretAccessKey": f"secret{n}", "SessionToken": f"token{n}",
                  "Expiration": expires.isoformat()}))
"""


def test_credential_process_refreshes_mid_command(proxy: FaultProxy, s3_endpoint: str,
                                                  tmp_path: Path) -> None:
    """botocore refreshes credentials that expire within its advisory window (15 minutes):
    credentials valid for that window plus one second are refreshed about once a second, so
    a command of a few seconds must sign its lean requests with several access keys, each
    with the session token of the same refresh."""
    lifetime = RefreshableCredentials._advisory_refresh_timeout + 1
    script, counter = tmp_path / "creds.py", tmp_path / "calls"
    script.write_text(_CREDENTIAL_PROCESS)
    process = shlex.join([sys.executable, str(script), str(counter), str(lifetime)])
    config = tmp_path / "aws-config"
    config.write_text(f"[profile lean]\ncredential_process = {process}\nregion = {REGION}\n")

    bucket = make_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    names = [f"p{i:02d}" for i in range(20)]
    for name in names:
        client.put_object(Bucket=bucket, Key=f"{name}/tycho.json",
                          Body=json.dumps({"localname": f"{name}.bin", "latest": "1"}))
        client.put_object(Bucket=bucket, Key=f"{name}/tycho_1.pkg", Body=name.encode() * 999)
    env = _s3_env(proxy.url, bucket)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env.update({"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "lean"})
    proxy.delay = 0.03  # 60 ms a round trip: 40-odd requests one at a time last seconds

    result = _tychoreg("pull-list", *names, "--concurrency", "1", env=env)

    assert result.returncode == 0, result.stderr
    for name in names:
        assert Path(f"tycho_packages/{name}.bin").read_bytes() == name.encode() * 999
    calls = int(counter.read_text())
    keys: set[str] = set()
    for record in proxy.requests:
        signature = _signature(record.headers["authorization"])
        number = int(signature.key.removeprefix("PROCKEY"))
        assert 1 <= number <= calls
        assert record.headers["x-amz-security-token"] == f"token{number}"
        assert "x-amz-security-token" in signature.signed
        if _is_lean(record):
            keys.add(signature.key)
    assert len(keys) >= 2, f"lean requests signed by {sorted(keys)} only ({calls} refreshes)"


# 3. a session token ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["env", "config"])
def test_session_token_signs_every_request(proxy: FaultProxy, s3_endpoint: str,
                                           where: str) -> None:
    bucket = make_bucket(s3_endpoint)
    if where == "env":
        env = _s3_env(proxy.url, bucket)
        env["AWS_SESSION_TOKEN"] = TOKEN
    else:
        env = _config_env(proxy.url, bucket, aws_session_token=TOKEN)

    _round_trip(env)

    records = proxy.requests
    assert _lean_kinds(records) >= LEAN_KINDS
    for record in records:
        assert record.headers.get("x-amz-security-token") == TOKEN, record
        assert "x-amz-security-token" in _signature(record.headers["authorization"]).signed


# 4. TLS with a private CA ---------------------------------------------------------------------

@dataclass(frozen=True)
class PrivateCA:
    ca_pem: Path
    server: ssl.SSLContext  # a certificate for 127.0.0.1 that the CA signed


def _private_ca(directory: Path) -> PrivateCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tychoreg test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = (directory / name for name in ("ca.pem", "cert.pem", "key.pem"))
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_pem, key_pem)
    return PrivateCA(ca_pem, server)


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    return _private_ca(tmp_path / "pki")


@pytest.fixture
def tls_proxy(s3_endpoint: str, private_ca: PrivateCA) -> Iterator[FaultProxy]:
    """A TLS terminator on 127.0.0.1 (a certificate of the private CA) in front of moto."""
    upstream = urlsplit(s3_endpoint)
    with FaultProxy(upstream.hostname or "", upstream.port or 0,
                    ssl_context=private_ca.server) as running:
        assert running.url.startswith("https://")
        yield running
    assert running.errors == []


@pytest.mark.parametrize("how", ["AWS_CA_BUNDLE", "verify", "profile ca_bundle"])
def test_tls_with_a_private_ca(tls_proxy: FaultProxy, s3_endpoint: str,
                               private_ca: PrivateCA, how: str) -> None:
    bucket = make_bucket(s3_endpoint)
    if how == "AWS_CA_BUNDLE":
        env = _s3_env(tls_proxy.url, bucket)
        env["AWS_CA_BUNDLE"] = str(private_ca.ca_pem)
    elif how == "profile ca_bundle":  # botocore reads the profile; the lean client uses it
        env = _s3_env(tls_proxy.url, bucket)
        Path("aws-config").write_text(f"[default]\nca_bundle = {private_ca.ca_pem}\n")
        env["AWS_CONFIG_FILE"] = str(Path("aws-config").resolve())
    else:
        env = _config_env(tls_proxy.url, bucket, verify=str(private_ca.ca_pem))

    _round_trip(env)

    assert _lean_kinds(tls_proxy.requests) >= LEAN_KINDS


def test_tls_without_the_ca_fails_clearly(tls_proxy: FaultProxy, s3_endpoint: str) -> None:
    env = _s3_env(tls_proxy.url, make_bucket(s3_endpoint))
    write_file(Path("f.bin"), 1000)
    for args in (["push", "pkg", "1", "f.bin"], ["pull", "pkg"]):
        result = _tychoreg(*args, env=env)
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert re.search(r"certificate verify failed", lines[0], re.IGNORECASE), lines[0]
        assert "AWS_CA_BUNDLE" in lines[0] and '"verify"' in lines[0], lines[0]
        assert "Traceback" not in result.stderr
    assert tls_proxy.requests == []  # no request got through the handshake


# 5. HTTP_PROXY and HTTPS_PROXY ----------------------------------------------------------------

def test_http_proxy(s3_endpoint: str) -> None:
    """The endpoint is a port where nothing listens: every request must go through the
    proxy, which forwards it to moto. The proxy sees each in absolute form."""
    moto = urlsplit(s3_endpoint)
    with FaultProxy(moto.hostname or "", moto.port or 0) as forward:
        env = _s3_env(f"http://{_DISCARD}", make_bucket(s3_endpoint))
        env["HTTP_PROXY"] = forward.url

        _round_trip(env)

        records = forward.requests
    assert forward.errors == []
    assert all(r.path.startswith(f"http://{_DISCARD}/") for r in records), records
    assert _lean_kinds(records) >= LEAN_KINDS


def test_https_proxy_connect_tunnel(tls_proxy: FaultProxy, s3_endpoint: str,
                                    private_ca: PrivateCA) -> None:
    """HTTPS through a CONNECT tunnel: the tunnel leads to the TLS terminator in front of
    moto, which sees the requests inside the tunnel; the endpoint itself is unreachable."""
    with FaultProxy("127.0.0.1", urlsplit(tls_proxy.url).port or 0) as tunnel:
        env = _s3_env(f"https://{_DISCARD}", make_bucket(s3_endpoint))
        env.update({"HTTPS_PROXY": tunnel.url, "AWS_CA_BUNDLE": str(private_ca.ca_pem)})

        _round_trip(env)

        connects = tunnel.requests
        tunnels = tunnel.upstream_connections
    assert tunnel.errors == []
    assert connects and all(r.method == "CONNECT" and r.path == _DISCARD for r in connects)
    assert tls_proxy.connections == tunnels  # every TLS connection came through a tunnel
    assert _lean_kinds(tls_proxy.requests) >= LEAN_KINDS


# 6. a bucket in another region ----------------------------------------------------------------

_HOME = "eu-west-1"


@dataclass(frozen=True)
class StubRecord:
    method: str
    path: str
    region: str | None  # the region the request was signed for
    lean: bool
    status: int


class _RegionStub(ThreadingHTTPServer):
    """S3 as it answers for a bucket in eu-west-1, in front of moto. A request signed for
    eu-west-1 is served by moto. One signed for another region gets, by ``answer``:

    - "301": a 301 PermanentRedirect with ``x-amz-bucket-region`` (to one signed for
      us-east-1; any other region gets the "400" answer);
    - "400": a 400 AuthorizationHeaderMalformed naming the region in its body
      (``<Region>``) and in ``x-amz-bucket-region``;
    - "400-body-only": the same 400 naming the region in its body only (a HEAD, which has
      no body, still gets the header).
    """

    daemon_threads = True

    def __init__(self, upstream: str, answer: str) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.answer = answer
        parsed = urlsplit(upstream)
        self.upstream = (parsed.hostname or "", parsed.port or 0)
        self.lock = threading.Lock()
        self.seen: list[StubRecord] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _RegionStub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            raise AssertionError("the stub reads bodies framed by Content-Length only")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        match = _AUTH.fullmatch(self.headers.get("Authorization", ""))
        region = match["region"] if match else None
        bucket = self.path.lstrip("/").partition("/")[0].partition("?")[0]
        if region == _HOME:
            status, headers, payload = self._forward(body)
        elif region == REGION and self.server.answer == "301":
            status, payload = 301, (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>"
                "<Message>The bucket you are attempting to access must be addressed using the "
                "specified endpoint. Please send all future requests to this endpoint.</Message>"
                f"<Endpoint>{bucket}.s3.{_HOME}.amazonaws.com</Endpoint><Bucket>{bucket}</Bucket>"
                "<RequestId>0</RequestId><HostId>0</HostId></Error>").encode()
            headers = [("x-amz-bucket-region", _HOME), ("Content-Type", "application/xml")]
        else:
            status, payload = 400, (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
                "<Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is "
                f"malformed; the region '{region}' is wrong; expecting '{_HOME}'</Message>"
                f"<Region>{_HOME}</Region><RequestId>0</RequestId></Error>").encode()
            headers = [("Content-Type", "application/xml")]
            if self.server.answer == "400" or self.command == "HEAD":
                headers.append(("x-amz-bucket-region", _HOME))
        with self.server.lock:
            self.server.seen.append(StubRecord(self.command, self.path, region,
                                               "amz-sdk-invocation-id" not in self.headers,
                                               status))
        self.send_response_only(status)
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("Content-Length", str(0 if self.command == "HEAD" else len(payload))))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        hop = {"connection", "keep-alive", "expect", "transfer-encoding", "proxy-connection"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders()
                    if k.lower() not in hop | {"server", "date"}]
            return response.status, kept, payload
        finally:
            conn.close()


@pytest.fixture
def region_stub(s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[_RegionStub]:
    server = _RegionStub(s3_endpoint, request.param)
    thread = threading.Thread(target=server.serve_forever, name="RegionStub", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


WRONG_REGION = ["301", "400", "400-body-only"]


def _learned(records: list[StubRecord], *, first_lean: bool, concurrent: int = 1) -> None:
    """The first request, signed for us-east-1, met the wrong-region answer (a lean one when
    ``first_lean``); botocore learnt the region from it; every request after botocore's
    wrong-region attempts was signed for eu-west-1 and served."""
    assert records, "no request reached the stub"
    first = records[0]
    assert (first.region, first.lean) == (REGION, first_lean), records
    assert first.status in (301, 400), records
    wrong = [r for r in records if r.region != _HOME]
    # each of the first ``concurrent`` requests meets the answer once as a lean request and
    # once through botocore, before botocore's redirector has learnt the region
    assert records[:len(wrong)] == wrong and len(wrong) <= 2 * concurrent, records
    assert all(r.status < 400 or r.status == 404 for r in records[len(wrong):]), records


@pytest.mark.parametrize("region_stub", WRONG_REGION, indirect=True)
def test_push_to_a_bucket_in_another_region(region_stub: _RegionStub, s3_endpoint: str) -> None:
    """A push's first request is a lean HEAD: it meets the wrong-region answer, and the
    store falls back to botocore for good, which follows it (multipart upload included)."""
    bucket = make_bucket(s3_endpoint)
    env = _s3_env(region_stub.url, bucket)  # the client's region is us-east-1
    blob = write_file(Path("moved.bin"), 11 * MiB + 5, seed=7)

    push = _tychoreg("push", "moved", "1.0", "moved.bin", "--promote-latest",
                     "--part-size", "5MiB", env=env)

    assert push.returncode == 0, push.stderr
    records = list(region_stub.seen)
    _learned(records, first_lean=True, concurrent=2)  # HEAD of the object, GET of its record
    assert not [r for r in records[2:] if r.lean], records  # botocore's for good
    key = "moved/tycho_1.0.pkg"
    assert s3_client(s3_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read() == blob


@pytest.mark.parametrize("region_stub", WRONG_REGION, indirect=True)
def test_pull_from_a_bucket_in_another_region(region_stub: _RegionStub,
                                              s3_endpoint: str) -> None:
    """A pull's first request is a lean GET: it meets the wrong-region answer, the store falls
    back to botocore for good, which follows it."""
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("moved.bin"), 300_000, seed=7)
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="moved/tycho.json",
                      Body=json.dumps({"localname": "moved.bin", "latest": "1"}))
    client.put_object(Bucket=bucket, Key="moved/tycho_1.pkg", Body=blob)

    pull = _tychoreg("pull", "moved", "--outdir", "pulled", env=_s3_env(region_stub.url, bucket))

    records = list(region_stub.seen)
    assert pull.returncode == 0, pull.stderr
    assert Path("pulled/moved.bin").read_bytes() == blob
    _learned(records, first_lean=True)
    assert not [r for r in records[1:] if r.lean], records  # botocore's for good


# 6. start-up discipline: static keys and an http endpoint load no SDK ---------------------------

# What a pull or push with static keys never imports: the SDK, its HTTP stack, and what they
# pull in (the progress display's rich too, on a pipe).
SDK_MODULES = ("aiohttp", "aiobotocore", "botocore", "boto3", "urllib3", "yarl", "multidict",
               "jmespath", "dateutil", "rich", "email.utils", "http.client")
def _loaded(*args: str, env: dict[str, str]) -> set[str]:
    """The modules a real ``tychoreg ARGS`` imported, from inside its own process."""
    script = ("import json, sys\n"
              "from tycho_async.cli import main\n"
              "sys.argv = ['tychoreg', *sys.argv[1:]]\n"
              "try:\n    main()\n"
              "finally:\n"
              "    with open('modules.json', 'w') as f:\n"
              "        json.dump(sorted(sys.modules), f)\n")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(Path("modules.json").read_text()))


def _sdk(modules: set[str]) -> set[str]:
    return {name for name in modules
            if any(name == sdk or name.startswith(sdk + ".") for sdk in SDK_MODULES)}


def test_static_keys_on_an_http_endpoint_load_no_sdk(seaweed_endpoint: str) -> None:
    bucket = make_bucket(seaweed_endpoint)
    env = _s3_env(seaweed_endpoint, bucket)
    blob = write_file(Path("blob.bin"), 6 * MiB + 3)
    pushed = _loaded("push", "blob", "1.0", "blob.bin", "--promote-latest", "--part-size",
                     "5MiB", env=env)  # multipart: create, parts, complete, the listings
    assert _sdk(pushed) == set()
    pulled = _loaded("pull", "blob", "--outdir", "pulled", env=env)
    assert _sdk(pulled) == set()
    assert Path("pulled/blob.bin").read_bytes() == blob
    listed = _loaded("pull-list", "blob==1.0", "--outdir", "again", env=env)
    assert _sdk(listed) == set()
    assert Path("again/blob.bin").read_bytes() == blob


def test_an_aws_config_file_makes_botocore_decide(seaweed_endpoint: str) -> None:
    """A profile's settings (here: the region and the addressing style) are botocore's to
    read: with a config file in play the requests still go through the lean client, with
    what botocore resolved."""
    bucket = make_bucket(seaweed_endpoint)
    env = _s3_env(seaweed_endpoint, bucket)
    Path("aws-config").write_text("[default]\nregion = us-east-1\ns3 =\n"
                                  "    addressing_style = path\n")
    env["AWS_CONFIG_FILE"] = str(Path("aws-config").resolve())
    blob = write_file(Path("blob.bin"), 1000)
    pushed = _loaded("push", "blob", "1.0", "blob.bin", "--promote-latest", env=env)
    assert "botocore" in pushed
    pulled = _loaded("pull", "blob", "--outdir", "pulled", env=env)
    assert "botocore" in pulled
    assert Path("pulled/blob.bin").read_bytes() == blob


@pytest.mark.anyio
async def test_an_error_inside_an_empty_objects_range_has_no_hidden_cause(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with opened("s3", tmp_path, request) as (store, _):
        await store.put_bytes("empty", b"")
        with pytest.raises(ValueError) as caught:
            async with store.open_range("empty", 0, 100) as body:
                assert body.info.size == 0 and [c async for c in body.chunks] == []
                raise ValueError("the caller's own error")
        assert caught.value.__context__ is None
