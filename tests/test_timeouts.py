"""Stores that do not answer, or not as S3 does: a command fails in seconds with a message
naming the endpoint, after a bounded number of attempts, on both request paths (the lean
one for GET/HEAD/PUT, botocore's for listings)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
from typer.testing import CliRunner, Result

import tycho_async
from tycho_async.cli import app
from tycho_async.errors import StoreError
from tycho_async.storage import S3Options, open_store
from tycho_async.transfer.plan import TransferSettings

from .httpproxy import FaultProxy
from .support import CREDS, REGION, make_bucket, s3_client, write_file

ATTEMPTS = TransferSettings().max_attempts
MiB = 1024 * 1024


class BlackHole:
    """A loopback socket that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="BlackHole", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._held.append(conn)  # kept open, never read from, never answered

    @property
    def connections(self) -> int:
        return len(self._held)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in [*self._held, self._listener]:
            conn.close()


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _config(endpoint: str, **s3: object) -> None:
    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "s3"},
        "s3": {"bucket": "registry", "endpoint_url": endpoint, "region_name": REGION,
               **CREDS, **s3}}))
    Path(".tychoreg.json").chmod(0o600)


@pytest.mark.parametrize(("command", "parallel"), [
    (["list"], 1), (["pull", "pkg"], 1), (["push", "pkg", "1", "f.bin"], 1),
    (["exists", "pkg", "1"], 3),  # tycho.json, the record and the object, at once
    (["pull-list", "a", "b", "c", "d"], 4),
])
def test_a_black_hole_fails_the_command_after_bounded_attempts(
        isolated_env: Path, command: list[str], parallel: int) -> None:
    """Each request is tried ATTEMPTS times (with backoff); once that many have timed out
    on a store that never answered, the requests still waiting fail at once."""
    write_file(Path("f.bin"), 100)
    with BlackHole() as hole:
        _config(hole.url, read_timeout=0.3, connect_timeout=0.3)
        result = _cli(*command)
        seen = hole.connections
    assert result.exit_code == 3, result.output
    assert f"{hole.url} sent nothing for 0.3 s (read_timeout)" in result.stderr
    assert "Traceback" not in result.output
    assert ATTEMPTS <= seen <= ATTEMPTS + parallel - 1, result.output


def test_the_default_timeouts_fail_a_black_hole_well_within_a_minute() -> None:
    """The documented bound, from the defaults: every attempt waits one read timeout,
    every retry at most its backoff cap."""
    settings, options = TransferSettings(), S3Options(bucket="b")
    backoff = sum(min(settings.backoff_max, settings.backoff_base * 2 ** attempt)
                  for attempt in range(settings.max_attempts - 1))
    worst = settings.max_attempts * max(options.read_timeout, options.connect_timeout)
    assert worst + backoff <= 30


