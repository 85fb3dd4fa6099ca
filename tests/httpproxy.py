"""A loopback HTTP/1.1 proxy in front of a real S3 server, for faults that the code under test
cannot see from inside: conditional headers a store ignores, a malformed answer to a range
read of an empty object, a connection reset in the middle of an upload, a slow or long link.

Clients use ``FaultProxy.start()``'s URL as their endpoint_url. Requests that no knob touches
reach the server byte for byte, the Host header included (SigV4 signs it, and SeaweedFS
checks), and answers reach the client byte for byte but for one hop-by-hop header: each client
connection is served by one upstream connection at a time, reopened when the server closes it
between answers, so a server that closes after every answer (moto's werkzeug) has its
``Connection: close`` dropped and the client keeps its connection. Upgrades (101) are not
tunnelled. Optionally the listener speaks TLS (``ssl_context``: a TLS terminator in front of
a plain server), and a CONNECT request opens a raw tunnel to the server (whatever host it
names), so the proxy also serves as a client's HTTPS_PROXY. Pure standard library: an
asyncio loop in a background thread, so sync and async clients alike can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["FaultProxy", "RequestRecord"]

_CHUNK = 64 * 1024  # largest piece read and forwarded at once
_LIMIT = 1 << 20  # longest head or chunk-size line accepted
_IN_FLIGHT = 256  # pieces queued per direction before the reader waits
_STOP_TIMEOUT = 5.0
_CONDITIONALS = frozenset({
    "if-match", "if-none-match",
    "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since",
})
# the ETag S3 gives every empty object written in one PUT: md5 of no bytes
_EMPTY_ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client sent it, before any knob changed it."""

    method: str
    path: str  # the request target as sent: path and query string
    headers: dict[str, str]  # lower-case names; a repeated header's values joined by ", "
    connection: int  # the client connection that carried it, numbered from 1 as accepted


class _Broken(Exception):
    """The byte stream is not HTTP we can frame: the connection is dropped."""


@dataclass(frozen=True)
class _Head:
    data: bytes  # exactly as read, through the blank line
    first: bytes  # request or status line
    lines: tuple[bytes, ...]  # header lines as read
    headers: dict[str, str]

    def without(self, names: frozenset[str]) -> _Head:
        kept = tuple(line for line in self.lines if _name(line) not in names)
        if len(kept) == len(self.lines):
            return self
        data = b"\r\n".join([self.first, *kept]) + b"\r\n\r\n"
        return _Head(data, self.first, kept,
                     {k: v for k, v in self.headers.items() if k not in names})


@dataclass(frozen=True)
class _Framing:
    kind: str  # "none", "length", "chunked" or "close" (the body ends when the sender closes)
    length: int = 0


@dataclass(frozen=True)
class _Pending:
    """A request sent upstream whose answer has not arrived: how to frame and judge it."""

    method: str
    ranged_get: bool = False
    client_close: bool = False  # the request said Connection: close


@dataclass(frozen=True)
class _Reset:
    method: str
    path_contains: str
    after_body_bytes: int


