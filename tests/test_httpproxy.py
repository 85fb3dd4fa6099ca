"""The fault proxy itself: faithful forwarding and each knob, through boto3 against moto, and
byte for byte against a scripted server for the framings moto never sends."""

from __future__ import annotations

import io
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from urllib3.exceptions import ProtocolError

from tests.httpproxy import FaultProxy
from tests.support import CREDS, REGION, make_bucket, s3_client

MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    return make_bucket(s3_endpoint)


def client(endpoint: str, attempts: int = 1) -> Any:
    """boto3 with short timeouts (a framing bug shows as a hang) and chosen retries."""
    config = Config(connect_timeout=5, read_timeout=5,
                    retries={"mode": "standard", "total_max_attempts": attempts})
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=config, **CREDS)


def address(proxy: FaultProxy) -> tuple[str, int]:
    parts = urlsplit(proxy.url)
    return parts.hostname or "", parts.port or 0


def test_round_trip_is_byte_identical(proxy: FaultProxy, bucket: str) -> None:
    data = os.urandom(3 * MIB)
    s3 = client(proxy.url)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="big", Range="bytes=5-9")["Body"].read() == data[5:10]
    host = urlsplit(proxy.url).netloc
    assert [(r.method, r.headers["host"]) for r in proxy.requests] == [
        ("PUT", host), ("GET", host), ("GET", host)]


def test_multipart_upload(proxy: FaultProxy, bucket: str) -> None:
    parts = [os.urandom(MIB), os.urandom(1000)]
    s3 = client(proxy.url)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n + 1,
                            Body=part)["ETag"] for n, part in enumerate(parts)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)


def test_head_and_keep_alive(proxy: FaultProxy, bucket: str) -> None:
    """moto closes after every answer; the client still keeps one connection to the proxy."""
    s3 = client(proxy.url)
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    for _ in range(3):
        assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 5
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"12345"
    s3.list_objects_v2(Bucket=bucket)
    assert len(proxy.requests) == 6
    assert proxy.connections == 1
    assert {r.connection for r in proxy.requests} == {1}
    assert proxy.upstream_connections in (1, 6)  # 6 while werkzeug closes after each answer


def test_expect_100_continue(proxy: FaultProxy, bucket: str) -> None:
    data = os.urandom(200_000)
    s3 = client(proxy.url)
    s3.put_object(Bucket=bucket, Key="file-like", Body=io.BytesIO(data))  # botocore sends Expect
    assert proxy.requests[0].headers.get("expect") == "100-continue"
    assert s3.get_object(Bucket=bucket, Key="file-like")["Body"].read() == data


def test_strip_conditionals(proxy: FaultProxy, bucket: str, s3_endpoint: str) -> None:
    direct, proxied = client(s3_endpoint), client(proxy.url)
    direct.put_object(Bucket=bucket, Key="k", Body=b"first")
    for s3 in (direct, proxied):
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    proxy.strip_conditionals = True
    proxied.put_object(Bucket=bucket, Key="k", Body=b"third", IfNoneMatch="*")
    assert direct.get_object(Bucket=bucket, Key="k")["Body"].read() == b"third"
    assert proxy.requests[-1].headers["if-none-match"] == "*"  # the record is what was sent


def test_malformed_empty_range(proxy: FaultProxy, bucket: str) -> None:
    s3 = client(proxy.url)
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError, match="InvalidRange"):  # moto's answer, as S3's
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-9")
    proxy.malformed_empty_range = True
    resp = s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-9")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["ContentLength"] == 1
    with pytest.raises((IncompleteReadError, ResponseStreamingError, ProtocolError)):
        resp["Body"].read()
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


