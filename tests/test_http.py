"""The lean client's HTTP/1.1 layer (``tycho_async/storage/http.py``) against scripted servers
on 127.0.0.1: what it writes is what h11 (the oracle) reads as the same request, and what
it reads is each framing a server may use, on connections it keeps, reuses and drops as
HTTP/1.1 says. The S3 behaviour on top is tested against real stores elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.storage.http import (
    ConnectFailed,
    ConnectionLost,
    Origin,
    Pool,
    ProtocolFailure,
    ReadTimeout,
    request_head,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- what is written ---------------------------------------------------------------------------

_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_NAME = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
       path=st.from_regex(r"/[A-Za-z0-9%/._~-]{0,40}", fullmatch=True),
       query=st.from_regex(r"[A-Za-z0-9%=&._~-]{0,30}", fullmatch=True),
       fields=st.dictionaries(_NAME.filter(lambda n: n != "host"), _VALUE, max_size=8))
def test_what_h11_reads_is_the_request_written(method: str, path: str, query: str,
                                               fields: dict[str, str]) -> None:
    target = f"{path}?{query}" if query else path
    written = request_head(method, target, [("host", "127.0.0.1:9"), *fields.items()])
    server = h11.Connection(h11.SERVER)
    server.receive_data(written)
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert (event.method.decode(), event.target.decode()) == (method, target)
    assert [(n.decode(), v.decode()) for n, v in event.headers] == [
        ("host", "127.0.0.1:9"), *fields.items()]
    if method in ("GET", "HEAD", "DELETE"):
        assert isinstance(server.next_event(), h11.EndOfMessage)


@pytest.mark.parametrize(("name", "value", "target"), [
    ("if-match", '"etag"\r\nx-evil: 1', "/k"),
    ("if-match", '"etag"\nx-evil: 1', "/k"),
    ("x-bad\r\nname", "v", "/k"),
    ("x-ok", "v", "/k HTTP/1.1\r\nx-evil: 1\r\n"),
    ("x-ok", "v", "/k with space"),
])
def test_a_value_that_would_split_the_request_is_refused(name: str, value: str,
                                                         target: str) -> None:
    with pytest.raises(ProtocolFailure) as caught:
        request_head("GET", target, [(name, value)])
    assert caught.value.sent is False


# -- what is read ------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _request_of(reader: asyncio.StreamReader) -> bytes:
    """One request's head (and, by Content-Length, its body) as the server got it."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[Origin]:
    """A server on a free port; ``handler(reader, writer, n)`` serves connection ``n``."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await handler(reader, writer, connections)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Origin("http", "127.0.0.1", port)
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


def _pool(**kwargs: float) -> Pool:
    return Pool(connect_timeout=kwargs.get("connect", 2.0), read_timeout=kwargs.get("read", 2.0),
                max_idle=4)


@pytest.mark.anyio
async def test_keep_alive_reuses_one_connection_for_every_framing() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nETag: \"x\"\r\n\r\n",  # to a HEAD: no body
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      n: int) -> None:
        for answer in answers:
            seen.append(await _request_of(reader))
            writer.write(answer)
            await writer.drain()

    async with _server(handler) as origin:
        pool = _pool()
        bodies = []
        for method in ("GET", "GET", "HEAD", "DELETE", "PUT"):
            response = await pool.request(method, origin, "/k", {}, b"xy" if method == "PUT"
                                          else b"")
            bodies.append((response.status, await response.read()))
        await pool.aclose()
    assert bodies == [(200, b"hello"), (200, b"abcde"), (200, b""), (204, b""), (200, b"ok")]
    assert len(seen) == 5  # all on connection 1: the handler serves one connection only
    assert seen[4].endswith(b"\r\n\r\nxy") and b"content-length: 2" in seen[4]


@pytest.mark.anyio
async def test_a_body_until_close_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      n: int) -> None:
        await _request_of(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()

    async with _server(handler) as origin:
        pool = _pool()
        response = await pool.request("GET", origin, "/k", {})
        assert await response.read() == b"all of it"
        await pool.aclose()


@pytest.mark.anyio
async def test_a_body_cut_short_is_connection_lost() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      n: int) -> None:
        await _request_of(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    async with _server(handler) as origin:
        pool = _pool()
        response = await pool.request("GET", origin, "/k", {})
        with pytest.raises(ConnectionLost):
            await response.read()
        await pool.aclose()


@pytest.mark.anyio
async def test_a_stale_connection_resends_a_get_but_never_a_put() -> None:
    """The server closes each connection after one answer, without saying so: the GET
    sent on the pooled (dead) connection goes again on a new one; the PUT is not sent
    again (it might have been applied), it fails for the caller's retry policy."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      n: int) -> None:
        await _request_of(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.transport.abort()

    async with _server(handler) as origin:
        pool = _pool()
        for _ in range(3):
            response = await pool.request("GET", origin, "/k", {})
            assert await response.read() == b"ok"
        put_failed = False
        for _ in range(3):
            try:
                response = await pool.request("PUT", origin, "/k", {}, b"data")
                await response.read()
            except ConnectionLost as exc:
                put_failed = True
                assert exc.sent
        await pool.aclose()
    assert put_failed


@pytest.mark.anyio
async def test_silence_is_a_read_timeout_and_a_closed_port_a_connect_failure() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      n: int) -> None:
        await _request_of(reader)
        await asyncio.sleep(30)  # never answers; the server closes it when the test ends

    async with _server(handler) as origin:
        pool = _pool(read=0.2)
        with pytest.raises(ReadTimeout):
            await pool.request("GET", origin, "/k", {})
        await pool.aclose()
    pool = _pool()
    with pytest.raises(ConnectFailed):
        await pool.request("GET", origin, "/k", {})  # the server is gone: nothing listens


@pytest.mark.anyio
async def test_an_answer_past_its_limit_is_refused_and_not_http_is_a_protocol_failure() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      n: int) -> None:
        await _request_of(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        else:
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()

    async with _server(handler) as origin:
        pool = _pool()
        response = await pool.request("GET", origin, "/k", {})
        with pytest.raises(ProtocolFailure):
            await response.read(limit=1000)
        with pytest.raises(ProtocolFailure):
            await pool.request("GET", origin, "/k", {})
        await pool.aclose()