def _name(line: bytes) -> str:
    return line.partition(b":")[0].strip().decode("latin-1").lower()


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    """The next request or response head; None if the peer closed between messages."""
    for _ in range(4):  # tolerate a few stray empty lines between messages (RFC 9112 2.2)
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise _Broken("head cut short") from exc
        except asyncio.LimitOverrunError as exc:
            raise _Broken("head too long") from exc
        start = len(data) - len(data.lstrip(b"\r\n"))
        if start == len(data):
            continue
        lines = data[start:-4].split(b"\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                key = name.strip().decode("latin-1").lower()
                val = value.strip().decode("latin-1")
                headers[key] = f"{headers[key]}, {val}" if key in headers else val
        return _Head(data, lines[0], tuple(lines[1:]), headers)
    raise _Broken("only empty lines")


def _content_length(head: _Head) -> _Framing:
    try:
        length = int(head.headers["content-length"].split(",")[0])
    except ValueError as exc:
        raise _Broken("bad Content-Length") from exc
    if length < 0:
        raise _Broken("negative Content-Length")
    return _Framing("length", length) if length else _Framing("none")


def _request_framing(head: _Head) -> _Framing:
    coding = head.headers.get("transfer-encoding")
    if coding is not None:
        return _Framing("chunked" if coding.lower().endswith("chunked") else "close")
    if "content-length" in head.headers:
        return _content_length(head)
    return _Framing("none")


def _response_framing(head: _Head, status: int, method: str) -> _Framing:
    if method == "HEAD" or status < 200 or status in (204, 304):
        return _Framing("close" if status == 101 else "none")
    coding = head.headers.get("transfer-encoding")
    if coding is not None:
        return _Framing("chunked" if coding.lower().endswith("chunked") else "close")
    if "content-length" in head.headers:
        return _content_length(head)
    return _Framing("close")


def _status(head: _Head) -> int:
    try:
        return int(head.first.split(b" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise _Broken("bad status line") from exc


async def _body(reader: asyncio.StreamReader, framing: _Framing,
                piece: Callable[[], int]) -> AsyncGenerator[tuple[bytes, int], None]:
    """A message body as it arrives: (raw bytes to forward, payload bytes among them).

    Chunked bodies come with their size lines and trailers, so they are forwarded as sent.
    ``piece`` gives the most payload to read at once, asked afresh for every read.
    """
    try:
        if framing.kind == "length":
            left = framing.length
            while left > 0:
                data = await reader.read(min(left, piece()))
                if not data:
                    raise _Broken("body cut short")
                left -= len(data)
                yield data, len(data)
        elif framing.kind == "close":
            while data := await reader.read(piece()):
                yield data, len(data)
        elif framing.kind == "chunked":
            while True:
                line = await reader.readuntil(b"\r\n")
                yield line, 0
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        yield trailer, 0
                    yield trailer, 0
                    return
                while size > 0:
                    data = await reader.read(min(size, piece()))
                    if not data:
                        raise _Broken("chunk cut short")
                    size -= len(data)
                    yield data, len(data)
                yield await reader.readexactly(2), 0
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise _Broken(f"bad {framing.kind} body") from exc


class _Line:
    """One direction of a connection: pieces go out in order, each ``delay`` seconds after it
    was read. A delay line, not a pause per message, so a long link keeps its throughput."""

    def __init__(self, proxy: FaultProxy, writer: asyncio.StreamWriter,
                 on_fail: Callable[[], None]) -> None:
        self._proxy = proxy
        self._writer = writer
        self._on_fail = on_fail
        self._queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_IN_FLIGHT)
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def send(self, data: bytes) -> None:
        if self._pump_task.done():
            raise _Broken("peer gone")
        await self._queue.put((asyncio.get_running_loop().time() + self._proxy.delay, data))

    async def close(self) -> None:
        """Deliver what is queued, then close the socket (FIN)."""
        if not self._pump_task.done():
            await self._queue.put(None)
            await asyncio.wait({self._pump_task})
        self._writer.close()

    def abort(self, *, reset: bool = False) -> None:
        """Close now, dropping what is queued; ``reset`` makes the peer see an RST."""
        self._pump_task.cancel()
        if reset:
            sock = self._writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await self._queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                self._writer.write(data)
                await self._writer.drain()
        except OSError:
            self._on_fail()
        except Exception as exc:
            self._proxy._note(exc)
            self._on_fail()


@dataclass(eq=False)
class _Upstream:
    """One connection to the server; a client connection opens another when one closes."""

    line: _Line
    reader: asyncio.StreamReader
    pending: deque[_Pending] = field(default_factory=deque)  # sent here, not yet answered
    task: asyncio.Task[None] | None = None


class _Connection:
    """A client connection, and the upstream connection that carries its requests.

    Upstream is opened with the first request and again after it closed between answers, so
    the client keeps its connection alive even with a server that closes after every answer
    (moto's werkzeug does, saying ``Connection: close``): that header, hop-by-hop, is dropped
    from an answer framed by its length unless the client asked to close.
    """

    def __init__(self, proxy: FaultProxy, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.number = number
        self.reader = reader
        self.to_client = _Line(proxy, writer, self.kill)
        self.upstream: _Upstream | None = None  # where the next request goes, if open
        self.upstreams: set[_Upstream] = set()  # all open, for abort()
        self.main: asyncio.Task[None] | None = None
        self.rate_clock = 0.0  # when the response bytes paced so far have been paid for

    def kill(self) -> None:
        if self.main is not None:
            self.main.cancel()

    def abort(self) -> None:
        for upstream in list(self.upstreams):
            if upstream.task is not None:
                upstream.task.cancel()
            upstream.line.abort()
        self.to_client.abort()

    async def run(self) -> None:
        self.main = asyncio.current_task()
        try:
            await self._requests()
        except (asyncio.CancelledError, OSError, _Broken):
            pass  # either side went away, or stop(): both sides are closed below
        except Exception as exc:
            self.proxy._note(exc)
        finally:
            self.abort()

    async def _requests(self) -> None:
        while (head := await _read_head(self.reader)) is not None:
            method, _, rest = head.first.decode("latin-1").partition(" ")
            path = rest.rpartition(" ")[0]
            self.proxy._record(RequestRecord(method, path, dict(head.headers), self.number))
            if method == "CONNECT":
                await self._tunnel()
                return
            framing = _request_framing(head)
            after = self.proxy._take_reset(method, path)
            if after is not None:
                await self._reset(head, framing, after)
                return
            if self.proxy.strip_conditionals:
                head = head.without(_CONDITIONALS)
            if self.proxy.ignore_range:
                head = head.without(frozenset({"range"}))
            upstream = self.upstream or await self._connect()
            if upstream is None:
                return
            upstream.pending.append(_Pending(
                method, method == "GET" and "range" in head.headers,
                "close" in _tokens(head.headers.get("connection", ""))))
            await upstream.line.send(head.data)
            async with contextlib.aclosing(_body(self.reader, framing, _full)) as pieces:
                async for data, _ in pieces:
                    await upstream.line.send(data)
            if framing.kind == "close":
                return

    async def _connect(
        self, relay: Callable[[_Upstream], Coroutine[None, None, None]] | None = None,
    ) -> _Upstream | None:
        try:
            reader, writer = await asyncio.open_connection(
                self.proxy.upstream_host, self.proxy.upstream_port, limit=_LIMIT)
        except OSError:
            await self.to_client.send(_BAD_GATEWAY)
            await self.to_client.close()
            return None
        self.proxy._count_upstream()
        upstream = _Upstream(_Line(self.proxy, writer, self.kill), reader)
        upstream.task = asyncio.get_running_loop().create_task(
            (relay or self._responses)(upstream))
        self.upstream = upstream
        self.upstreams.add(upstream)
        return upstream

    async def _tunnel(self) -> None:
        """CONNECT: after a 200, bytes go both ways unread until either side closes. The
        tunnel leads to the upstream server whatever the request names; no knob applies but
        ``delay``."""
        upstream = await self._connect(relay=self._pipe_back)
        if upstream is None:
            return
        await self.to_client.send(_ESTABLISHED)
        while data := await self.reader.read(_CHUNK):
            await upstream.line.send(data)
        await upstream.line.close()

    async def _pipe_back(self, upstream: _Upstream) -> None:
        try:
            while data := await upstream.reader.read(_CHUNK):
                await self.to_client.send(data)
            await self.to_client.close()
        except (OSError, _Broken):
            pass
        except Exception as exc:
            self.proxy._note(exc)
        self.kill()

    async def _reset(self, head: _Head, framing: _Framing, after: int) -> None:
        """Take ``after`` bytes of the body (fewer if it is shorter), then reset the client."""
        got = 0
        if after > 0 and framing.kind != "none":
            if "100-continue" in head.headers.get("expect", "").lower():
                await self.to_client.send(_CONTINUE)  # or the client holds the body back
            async with contextlib.aclosing(
                    _body(self.reader, framing, lambda: min(_CHUNK, after - got))) as pieces:
                async for _, n in pieces:
                    got += n
                    if got >= after:
                        break
        self.to_client.abort(reset=True)

    async def _responses(self, upstream: _Upstream) -> None:
        """Relay answers in order; unless upstream ended cleanly, close the client side too."""
        clean = False
        try:
            clean = await self._relay(upstream)
        except (OSError, _Broken):
            pass
        except Exception as exc:
            self.proxy._note(exc)
        upstream.line.abort()
        self.upstreams.discard(upstream)
        if self.upstream is upstream:
            self.upstream = None
        if not clean:
            with contextlib.suppress(OSError):
                await self.to_client.close()
            self.kill()

    async def _relay(self, upstream: _Upstream) -> bool:
        """True when upstream closed (or said it would) with every answer relayed whole."""
        while (head := await _read_head(upstream.reader)) is not None:
            status = _status(head)
            if 100 <= status < 200 and status != 101:
                await self.to_client.send(head.data)  # interim: the final answer follows
                continue
            pending = upstream.pending.popleft() if upstream.pending else _Pending("GET")
            if (pending.ranged_get and self.proxy.malformed_empty_range
                    and _says_empty(head, status)):
                await self.to_client.send(_malformed(head))
                return False
            framing = _response_framing(head, status, pending.method)
            closing = _closes(head)
            if closing:
                # the next request must not go here, and it may come as soon as this answer
                # is through: forget this connection before relaying it
                if self.upstream is upstream:
                    self.upstream = None
                if framing.kind != "close" and not pending.client_close:
                    head = head.without(frozenset({"connection", "keep-alive"}))
            await self.to_client.send(head.data)
            async with contextlib.aclosing(_body(upstream.reader, framing, self._piece)) as pieces:
                async for data, n in pieces:
                    await self._pace(n)
                    await self.to_client.send(data)
            if framing.kind == "close" or pending.client_close:
                return False
            if closing:
                return not upstream.pending
        return not upstream.pending

    def _piece(self) -> int:
        rate = self.proxy.rate
        return _CHUNK if rate is None else max(1, min(_CHUNK, rate // 20))

    async def _pace(self, n: int) -> None:
        """Hold response bytes back so that they leave at ``rate`` bytes a second at most."""
        rate = self.proxy.rate
        if rate is None or n == 0:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self.rate_clock)
        self.rate_clock = start + n / rate
        if start > now:
            await asyncio.sleep(start - now)


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _closes(head: _Head) -> bool:
    """Whether the sender of this response closes the connection after it."""
    tokens = _tokens(head.headers.get("connection", ""))
    if head.first.startswith(b"HTTP/1.0"):
        return "keep-alive" not in tokens
    return "close" in tokens


def _full() -> int:
    return _CHUNK


def _says_empty(head: _Head, status: int) -> bool:
    """Whether upstream's answer to a range read says that the object is empty."""
    if status == 416:
        return True
    if not 200 <= status < 300:
        return False
    if head.headers.get("content-range", "").replace(" ", "").endswith("/0"):
        return True
    return head.headers.get("content-length", "").strip() == "0"


def _malformed(head: _Head) -> bytes:
    """A 206 that promises one byte (and no Content-Range) for a connection that then closes.

    Upstream's other headers stay (the first of each name: aiohttp's strict parser refuses a
    repeated Server header); an ETag is added if upstream sent none (a 416 has none), the one
    S3 gives an empty object, so that clients get as far as reading the body.
    """
    dropped = {"content-length", "content-range", "transfer-encoding", "connection",
               "keep-alive", "content-type"}
    lines = [b"HTTP/1.1 206 Partial Content"]
    for line in head.lines:
        if (name := _name(line)) not in dropped:
            dropped.add(name)  # one of each: moto's 416 has two Server headers
            lines.append(line)
    if "etag" not in head.headers:
        lines.append(b"ETag: " + _EMPTY_ETAG.encode())
    lines += [b"Content-Type: binary/octet-stream", b"Content-Length: 1"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class FaultProxy:
    """A loopback proxy to one S3 server whose fault knobs can be turned while it runs.

    Knobs (each read and set under a lock, from any thread, taking effect from the next
    request, response or piece of body):

    ``strip_conditionals``: drop If-Match, If-None-Match and the x-amz-copy-source-if-*
    headers from every request, as S3-compatible stores that ignore conditional writes do.
    SigV4 usually signs these headers, so only a store that does not check signatures (moto)
    accepts the stripped request; SeaweedFS would answer 403.

    ``ignore_range``: drop the Range header from every request, as a store or proxy that
    answers every ranged GET with the whole object (200) does (moto only, as above).

    ``malformed_empty_range``: when a GET with a Range header is answered as if the object
    were empty (416, or a 2xx with Content-Length 0 or a Content-Range of ``*/0``), the client
    gets a 206 with ``Content-Length: 1`` and no Content-Range instead, then the connection
    closes with no body byte sent, as one broken store did; aiohttp raises ClientPayloadError,
    urllib3 IncompleteRead. GETs without Range pass untouched.

    ``reset_once(method, path_contains, after_body_bytes)``: the next request with that method
    and a target containing that text is never forwarded: the proxy takes that many bytes of
    its body (all of it, if shorter; answering ``Expect: 100-continue`` itself so the client
    sends it), then resets the client connection (SO_LINGER 0, an RST). Each call arms one reset.

    ``rate``: at most this many response-body bytes a second on each connection (None: no
    limit), to make a download slow enough to watch.

    ``delay``: seconds added to every piece of bytes in either direction, pipelined, so a
    round trip grows by twice ``delay`` while throughput stays (0: none).

    ``ssl_context`` (a server-side context, given at construction): the listener speaks TLS
    and ``url`` starts with https; upstream stays plain.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._strip_conditionals = False
        self._ignore_range = False
        self._malformed_empty_range = False
        self._rate: int | None = None
        self._delay = 0.0
        self._resets: list[_Reset] = []
        self._requests: list[RequestRecord] = []
        self._errors: list[str] = []
        self._accepted = 0
        self._upstream_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._url: str | None = None
        self._stopped = False

    # knobs
    @property
    def strip_conditionals(self) -> bool:
        """Drop conditional headers from requests (see the class docstring)."""
        with self._lock:
            return self._strip_conditionals

    @strip_conditionals.setter
    def strip_conditionals(self, value: bool) -> None:
        with self._lock:
            self._strip_conditionals = bool(value)

    @property
    def ignore_range(self) -> bool:
        """Drop Range headers from requests (see the class docstring)."""
        with self._lock:
            return self._ignore_range

    @ignore_range.setter
    def ignore_range(self, value: bool) -> None:
        with self._lock:
            self._ignore_range = bool(value)

    @property
    def malformed_empty_range(self) -> bool:
        """Answer a range read of an empty object with a 206 that never delivers its byte."""
        with self._lock:
            return self._malformed_empty_range

    @malformed_empty_range.setter
    def malformed_empty_range(self, value: bool) -> None:
        with self._lock:
            self._malformed_empty_range = bool(value)

    @property
    def rate(self) -> int | None:
        """Response-body bytes a second per connection, or None for no limit."""
        with self._lock:
            return self._rate

    @rate.setter
    def rate(self, value: int | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate must be positive or None")
        with self._lock:
            self._rate = value

    @property
    def delay(self) -> float:
        """Seconds each piece waits, in either direction, pipelined (0: none)."""
        with self._lock:
            return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            self._delay = float(value)

    def reset_once(self, method: str, path_contains: str, after_body_bytes: int) -> None:
        """Reset the next matching request's connection after that many body bytes."""
        if after_body_bytes < 0:
            raise ValueError("after_body_bytes must not be negative")
        with self._lock:
            self._resets.append(_Reset(method.upper(), path_contains, after_body_bytes))

    @property
    def resets_armed(self) -> int:
        """How many reset_once calls have not fired yet."""
        with self._lock:
            return len(self._resets)

    # what was seen
    @property
    def requests(self) -> list[RequestRecord]:
        """Every request seen so far, in order of arrival (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the requests seen so far (knobs and armed resets stay)."""
        with self._lock:
            self._requests.clear()

    @property
    def errors(self) -> list[str]:
        """Unexpected exceptions inside the proxy (its bugs, not a peer going away)."""
        with self._lock:
            return list(self._errors)

    @property
    def connections(self) -> int:
        """How many client connections have been accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def upstream_connections(self) -> int:
        """How many connections to the server have been opened so far."""
        with self._lock:
            return self._upstream_connections

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the proxy is not started")
        return self._url

    # life cycle
    def start(self) -> str:
        """Listen on a free port of 127.0.0.1; return the URL for clients' endpoint_url."""
        with self._lock:
            if self._loop is not None or self._stopped:
                raise RuntimeError("a FaultProxy starts once")
            self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(loop,), name="FaultProxy",
                                        daemon=True)
        self._thread.start()
        try:
            port = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(_STOP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        scheme = "http" if self._ssl_context is None else "https"
        self._url = f"{scheme}://127.0.0.1:{port}"
        return self._url

    def stop(self) -> None:
        """Close the listener and every connection and end the thread; later calls do nothing."""
        with self._lock:
            loop, thread, self._stopped = self._loop, self._thread, True
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
            with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
                loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # the loop thread
    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=_STOP_TIMEOUT))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=_LIMIT,
                                                  ssl=self._ssl_context)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._accepted += 1
            number = self._accepted
        connection = _Connection(self, number, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [c.main for c in self._connections if c.main is not None]
        for connection in list(self._connections):
            connection.abort()
            connection.kill()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_TIMEOUT)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _note(self, exc: Exception) -> None:
        with self._lock:
            self._errors.append(f"{type(exc).__name__}: {exc}")

    def _count_upstream(self) -> None:
        with self._lock:
            self._upstream_connections += 1

    def _take_reset(self, method: str, path: str) -> int | None:
        with self._lock:
            for i, reset in enumerate(self._resets):
                if reset.method == method.upper() and reset.path_contains in path:
                    del self._resets[i]
                    return reset.after_body_bytes
        return None
