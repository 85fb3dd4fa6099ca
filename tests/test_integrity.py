"""Verified bytes, immutable versions under races, hostile buckets, faults that lose nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from tycho_async.config import load_settings
from tycho_async.errors import AlreadyExists
from tycho_async.layout import PackageMeta
from tycho_async.registry import Registry as Reg
from tycho_async.storage import open_store
from tycho_async.transfer import Engine

from .support import (
    TYCHOREG,
    Registry,
    _env,
    _wait_for,
    free_port,
    make_bucket,
    s3_client,
    write_file,
)

MiB = 1024 * 1024


def test_push_records_the_sha256_and_pull_checks_it(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 3000)
    assert registry.cli("push", "pkg", "1.0", "f.bin", "--promote-latest").exit_code == 0
    record = json.loads(registry.get("pkg/tycho_1.0.meta.json") or b"")
    assert record["sha256"] == hashlib.sha256(blob).hexdigest() and record["size"] == 3000

    ok = registry.cli("verify", "pkg")
    assert ok.exit_code == 0 and "intact" in ok.stdout and "checked sha256" in ok.stdout

    tampered = bytearray(blob)
    tampered[1234] ^= 0xFF
    registry.put("pkg/tycho_1.0.pkg", bytes(tampered))  # same size, other bytes
    pulled = registry.cli("pull", "pkg")
    assert pulled.exit_code == 3
    assert "SHA-256 mismatch" in pulled.stderr and record["sha256"] in pulled.stderr
    assert "pkg/tycho_1.0.pkg" in pulled.stderr
    assert not Path("tycho_packages/f.bin").exists()
    assert not Path("tycho_packages/f.bin.etag").exists()
    assert registry.cli("verify", "pkg", "--version", "1.0").exit_code == 3


def test_tycho_station_versions_are_checked_by_size_and_md5(s3_registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 500)
    client = s3_client(s3_registry.endpoint or "")
    client.put_object(Bucket=s3_registry.root, Key="old/tycho.json",
                      Body=json.dumps({"localname": "f.bin", "latest": "1"}, indent=2))
    client.put_object(Bucket=s3_registry.root, Key="old/tycho_1.pkg", Body=blob)
    result = s3_registry.cli("verify", "old")
    assert result.exit_code == 0 and "checked size and md5" in result.stdout


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1000, 3 * MiB])
async def test_concurrent_pushes_of_one_version_one_wins(race_registry: Registry, size: int,
                                                         tmp_path: Path) -> None:
    registry = race_registry
    blobs = [write_file(tmp_path / f"c{i}.bin", size, seed=i) for i in range(4)]
    settings = load_settings(overrides={"part_size": "5MiB"})
    outcomes: list[object] = [None] * 4

    async def push(i: int) -> None:
        async with open_store(settings.store) as store:
            reg = Reg(Engine(store, settings.transfer), tmp_path / "out")
            try:
                outcomes[i] = await reg.push("pkg", "1.0", tmp_path / f"c{i}.bin", promote=False)
            except AlreadyExists as exc:
                outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(push, i)
    winners = [i for i, o in enumerate(outcomes) if not isinstance(o, AlreadyExists)]
    assert len(winners) == 1, outcomes
    stored = registry.get("pkg/tycho_1.0.pkg")
    assert stored == blobs[winners[0]]
    record = json.loads(registry.get("pkg/tycho_1.0.meta.json") or b"")
    assert record["sha256"] == hashlib.sha256(stored).hexdigest()
    assert registry.multipart_uploads() == []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_concurrent_promotes_lose_no_update(race_registry: Registry,
                                                  tmp_path: Path) -> None:
    registry = race_registry
    write_file(tmp_path / "f.bin", 10)
    registry.put("pkg/tycho.json", json.dumps(
        {"localname": "f.bin", "latest": None, "owner": "team-x"}, indent=2).encode())
    settings = load_settings()
    async with open_store(settings.store) as store:
        reg = Reg(Engine(store, settings.transfer), tmp_path / "out")
        versions = [f"1.{i}" for i in range(20)]
        for version in versions:
            await reg.push("pkg", version, tmp_path / "f.bin", promote=False)

        def add_key(i: int) -> Callable[[PackageMeta], None]:
            def change(meta: PackageMeta) -> None:
                meta.to_json()[f"k{i}"] = i
            return change

        async with anyio.create_task_group() as tg:
            for i, version in enumerate(versions):
                tg.start_soon(reg.promote, "pkg", version)
                tg.start_soon(reg.catalog.update_meta, "pkg", add_key(i))
    final = registry.meta("pkg")
    assert final["latest"] in versions
    assert final["owner"] == "team-x" and final["localname"] == "f.bin"
    assert {f"k{i}": i for i in range(20)}.items() <= final.items()  # no update was lost


@pytest.mark.parametrize("localname", ["../escape.bin", "/etc/owned", "", "a/b", "nul\u0000",
                                       7, None])
def test_hostile_localname_is_refused(registry: Registry, localname: object,
                                      tmp_path: Path) -> None:
    registry.put("evil/tycho.json", json.dumps({"localname": localname, "latest": "1"}).encode())
    registry.put("evil/tycho_1.pkg", b"payload")
    before = sorted(p for p in tmp_path.rglob("*"))
    result = registry.cli("pull", "evil")
    assert result.exit_code == 3, result.output
    assert "evil" in result.stderr and "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("content", "message"), [
    (b"{broken", "not valid JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"localname": "f", "latest": 3}', "'latest' is not a string"),
    (b'{"localname": "f", "latest": "../../x"}', "invalid latest version"),
])
def test_broken_tycho_json_is_a_one_line_error(registry: Registry, content: bytes,
                                               message: str) -> None:
    registry.put("bad/tycho.json", content)
    result = registry.cli("pull", "bad")
    assert result.exit_code == 3
    assert message in result.stderr and "'bad'" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_odd_version_keys_are_ignored(registry: Registry) -> None:
    assert registry.cli("init", "pkg", "f.bin").exit_code == 0
    registry.put("pkg/tycho_1.0.pkg", b"ok")
    registry.put("pkg/tycho_..%2F..%2Fx.pkg", b"odd")
    registry.put("pkg/tycho_a b.pkg", b"odd")
    result = registry.cli("list-versions", "pkg")
    assert result.stdout.split() == ["1.0"]


def test_an_outdir_that_is_a_file_is_a_usage_error(registry: Registry) -> None:
    write_file(Path("f.bin"), 10)
    assert registry.cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    Path("blocker").write_text("a file, not a directory")
    for outdir in ("blocker", "blocker/sub"):
        result = registry.cli("pull", "pkg", "--outdir", outdir)
        assert result.exit_code == 2, result.output
        assert "blocker is not a directory" in result.stderr
    assert Path("blocker").read_text() == "a file, not a directory"
    assert sorted(p.name for p in Path().iterdir()) == [".tychoreg.json", "blocker", "f.bin"]


def test_sigkill_mid_pull_leaves_nothing_taken_as_current(s3_endpoint: str,
                                                          s3_registry: Registry) -> None:
    blob = write_file(Path("big.bin"), 96 * MiB)
    env = _env(s3_endpoint, s3_registry.root)
    push = subprocess.run([TYCHOREG, "push", "big", "1", "big.bin", "--promote-latest", "-q"],
                          env=env, timeout=120, check=False, capture_output=True, text=True)
    assert push.returncode == 0, push.stderr
    out = Path("tycho_packages")
    proc = subprocess.Popen([TYCHOREG, "pull", "big", "--concurrency", "1", "--part-size",
                             "5MiB"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: out.exists() and any(p.name.endswith(".part") for p in out.iterdir()))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not (out / "big.bin").exists() and not (out / "big.bin.etag").exists()
    again = subprocess.run([TYCHOREG, "pull", "big", "-q"], env=env, timeout=120,
                           check=False, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (out / "big.bin").read_bytes() == blob
    assert sorted(p.name for p in out.iterdir()) == ["big.bin", "big.bin.etag"]


def test_the_record_object_backs_a_lost_tycho_json_copy(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 2000)
    assert registry.cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    assert registry.cli("push", "pkg", "2", "f.bin").exit_code == 0
    meta = registry.meta("pkg")
    del meta["tychoreg"]["records"]["1"]  # as a racing tycho-station rewrite might lose it
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    tampered = bytes([blob[0] ^ 1]) + blob[1:]
    registry.put("pkg/tycho_1.pkg", tampered)
    result = registry.cli("pull", "pkg")
    assert result.exit_code == 3 and "SHA-256 mismatch" in result.stderr

    del meta["tychoreg"]  # no section at all: pull trusts size (and MD5), verify does not
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    checked = registry.cli("verify", "pkg")
    assert checked.exit_code == 3 and "SHA-256 mismatch" in checked.stderr


def _limit_file_size() -> None:
    """In the child: files may not grow past 1 MiB, as on a full disk (EFBIG, not ENOSPC,
    but the same failed write)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))


