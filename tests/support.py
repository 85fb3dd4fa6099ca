"""Helpers the test modules share (conftest.py keeps the fixtures): the registry under
test with raw access to what it stores, files, trees and versions put there by hand as
tychoreg or tycho-station leaves them, stores opened directly, the real executable, and a
push whose input the test holds back."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import socket
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import boto3
import pytest
import zstandard
from typer.testing import CliRunner, Result

from tycho_async import processes
from tycho_async.cli import app
from tycho_async.layout import PROOF, expectation
from tycho_async.storage import LocalOptions, ObjectInfo, S3Options, Store, StoreOptions, open_store
from tycho_async.transfer import Expected, TransferSettings

from .trees import Member, hand_tar, member, set_mtimes

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from tycho_async.registry import Registry as Reg
    from tycho_async.results import PushResult

MiB = 1024 * 1024
REGION = "us-east-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDS)


_new_client = s3_client


@functools.cache
def raw_client(endpoint: str) -> Any:
    """One boto3 client per endpoint (they are thread-safe), for tests of many raw calls."""
    return _new_client(endpoint)


# -- the registry under test -------------------------------------------------------------------


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


async def by_etag(info: ObjectInfo) -> Expected:
    """What a pull checks a version with no record against (layout's policy)."""
    return expectation(None, info)


def write_file(path: Path, size: int, seed: int = 0) -> bytes:
    """Write ``size`` pseudo-random bytes (distinct per seed) and return them."""
    blob = random.Random(seed).randbytes(size)
    path.write_bytes(blob)
    return blob


def ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def s3_head(registry: Registry, key: str) -> dict[str, Any]:
    return dict(raw_client(registry.endpoint or "").head_object(Bucket=registry.root, Key=key))


def remove_object(registry: Registry, key: str) -> None:
    if registry.kind == "s3":
        raw_client(registry.endpoint or "").delete_object(Bucket=registry.root, Key=key)
    else:
        Path(registry.root, key).unlink()


def versions_stored(registry: Registry, package: str) -> list[str]:
    head = f"{package}/tycho_"
    return sorted(k[len(head):-len(".pkg")] for k in registry.object_keys()
                  if k.startswith(head) and k.endswith(".pkg"))


# -- versions put there by hand ------------------------------------------------------------------


def _pushed(registry: Registry, size: int = 3000, name: str = "f.bin") -> bytes:
    blob = write_file(Path(name), size)
    result = registry.cli("push", "pkg", "1.0", name, "--promote-latest")
    assert result.exit_code == 0, result.output
    return blob


def dead_holder() -> dict[str, Any]:
    """A holder on this machine that no longer runs: this PID with another start time
    (as when the holder died and its PID was reused)."""
    here = processes.this_process()
    assert here is not None, "the tests run on Linux, with /proc"
    return {**here.to_json(), "start": here.start + 1}


OLD = "2020-01-01T00:00:00+00:00"


def _pending(started_at: str, localname: str = "f.bin") -> bytes:
    """A pending record; an OLD one names a holder of this machine that is gone (this
    PID with another start time: the PID was reused), so it is abandoned at once."""
    holder = dead_holder() if started_at == OLD else None
    return json.dumps({"state": "pending", "tool": "tychoreg test", "started_at": started_at,
                       "localname": localname,
                       **({"holder": holder} if holder else {})}).encode()


def put_version(registry: Registry, package: str, version: str, data: bytes, *,
                latest: bool = False) -> None:
    """A version as a tychoreg push leaves it (object, record, its copy in tycho.json),
    stored directly: the tests of deletion need versions, not pushes."""
    record = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
              "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "tool": "tychoreg 0.1.0", "localname": f"{package}.bin"}
    raw = registry.get(f"{package}/tycho.json")
    meta: dict[str, Any] = json.loads(raw) if raw else {"localname": f"{package}.bin",
                                                         "latest": None}
    meta.setdefault("tychoreg", {}).setdefault("records", {})[version] = record
    if latest:
        meta["latest"] = version
    registry.put(f"{package}/tycho_{version}.pkg", data)
    registry.put(f"{package}/tycho_{version}.meta.json", json.dumps(record, indent=2).encode())
    registry.put(f"{package}/tycho.json", json.dumps(meta, indent=2).encode())


def put_station(registry: Registry, package: str, versions: dict[str, bytes],
                latest: str | None = None, localname: str | None = None) -> None:
    """A package as tycho-station leaves it: tycho.json without our section, and .pkg
    objects without records, each written with one PUT (its ETag is the MD5)."""
    meta = {"localname": localname or f"{package}.bin", "latest": latest}
    registry.put(f"{package}/tycho.json", json.dumps(meta, indent=2).encode())
    for version, data in versions.items():
        registry.put(f"{package}/tycho_{version}.pkg", data)


# -- directory packages --------------------------------------------------------------------------

UNICODE = "Grüße-日本-é.txt"


def make_tree(root: Path, *, big: int = 0, reverse: bool = False, seed: int = 0) -> Path:
    """A tree with what a round trip must keep: nested and empty directories, an empty
    file, a unicode name, an executable and a read-only file, relative and absolute
    symlinks (one leaving the tree), a hard link inside and, with ``big``, a file of that
    many random bytes. ``reverse`` creates the same tree in another order."""
    blob = random.Random(seed).randbytes(big)
    steps: list[Callable[[], object]] = [
        lambda: (root / "a" / "b").mkdir(parents=True),
        lambda: (root / "empty-dir" / "nested-empty").mkdir(parents=True),
        lambda: (root / "empty-file").write_bytes(b""),
        lambda: (root / "a" / "text.txt").write_text(f"hello {seed}\n"),
        lambda: (root / UNICODE).write_text("unicode\n"),
        lambda: (root / "run.sh").write_text("#!/bin/sh\necho hi\n"),
        lambda: os.chmod(root / "run.sh", 0o755),
        lambda: (root / "ro.txt").write_text("read only\n"),
        lambda: os.chmod(root / "ro.txt", 0o444),
        lambda: os.symlink("../text.txt", root / "a" / "b" / "rel-link"),
        lambda: os.symlink("/usr/bin/env", root / "abs-link"),
        lambda: os.symlink("../../somewhere/else", root / "a" / "escaping-link"),
        lambda: os.link(root / "a" / "text.txt", root / "a" / "hard"),
        lambda: (root / "big.bin").write_bytes(blob) if big else None,
    ]
    root.mkdir(parents=True)
    if reverse:  # dependencies first, everything else the other way round
        order = [0, 3, 12, 11, 10, 9, 13, 7, 8, 5, 6, 4, 2, 1]
        assert sorted(order) == list(range(len(steps)))
        steps = [steps[i] for i in order]
    for step in steps:
        step()
    set_mtimes(root)
    return root


def listing(path: Path) -> list[str]:
    """The names in a directory, hidden ones included ([] if it does not exist)."""
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def put_archive(registry: Registry, package: str, version: str, tar: bytes) -> bytes:
    """Store a hand-made .tar.zst as a directory package whose record is right for these
    very bytes (so only the extractor stands between them and the disk)."""
    data = zstandard.ZstdCompressor(write_checksum=True).compress(tar)
    record = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
              "pushed_at": "2024-01-01T00:00:00+00:00", "tool": "tychoreg 0.1.0",
              "localname": f"{package}.tar.zst", "format": "tar+zstd",
              "tree_sha256": hashlib.sha256(tar).hexdigest()}
    meta = {"localname": f"{package}.tar.zst", "latest": version,
            "tychoreg": {"records": {version: record}}}
    registry.put(f"{package}/tycho_{version}.pkg", data)
    registry.put(f"{package}/tycho_{version}.meta.json", json.dumps(record, indent=2).encode())
    registry.put(f"{package}/tycho.json", json.dumps(meta, indent=2).encode())
    return data