_PAGES = {"html": (200, "text/html", b"<html><body><h1>It works!</h1></body></html>"),
          "404": (404, "text/plain; charset=utf-8", b"404 page not found\n")}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer is no news (and stderr is the command's)."""


class NotS3Server:
    """A loopback web server that is not an S3 store: every request gets a web page (200,
    HTML) or a plain-text "404 page not found", as a wrong port often does."""

    def __init__(self, page: str) -> None:
        status, kind, body = _PAGES[page]

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> NotS3Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(params=["html", "404"])
def not_s3(request: pytest.FixtureRequest) -> Iterator[NotS3Server]:
    with NotS3Server(request.param) as server:
        yield server


@pytest.mark.parametrize("command", [["list"], ["pull", "pkg"], ["list-versions", "pkg"],
                                     ["exists", "pkg", "1"], ["push", "pkg", "1", "f.bin"]])
def test_an_endpoint_that_does_not_speak_s3_is_a_config_error(
        isolated_env: Path, not_s3: NotS3Server, command: list[str]) -> None:
    write_file(Path("f.bin"), 100)
    _config(not_s3.url)
    result = _cli(*command)
    assert result.exit_code == 2, result.output
    assert f"the endpoint {not_s3.url} does not speak S3" in result.stderr
    assert "check endpoint_url" in result.stderr and "Traceback" not in result.output


def test_an_api_user_can_catch_not_s3_from_the_package(isolated_env: Path,
                                                       not_s3: NotS3Server) -> None:
    """A script using the API catches the error by its public name, like the others."""
    _config(not_s3.url)
    with (pytest.raises(tycho_async.NotS3, match="does not speak S3"),
          tycho_async.Client(config=".tychoreg.json") as client):
        client.packages()
    assert "NotS3" in tycho_async.__all__


def test_a_body_that_stalls_is_cut_by_the_read_timeout(s3_endpoint: str, isolated_env: Path,
                                                       proxy: FaultProxy) -> None:
    """Bytes that stop coming (one a second here) fail the read after read_timeout of
    silence, on a whole-body read (tycho.json) and on a streamed one (the object); the
    same store serves again once the link recovers."""
    bucket = make_bucket(s3_endpoint)
    _config(proxy.url, bucket=bucket, read_timeout=0.3)
    blob = write_file(Path("f.bin"), 1000)
    assert _cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    proxy.clear()
    proxy.rate = 1
    result = _cli("pull", "pkg")
    gets = [r for r in proxy.requests if r.method == "GET" and "tycho.json" in r.path]
    assert result.exit_code == 3, result.output
    assert f"{proxy.url} sent nothing for 0.3 s (read_timeout)" in result.stderr
    assert len(gets) == ATTEMPTS

    async def stream() -> None:
        options = S3Options(bucket, client_kwargs={"endpoint_url": proxy.url,
                                                   "region_name": REGION, **CREDS},
                            read_timeout=0.3)
        async with open_store(options) as store:
            proxy.rate = None
            assert await store.head("pkg/tycho_1.pkg") is not None  # it answers
            proxy.rate = 1
            with pytest.raises(StoreError, match=r"sent nothing for 0\.3 s") as caught:
                async with store.open_range("pkg/tycho_1.pkg", 0, None) as body:
                    async for _ in body.chunks:
                        pass
            assert caught.value.transient
            proxy.rate = None
            async with store.open_range("pkg/tycho_1.pkg", 0, None) as body:
                assert b"".join([chunk async for chunk in body.chunks]) == blob

    anyio.run(stream)
    assert _cli("pull", "pkg").exit_code == 0
    assert Path("tycho_packages/f.bin").read_bytes() == blob


class SlowRelay:
    """A TCP relay to a server that passes the first ``slow`` bytes a client sends on each
    connection at ``rate`` bytes a second and everything else at once (an upload whose
    body takes seconds to leave, whose answer then comes at once; its small receive
    buffer keeps the client's write blocked while the relay holds back), and holds the
    answer to a request whose first line contains ``held`` for ``hold`` seconds (a
    store that takes its time to answer; HTTP/1.1 clients send one request at a time)."""

    def __init__(self, upstream: str, *, slow: int = 0, rate: int = 1, held: bytes = b"",
                 hold: float = 0.0) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "", parts.port or 0)
        self._slow, self._rate = slow, rate
        self._held, self._hold = held, hold
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        holding = asyncio.Event()  # the request on its way is one whose answer is held

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                       upwards: bool) -> None:
            passed = 0
            while data := await source.read(64 * 1024):
                if upwards and self._held and self._held in data.split(b"\r\n", 1)[0]:
                    holding.set()
                if upwards and passed < self._slow:
                    await asyncio.sleep(len(data) / self._rate)
                if not upwards and holding.is_set():
                    holding.clear()
                    await asyncio.sleep(self._hold)
                passed += len(data)
                sink.write(data)
                await sink.drain()
            sink.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def __enter__(self) -> SlowRelay:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, sock=self._sock)

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def test_a_slow_upload_is_not_cut_by_the_read_timeout(s3_endpoint: str,
                                                      isolated_env: Path) -> None:
    """The first-byte clock starts when the request's last byte was sent: a part whose
    body takes 4 s to leave (4 MiB at 1 MiB/s) passes a 2 s read timeout."""
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("f.bin"), 12 * MiB + 7)
    with SlowRelay(s3_endpoint, slow=4 * MiB, rate=MiB) as relay:
        _config(relay.url, bucket=bucket, read_timeout=2)
        result = _cli("push", "pkg", "1", "f.bin", "--promote-latest", "--part-size", "12MiB",
                      "--concurrency", "1")
    # each attempt would meet a fresh connection's slow start: exit 0 means none was cut
    assert result.exit_code == 0, result.output
    stored = s3_client(s3_endpoint).get_object(Bucket=bucket, Key="pkg/tycho_1.pkg")
    assert stored["Body"].read() == blob


def test_a_slow_completion_is_waited_for(s3_endpoint: str, isolated_env: Path) -> None:
    """A store may take a while to assemble a multipart upload: the completion's answer
    has COMPLETE_TIMEOUT (a minute), not read_timeout (cut, its retry would find the
    upload gone and fail a push whose object is in the bucket)."""
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("f.bin"), 10 * MiB + 3)
    with SlowRelay(s3_endpoint, held=b"?uploadId=", hold=2.5) as relay:
        _config(relay.url, bucket=bucket, read_timeout=1)
        result = _cli("push", "pkg", "1", "f.bin", "--promote-latest", "--part-size", "5MiB")
    assert result.exit_code == 0, result.output
    stored = s3_client(s3_endpoint).get_object(Bucket=bucket, Key="pkg/tycho_1.pkg")
    assert stored["Body"].read() == blob
    _config(s3_endpoint, bucket=bucket)
    assert _cli("exists", "pkg", "1").exit_code == 0


def test_the_completing_client_resolves_no_credentials_of_its_own(
        s3_endpoint: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client that waits longer for CompleteMultipartUpload shares the main client's
    session: credentials from a credential_process (an MFA prompt, an SSO login) are
    resolved once per command, not once more for that client."""
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("f.bin"), 10 * MiB + 3)
    calls, script = Path("calls.log").absolute(), Path("creds.sh").absolute()
    answer = json.dumps({"Version": 1, "AccessKeyId": CREDS["aws_access_key_id"],
                         "SecretAccessKey": CREDS["aws_secret_access_key"]})
    script.write_text(f"#!/bin/sh\necho asked >> {calls}\necho '{answer}'\n")
    script.chmod(0o755)
    Path("aws-config").write_text(f"[default]\ncredential_process = {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(Path("aws-config").absolute()))
    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "s3"},
        "s3": {"bucket": bucket, "endpoint_url": s3_endpoint, "region_name": REGION}}))
    result = _cli("push", "pkg", "1", "f.bin", "--part-size", "5MiB")
    assert result.exit_code == 0, result.output
    stored = s3_client(s3_endpoint).get_object(Bucket=bucket, Key="pkg/tycho_1.pkg")
    assert stored["Body"].read() == blob
    assert calls.read_text().split() == ["asked"]