def test_a_disk_that_refuses_writes_fails_cleanly(s3_endpoint: str,
                                                  s3_registry: Registry) -> None:
    write_file(Path("big.bin"), 6 * MiB)
    env = _env(s3_endpoint, s3_registry.root)
    assert subprocess.run([TYCHOREG, "push", "big", "1", "big.bin", "--promote-latest", "-q"],
                          env=env, timeout=120, check=False).returncode == 0
    result = subprocess.run([TYCHOREG, "pull", "big"], env=env, timeout=120, check=False,
                            capture_output=True, text=True, preexec_fn=_limit_file_size)
    assert result.returncode == 3, result.stderr
    assert "cannot write" in result.stderr and "File too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path("tycho_packages").exists()  # the outdir this pull created is gone too


def test_the_server_dying_mid_pull_fails_cleanly(isolated_env: Path) -> None:
    """A moto server in a process of its own, killed while a real pull runs."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom moto.server import ThreadedMotoServer\n"
         f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start()\n"
         "print('up', flush=True)\ntime.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        endpoint = f"http://127.0.0.1:{port}"
        bucket = make_bucket(endpoint)
        env = _env(endpoint, bucket)
        write_file(Path("big.bin"), 48 * MiB)
        assert subprocess.run([TYCHOREG, "push", "big", "1", "big.bin", "--promote-latest",
                               "-q"], env=env, timeout=120, check=False).returncode == 0
        out = Path("tycho_packages")
        pull = subprocess.Popen([TYCHOREG, "pull", "big", "--concurrency", "1"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: out.exists() and any(p.name.endswith(".part") for p in out.iterdir()))
        server.kill()
        _, err = pull.communicate(timeout=60)
    finally:
        server.kill()
    assert pull.returncode == 3, err
    assert f"connection to {endpoint} failed" in err and "Traceback" not in err
    assert not out.exists()