def tree_tar(files: dict[str, bytes]) -> bytes:
    """A plain archive of ``files`` (their directories first)."""
    members: list[Member] = []
    dirs = sorted({"/".join(name.split("/")[:i]) for name in files
                   for i in range(1, name.count("/") + 1)})
    members += [member(d, tarfile.DIRTYPE, mode=0o755) for d in dirs]
    members += [member(name, data=data) for name, data in sorted(files.items())]
    return hand_tar(members)


def contents(root: Path) -> dict[str, bytes]:
    """The files below ``root`` and their bytes (the proof of a pull left out)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and p != root / PROOF}


ONE = {"a/text.txt": b"version one\n", "top.txt": b"top\n"}
TWO = {"a/text.txt": b"version two\n", "b/new.txt": b"new\n"}


# -- stores opened directly, with parts far below S3's minimum to stay fast ---------------------

PART = 64 * 1024
SMALL = TransferSettings(concurrency=4, part_size=PART, multipart_threshold=PART,
                         chunk_size=16 * 1024, min_part_size=1, backoff_base=0.001,
                         backoff_max=0.002, small_object=1024)


@contextlib.asynccontextmanager
async def opened(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                 settings: TransferSettings = SMALL) -> AsyncIterator[tuple[Store, str]]:
    """A store of ``kind`` and the bucket (or root) behind it."""
    options: StoreOptions
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = make_bucket(endpoint)
        options = S3Options(bucket, client_kwargs={"endpoint_url": endpoint,
                                                   "region_name": REGION, **CREDS},
                            max_connections=settings.concurrency + 2,
                            chunk_size=settings.chunk_size)
        where = bucket
    else:
        where = str(tmp_path / "registry")
        options = LocalOptions(Path(where))
    async with open_store(options) as store:
        yield store, where


@dataclass
class StalledPush:
    """A push reading from a pipe that only the test writes to: it stalls whenever the
    test holds its input back, and its input ends when the pipe closes."""

    write_fd: int
    group: TaskGroup
    outcome: list[PushResult] = field(default_factory=list)

    async def feed(self, data: bytes) -> None:
        """Write ``data`` into the push's input (in a thread: a full pipe blocks)."""
        await anyio.to_thread.run_sync(os.write, self.write_fd, data)

    def cancel(self) -> None:
        """Cancel the push (its blocked read ends as the pipe closes)."""
        self.group.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def stalled_push(registry: Reg, package: str, version: str, first: bytes, *,
                       localname: str) -> AsyncIterator[StalledPush]:
    """Start ``registry.push`` of a stream whose first bytes are ``first``, then hand the
    pipe to the test; the pipe closes on the way out, so the push ends either way."""
    read_fd, write_fd = os.pipe()

    async def push(pipe: StalledPush) -> None:
        with os.fdopen(read_fd, "rb") as stream:
            pipe.outcome.append(await registry.push(package, version, stream,
                                                    promote=False, localname=localname))

    async with anyio.create_task_group() as group:
        pipe = StalledPush(write_fd, group)
        group.start_soon(push, pipe)
        try:
            await pipe.feed(first)
            yield pipe
        finally:
            os.close(write_fd)


# -- the real executable -------------------------------------------------------------------------

TYCHOREG = str(Path(sys.executable).with_name("tychoreg"))


def _env(endpoint: str, bucket: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TYCHOREG_REGISTRY": f"s3://{bucket}", "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION})
    return env


def _wait_for(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    pytest.fail("condition not reached in time")