@pytest.mark.anyio
async def test_malformed_empty_range_through_aiohttp(proxy: FaultProxy, bucket: str) -> None:
    s3_client(proxy.url).put_object(Bucket=bucket, Key="empty", Body=b"")
    proxy.malformed_empty_range = True
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=proxy.url, region_name=REGION,
                                           **CREDS) as s3:
        resp = await s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-9")
        assert resp["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
        async with resp["Body"] as body:
            with pytest.raises(aiohttp.ClientPayloadError):
                await body.read()
        resp = await s3.get_object(Bucket=bucket, Key="empty")
        assert await resp["Body"].read() == b""


def test_reset_once(proxy: FaultProxy, bucket: str, s3_endpoint: str) -> None:
    data = os.urandom(MIB)
    proxy.reset_once("put", "/big", after_body_bytes=256 * 1024)
    client(proxy.url, attempts=2).put_object(Bucket=bucket, Key="big", Body=data)
    assert [r.method for r in proxy.requests] == ["PUT", "PUT"]
    assert proxy.requests[0].headers["expect"] == "100-continue"  # answered by the proxy
    assert proxy.resets_armed == 0
    assert client(s3_endpoint).get_object(Bucket=bucket, Key="big")["Body"].read() == data
    proxy.reset_once("PUT", "/big", after_body_bytes=0)
    with pytest.raises(BotoCoreError):  # without retries the reset reaches the caller
        client(proxy.url).put_object(Bucket=bucket, Key="big", Body=data)


def test_reset_is_an_rst_after_the_bytes(proxy: FaultProxy, bucket: str) -> None:
    proxy.reset_once("PUT", "/raw", after_body_bytes=50)
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(f"PUT /{bucket}/raw HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"
                     .encode() + b"x" * 49)
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # still open after 49 bytes
            sock.recv(1000)
        sock.settimeout(5)
        sock.sendall(b"x")  # the fiftieth byte
        with pytest.raises(ConnectionResetError):
            for _ in range(100):
                if not sock.recv(1000):
                    break
    assert [r.path for r in proxy.requests] == [f"/{bucket}/raw"]


def test_rate(proxy: FaultProxy, bucket: str, s3_endpoint: str) -> None:
    data = os.urandom(512 * 1024)
    client(s3_endpoint).put_object(Bucket=bucket, Key="slow", Body=data)
    s3 = client(proxy.url)
    s3.head_bucket(Bucket=bucket)  # connect before timing
    proxy.rate = MIB
    start = time.monotonic()
    assert s3.get_object(Bucket=bucket, Key="slow")["Body"].read() == data
    assert 0.4 <= time.monotonic() - start < 3


def test_delay(proxy: FaultProxy, bucket: str, s3_endpoint: str) -> None:
    data = os.urandom(2 * MIB)
    client(s3_endpoint).put_object(Bucket=bucket, Key="k", Body=data)
    s3 = client(proxy.url)
    s3.head_object(Bucket=bucket, Key="k")
    proxy.delay = 0.01
    start = time.monotonic()
    for _ in range(10):
        s3.head_object(Bucket=bucket, Key="k")
    assert time.monotonic() - start >= 0.2
    # pipelined: 2 MiB is 32 pieces or more, 3.2 s if each waited for the one before
    proxy.delay = 0.1
    start = time.monotonic()
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    assert 0.2 <= time.monotonic() - start < 1.5


# -- byte for byte, against a scripted server -------------------------------------------------

ANSWERS = {  # request target: (answer before the body is read, answer after it)
    "/chunked": (b"", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Odd:  spaced \r\n\r\n"
                      b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
    "/head": (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
    "/none": (b"", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
    "/continue": (b"HTTP/1.1 100 Continue\r\n\r\n",
                  b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
    "/close": (b"", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"),
}


class Scripted(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.seen: list[bytes] = []
        self.accepted = 0


class ScriptedHandler(socketserver.StreamRequestHandler):
    """Answers each request from ANSWERS, keeping the connection until /close."""

    server: Scripted

    def handle(self) -> None:
        self.server.accepted += 1
        for _ in range(20):
            head = b""
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                head += line
            if not head:
                return
            head += b"\r\n"
            target = head.split(b" ")[1].decode()
            early, answer = ANSWERS[target]
            self.wfile.write(early)
            self.server.seen.append(head + self.read_body(head))
            self.wfile.write(answer)
            if target == "/close":
                return

    def read_body(self, head: bytes) -> bytes:
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                line = self.rfile.readline()
                body += line
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while (trailer := self.rfile.readline()) != b"\r\n":
                        body += trailer
                    return body + trailer
                body += self.rfile.read(size + 2)
        if b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            return self.rfile.read(length)
        return b""


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (piece := sock.recv(n - len(data))):
        data += piece
    return data


def test_framings_byte_for_byte(scripted: Scripted) -> None:
    requests = [
        b"PUT /chunked HTTP/1.1\r\nhOsT: signed.example:9000\r\nX-Amz-Date:  20240101T000000Z\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\n4\r\ndefg\r\n0\r\n"
        b"X-Amz-Checksum-Crc32: AAAAAA==\r\n\r\n",
        b"HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n",
        b"DELETE /none HTTP/1.1\r\nHost: h\r\n\r\n",
    ]
    host, port = scripted.server_address[:2]
    with FaultProxy(str(host), int(port)) as proxy, \
            socket.create_connection(address(proxy), timeout=5) as sock:
        for request in requests:
            sock.sendall(request)
            answer = ANSWERS[request.split(b" ")[1].decode()][1]
            assert recv_exactly(sock, len(answer)) == answer
        continued = b"PUT /continue HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n" \
                    b"Content-Length: 4\r\n\r\n"
        sock.sendall(continued)
        interim, final = ANSWERS["/continue"]
        assert recv_exactly(sock, len(interim)) == interim
        sock.sendall(b"body")
        assert recv_exactly(sock, len(final)) == final
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
        assert recv_exactly(sock, 1000) == ANSWERS["/close"][1]
        assert ended(sock)  # the answer ended with the connection, so the proxy closed too
        assert proxy.connections == 1
        assert proxy.upstream_connections == 1
        assert [r.path for r in proxy.requests] == ["/chunked", "/head", "/none", "/continue",
                                                    "/close"]
        assert proxy.requests[0].headers["host"] == "signed.example:9000"
    assert scripted.seen == [*requests, continued + b"body",
                             b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n"]
    assert scripted.accepted == 1


def ended(sock: socket.socket) -> bool:
    """Whether the peer closed or reset the connection, rather than going quiet."""
    sock.settimeout(2)
    try:
        for _ in range(1000):
            if not sock.recv(MIB):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return False


def test_stop_is_bounded_and_idempotent(proxy: FaultProxy, bucket: str,
                                        s3_endpoint: str) -> None:
    client(s3_endpoint).put_object(Bucket=bucket, Key="k", Body=os.urandom(MIB))
    proxy.rate = 64 * 1024  # 16 s for the whole object
    url = urlsplit(client(proxy.url).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}))
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n"
                     .encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        proxy.stop()
        proxy.stop()
        assert time.monotonic() - start < 2
        assert ended(sock)
    assert not [t for t in threading.enumerate() if t.name == "FaultProxy"]
