"""A small HTTP/1.1 client for the S3 data plane: a keep-alive pool over asyncio, with
httptools (llhttp, the parser of Node.js) reading every answer: status line, headers,
Content-Length and chunked bodies. It costs about 10 us an answer where h11 costs about
200 (measured here), and requests are one line and a header block, written here.

What it does: one request at a time per connection, connections kept and reused per
origin (up to ``max_idle`` idle ones), plain TCP or TLS (the ``ssl`` module is imported
only for an https origin or proxy tunnel), ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``
from the environment (absolute-form requests through an http proxy, a CONNECT tunnel for
https), a connect timeout (TCP, proxy and TLS handshake together) and a read timeout
(the wait for the answer's first byte once the request is sent, and every silence
within a body; never the time a slow upload takes).

What it does not do: HTTP/2, redirects (the caller decides what a 301 means), cookies,
content decoding, 100-continue, proxies reached over TLS, or retries, with one
exception: a GET or HEAD sent on a pooled connection that the server had closed before
any byte of an answer is sent again once on a new connection (the server never saw it).
Anything else that fails surfaces as an ``HTTPFailure``; the caller's retry policy
decides.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httptools

if TYPE_CHECKING:
    import ssl

_HIGH_WATER = 4 * 1024 * 1024  # bytes received and not yet consumed before reading pauses
_WRITE_SLICE = 1024 * 1024  # a body goes to the transport in slices of this, with drains
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class HTTPFailure(Exception):
    """A request that got no complete answer; ``sent`` says whether it may have reached
    the server (False: it certainly did not)."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class ConnectFailed(HTTPFailure):
    """No connection (refused, unreachable, a proxy that refused the tunnel)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)


class ConnectTimeout(ConnectFailed):
    """No connection within the connect timeout."""


class TLSFailure(ConnectFailed):
    """The TLS handshake failed (an unknown CA, a wrong host name)."""


class ReadTimeout(HTTPFailure):
    """The server sent nothing for the read timeout."""


class ConnectionLost(HTTPFailure):
    """The connection closed or broke before the answer was complete."""


class ProtocolFailure(HTTPFailure):
    """What came back is not HTTP/1.1."""


@dataclass(frozen=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, parts.hostname or "", port)

    @property
    def netloc(self) -> str:
        """host[:port] as the Host header carries it (the default port left out)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class _Protocol(asyncio.Protocol):
    """Bytes in as the transport hands them over (kept as they are, no joining), paused
    beyond a high-water mark; writes with drain, as asyncio's streams do."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._lost: BaseException | None = None
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drainer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._eof = True
        self._lost = exc
        self._wake()
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def _wake(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    @property
    def stale(self) -> bool:
        """Closed by the peer (or broken) while idle, or holding bytes nobody asked for."""
        return self._eof or self._closed or bool(self._chunks)

    async def read(self, timeout: float) -> bytes:
        """The next bytes received; b"" once the peer has closed. ReadTimeout after
        ``timeout`` seconds of silence."""
        if not self._chunks and not self._eof:
            loop = asyncio.get_running_loop()
            self._reader = loop.create_future()
            timer = loop.call_later(timeout, self._expire, self._reader)
            try:
                await self._reader
            finally:
                timer.cancel()
                self._reader = None
        if self._chunks:
            data = self._chunks.popleft()
            self._buffered -= len(data)
            if self._paused and self._buffered <= _HIGH_WATER // 2 and self.transport:
                self._paused = False
                self.transport.resume_reading()
            return data
        return b""

    @staticmethod
    def _expire(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout("no data"))

    async def write(self, data: bytes | memoryview) -> None:
        if self._closed or self.transport is None:
            raise ConnectionLost("the connection closed while the request was sent")
        self.transport.write(data)
        if self._write_paused and not self._closed:
            self._drainer = asyncio.get_running_loop().create_future()
            try:
                await self._drainer
            finally:
                self._drainer = None
        if self._closed:
            raise ConnectionLost("the connection closed while the request was sent")

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.abort()  # no lingering: a half-read answer is never reused
        self._closed = True


class _Connection:
    """One connection and the parse of the answer it is waiting for: httptools (llhttp)
    parses, calling back into this object; the body is kept as the parser hands it over."""

    def __init__(self, protocol: _Protocol, key: Origin) -> None:
        self.protocol = protocol
        self.key = key
        self.used = False
        self.done = True  # the last answer was read to its end
        self.keep_alive = True
        self._begin(head=False)

    def _begin(self, *, head: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head = head  # an answer to HEAD has headers only, whatever they say
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.done = False
        self.body: collections.deque[bytes] = collections.deque()
        self.received = False  # any byte of the answer

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # 1xx: an interim answer; the real one follows
            self.headers = {}
            return
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.head:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.done = True

    async def receive(self, timeout: float) -> None:
        """Feed the parser what arrives next. A close where the answer has no length
        (neither Content-Length nor chunked) ends it; anywhere else it is ConnectionLost."""
        data = await self.protocol.read(timeout)
        if not data:
            framed = "content-length" in self.headers or "transfer-encoding" in self.headers
            if self.headers_done and not framed:
                self.done = True
                self.keep_alive = False
                return
            lost = self.protocol._lost
            raise ConnectionLost("the connection closed before the answer was complete"
                                 + (f" ({lost})" if lost else ""))
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ProtocolFailure(f"not an HTTP/1.1 answer ({exc})") from exc

    @property
    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.protocol.stale

    def close(self) -> None:
        self.protocol.close()


class Response:
    """An answer whose headers are in; the body is read with ``read`` or ``chunks``, and
    ``release`` (or reading to the end) gives the connection back."""

    def __init__(self, pool: Pool, connection: _Connection, read_timeout: float) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers  # lowercase names; a repeated one keeps its last
        self._read_timeout = read_timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as received, chunk by chunk."""
        connection = self._connection
        if connection is None:
            return
        try:
            body = connection.body
            while True:
                while body:
                    yield body.popleft()
                if connection.done:
                    break
                await connection.receive(self._read_timeout)
        except BaseException:
            self._drop()
            raise
        self._connection = None
        self._pool.give_back(connection)

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; ProtocolFailure (the connection closed) if it runs past
        ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                self._drop()
                raise ProtocolFailure(f"an answer of more than {limit} bytes")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the answer: a body not read to its end closes the connection."""
        self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def request_head(method: str, target: str, fields: list[tuple[str, str]]) -> bytes:
    """The request line and header block. Every value is ours or was checked here: a CR
    or LF in one (an ETag from a hostile answer, say) would split the request."""
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in fields:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ProtocolFailure(f"a header {name!r} that would split the request",
                                  sent=False)
        lines.append(f"{name}: {value}")
    if "\r" in target or "\n" in target or " " in target:
        raise ProtocolFailure(f"a request target {target!r} that would split the request",
                              sent=False)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


@dataclass(frozen=True)
class Proxy:
    origin: Origin
    authorization: str | None  # the Proxy-Authorization value, from user:password@


def _proxy_for(origin: Origin) -> Proxy | None:
    """The proxy the environment names for ``origin``, as urllib reads it (so NO_PROXY
    means what it means to botocore); None without one."""
    if not any(name.lower() in _PROXY_VARS for name in os.environ):
        return None
    import urllib.request  # only where a proxy variable is set: it costs an import

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(origin.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not url or bypass(origin.netloc, proxies):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ConnectFailed(f"the proxy {parts.scheme}://{parts.hostname}: only http:// "
                            "proxies are supported")
    authorization = None
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(secret.encode()).decode()
    return Proxy(Origin("http", parts.hostname or "", parts.port or 80), authorization)


class Pool:
    """Keep-alive connections per origin; ``request`` is the one way in."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, max_idle: int,
                 verify: bool | str | None = None, user_agent: str = "") -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._max_idle = max_idle
        self._verify = verify  # False: no check; a path: that CA bundle; None/True: default
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._proxies: dict[Origin, Proxy | None] = {}
        self._user_agent = user_agent
        self._closed = False

    def proxy(self, origin: Origin) -> Proxy | None:
        if origin not in self._proxies:
            self._proxies[origin] = _proxy_for(origin)
        return self._proxies[origin]

    async def request(self, method: str, origin: Origin, target: str,
                      headers: Mapping[str, str], body: bytes | memoryview = b"", *,
                      read_timeout: float | None = None) -> Response:
        """Send one request (``target``: path and query, already encoded) and return
        its answer once the headers are in. ``headers`` must not hold Host, which is
        set here from ``origin``; a body gets its Content-Length here."""
        timeout = read_timeout or self.read_timeout
        proxy = self.proxy(origin)
        through = proxy is not None and origin.scheme == "http"  # absolute-form requests
        key = proxy.origin if through and proxy else origin
        if through:
            target = f"http://{origin.netloc}{target}"
        fields = [("host", origin.netloc)]
        if self._user_agent:
            fields.append(("user-agent", self._user_agent))
        fields.extend((name, value) for name, value in headers.items())
        if body or method in ("PUT", "POST"):
            fields.append(("content-length", str(len(body))))
        if through and proxy and proxy.authorization:
            fields.append(("proxy-authorization", proxy.authorization))
        head = request_head(method, target, fields)
        for _ in range(2):
            connection = self._take(key)
            fresh = connection is None
            if connection is None:
                connection = await self._connect(origin, proxy, key)
            try:
                return await self._exchange(connection, head, body, method, timeout)
            except HTTPFailure as exc:
                connection.close()
                # a pooled connection the server had closed: the request never got there
                if fresh or exc.sent or method not in _IDEMPOTENT:
                    raise
            except BaseException:
                connection.close()
                raise
        raise AssertionError("unreachable")

    async def _exchange(self, connection: _Connection, head: bytes,
                        body: bytes | memoryview, method: str, timeout: float) -> Response:
        protocol = connection.protocol
        reused = connection.used
        connection.used = True
        connection._begin(head=method == "HEAD")
        if len(body) <= _WRITE_SLICE:
            await protocol.write(head + body if body else head)
        else:
            await protocol.write(head)
            view = memoryview(body)
            for start in range(0, len(view), _WRITE_SLICE):
                await protocol.write(view[start:start + _WRITE_SLICE])
        try:
            while not connection.headers_done:
                await connection.receive(timeout)
        except ConnectionLost as exc:
            # nothing came back on a reused connection: the server had closed it idle
            nothing = reused and not connection.received
            raise ConnectionLost(str(exc), sent=not nothing or method not in _IDEMPOTENT) \
                from exc
        return Response(self, connection, timeout)

    def _take(self, key: Origin) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
            connection.close()
        return None

    def give_back(self, connection: _Connection) -> None:
        """A connection whose answer was read to its end: kept for the next request if
        both sides allow it, closed if not."""
        idle = self._idle.setdefault(connection.key, [])
        if self._closed or not connection.reusable or len(idle) >= self._max_idle:
            connection.close()
        else:
            idle.append(connection)

    async def _connect(self, origin: Origin, proxy: Proxy | None, key: Origin) -> _Connection:
        target = proxy.origin if proxy is not None else origin
        where = f"{target.host}:{target.port}"
        try:
            protocol = await asyncio.wait_for(self._open(origin, proxy), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"no connection to {where} within "
                                 f"{self.connect_timeout:g} s") from None
        except HTTPFailure:
            raise
        except OSError as exc:
            if type(exc).__module__ == "ssl":
                raise TLSFailure(f"TLS with {origin.host}: {exc}") from exc
            raise ConnectFailed(f"cannot connect to {where}: {exc.strerror or exc}") from exc
        return _Connection(protocol, key)

    async def _open(self, origin: Origin, proxy: Proxy | None) -> _Protocol:
        loop = asyncio.get_running_loop()
        tls = self._context() if origin.scheme == "https" else None
        if proxy is not None and tls is not None:
            protocol = await self._tunnel(loop, origin, proxy)
            assert protocol.transport is not None  # connected
            transport = await loop.start_tls(protocol.transport, protocol, tls,
                                             server_hostname=origin.host)
            protocol.transport = transport
            return protocol
        target = proxy.origin if proxy is not None else origin
        _, opened = await loop.create_connection(
            _Protocol, target.host, target.port, ssl=tls,
            server_hostname=origin.host if tls else None)
        return opened

    async def _tunnel(self, loop: asyncio.AbstractEventLoop, origin: Origin, proxy: Proxy
                      ) -> _Protocol:
        """A CONNECT tunnel through ``proxy`` to ``origin``."""
        _, protocol = await loop.create_connection(_Protocol, proxy.origin.host,
                                                   proxy.origin.port)
        connection = _Connection(protocol, origin)
        connection._begin(head=True)  # an answer to CONNECT has no body: the tunnel follows
        fields = [("host", f"{origin.host}:{origin.port}")]
        if proxy.authorization:
            fields.append(("proxy-authorization", proxy.authorization))
        await protocol.write(request_head("CONNECT", f"{origin.host}:{origin.port}", fields))
        while not connection.headers_done:
            await connection.receive(self.connect_timeout)
        if connection.status != 200:
            protocol.close()
            raise ConnectFailed(f"the proxy {proxy.origin.netloc} refused a tunnel to "
                                f"{origin.netloc} ({connection.status})")
        return protocol

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import ssl  # only for https: the module and a context cost a bare interpreter

            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                bundle = self._verify if isinstance(self._verify, str) else \
                    os.environ.get("AWS_CA_BUNDLE") or _certifi()
                context = ssl.create_default_context(cafile=bundle)
            self._ssl = context
        return self._ssl

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _certifi() -> str | None:
    """certifi's bundle where installed (as botocore uses it), else the system's."""
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())
