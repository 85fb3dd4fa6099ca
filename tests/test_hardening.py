"""What a hostile or unlucky environment does to a command: special files in the way,
signals, closed pipes, half-made versions, typos, odd disks. Every test here failed
before the hardening it checks."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from tycho_async.errors import TransferError
from tycho_async.localfs import LocalFS
from tycho_async.registry import Registry as Reg
from tycho_async.results import PullRequest
from tycho_async.transfer import Engine, Expected

from .faults import FaultyStore
from .support import (
    SMALL,
    TYCHOREG,
    Registry,
    _env,
    _wait_for,
    by_etag,
    dead_holder,
    make_bucket,
    opened,
    s3_client,
    write_file,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SupportsLenAndGetItem

MiB = 1024 * 1024


def _pushed(registry: Registry, size: int = 3000, name: str = "f.bin") -> bytes:
    blob = write_file(Path(name), size)
    result = registry.cli("push", "pkg", "1.0", name, "--promote-latest")
    assert result.exit_code == 0, result.output
    return blob


# -- 1. special files at the destination --------------------------------------------------


def test_outfile_dash_writes_standard_output_and_creates_nothing(registry: Registry) -> None:
    blob = _pushed(registry)
    result = registry.cli("pull", "pkg", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == blob
    assert not Path("-").exists() and not Path("-.etag").exists()


def test_outfile_through_a_symlink_replaces_the_target_and_keeps_the_link(
        registry: Registry) -> None:
    blob = _pushed(registry)
    Path("real").mkdir()
    Path("real/target.bin").write_bytes(b"old")
    Path("link.bin").symlink_to("real/target.bin")
    result = registry.cli("pull", "pkg", "-o", "link.bin")
    assert result.exit_code == 0, result.output
    assert Path("link.bin").is_symlink() and os.readlink("link.bin") == "real/target.bin"
    assert Path("real/target.bin").read_bytes() == blob
    assert Path("link.bin.etag").is_file()  # beside the named path
    assert sorted(p.name for p in Path("real").iterdir()) == ["target.bin"]
    again = registry.cli("pull", "pkg", "-o", "link.bin")
    assert again.exit_code == 0 and "up to date" in again.stdout


def test_a_localname_symlink_leaving_outdir_is_refused(registry: Registry) -> None:
    _pushed(registry)
    Path("tycho_packages").mkdir()
    Path("precious").write_bytes(b"keep me")
    Path("tycho_packages/f.bin").symlink_to(Path("precious").absolute())
    result = registry.cli("pull", "pkg")
    assert result.exit_code == 2 and "outside" in result.stderr
    assert Path("precious").read_bytes() == b"keep me"
    assert sorted(p.name for p in Path("tycho_packages").iterdir()) == ["f.bin"]


def test_a_localname_symlink_inside_outdir_is_followed(registry: Registry) -> None:
    blob = _pushed(registry)
    Path("tycho_packages/store").mkdir(parents=True)
    Path("tycho_packages/f.bin").symlink_to("store/f.bin")
    result = registry.cli("pull", "pkg")
    assert result.exit_code == 0, result.output
    assert Path("tycho_packages/store/f.bin").read_bytes() == blob
    assert Path("tycho_packages/f.bin").is_symlink()


def _drain(path: Path, into: list[bytes]) -> threading.Thread:
    def read() -> None:
        with path.open("rb") as f:
            into.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("size", [0, 3000, 2 * MiB + 5])
def test_a_fifo_is_written_in_place_in_order(registry: Registry, size: int) -> None:
    blob = _pushed(registry, size)
    fifo = Path("pipe")
    os.mkfifo(fifo)
    for _ in range(2):  # no sidecar, so no up-to-date skip: both pulls write
        got: list[bytes] = []
        reader = _drain(fifo, got)
        result = registry.cli("pull", "pkg", "-o", "pipe")
        reader.join(timeout=30)
        assert result.exit_code == 0, result.output
        assert got == [blob]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not Path("pipe.etag").exists()
    assert sorted(p.name for p in Path().iterdir()) == [".tychoreg.json", "f.bin", "pipe"]


def test_a_fifo_gets_the_bytes_then_a_failed_check(registry: Registry) -> None:
    _pushed(registry)
    registry.put("pkg/tycho_1.0.pkg", b"x" * 3000)  # same size, other bytes
    os.mkfifo("pipe")
    got: list[bytes] = []
    reader = _drain(Path("pipe"), got)
    result = registry.cli("pull", "pkg", "-o", "pipe")
    reader.join(timeout=30)
    assert result.exit_code == 3 and "SHA-256 mismatch" in result.stderr
    assert got == [b"x" * 3000]


def test_a_character_device_is_written_in_place(registry: Registry) -> None:
    _pushed(registry)
    try:
        os.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot make a device node here (not root)")
    result = registry.cli("pull", "pkg", "-o", "null")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(Path("null").stat().st_mode)
    assert not Path("null.etag").exists()


def test_a_socket_or_directory_is_refused(registry: Registry) -> None:
    _pushed(registry)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        result = registry.cli("pull", "pkg", "-o", "sock")
        assert result.exit_code == 2 and "is a socket" in result.stderr
        assert stat.S_ISSOCK(Path("sock").stat().st_mode)
    Path("adir").mkdir()
    result = registry.cli("pull", "pkg", "-o", "adir")
    assert result.exit_code == 2 and "is a directory" in result.stderr
    assert list(Path("adir").iterdir()) == []


# -- 2. signals -----------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])
def test_a_signal_during_pull_cleans_up(s3_endpoint: str, signum: int, code: int) -> None:
    bucket = make_bucket(s3_endpoint)
    env = _env(s3_endpoint, bucket)
    write_file(Path("big.bin"), 40 * MiB)
    assert subprocess.run([TYCHOREG, "push", "big", "1", "big.bin", "--promote-latest", "-q"],
                          env=env, timeout=120, check=False).returncode == 0
    out = Path("tycho_packages")
    proc = subprocess.Popen([TYCHOREG, "pull", "big", "--concurrency", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: out.exists() and any(p.name.endswith(".part")
                                               and p.stat().st_size for p in out.iterdir()))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert signal.Signals(signum).name in err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])
def test_a_signal_during_push_aborts_the_upload(s3_endpoint: str, signum: int,
                                                code: int) -> None:
    bucket = make_bucket(s3_endpoint)
    write_file(Path("big.bin"), 60 * MiB)
    client = s3_client(s3_endpoint)
    proc = subprocess.Popen([TYCHOREG, "push", "big", "1.0", "big.bin", "--concurrency", "1",
                             "--part-size", "5MiB"], env=_env(s3_endpoint, bucket),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: client.list_multipart_uploads(Bucket=bucket).get("Uploads"))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"interrupted by {signal.Signals(signum).name}" in err
    assert "interrupted: pushed 0 files" in err and "failed" not in err  # cut, not failed
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # no pending record


def test_a_signal_between_publish_and_record_leaves_a_recorded_version(
        s3_endpoint: str) -> None:
    """SIGTERM sent when the request that publishes the object goes out: the push
    records the version (and reports it) before it exits."""
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("big.bin"), 12 * MiB)
    env = _env(s3_endpoint, bucket)
    proc = subprocess.Popen([TYCHOREG, "--debug", "push", "big", "1.0", "big.bin",
                             "--promote-latest", "--part-size", "5MiB"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # bounded: the process ends, and so does its stderr
            if "CompleteMultipartUpload" in line:
                proc.send_signal(signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]  # the publication was under way: it finished
    assert "pushed big 1.0" in out
    client = s3_client(s3_endpoint)
    record = json.loads(client.get_object(Bucket=bucket, Key="big/tycho_1.0.meta.json")[
        "Body"].read())
    assert record["sha256"] == hashlib.sha256(blob).hexdigest()
    meta = json.loads(client.get_object(Bucket=bucket, Key="big/tycho.json")["Body"].read())
    assert meta["latest"] == "1.0" and meta["tychoreg"]["records"]["1.0"] == record
    pulled = subprocess.run([TYCHOREG, "pull", "big"], env=env, timeout=60, check=False,
                            capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    assert Path("tycho_packages/big.bin").read_bytes() == blob


# -- 3. closed pipes ------------------------------------------------------------------------


def test_a_closed_stdout_ends_quietly_with_141(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    for i in range(40):
        client.put_object(Bucket=bucket, Key=f"p{i}/tycho.json",
                          Body=json.dumps({"localname": "x", "latest": None}))
    proc = subprocess.Popen([TYCHOREG, "list"], env=_env(s3_endpoint, bucket),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # as `| head` does once it has its lines
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert err == b""


def test_a_closed_stderr_never_aborts_a_push(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("big.bin"), 12 * MiB)
    env = _env(s3_endpoint, bucket)
    proc = subprocess.Popen([TYCHOREG, "--debug", "push", "big", "1.0", "big.bin",
                             "--promote-latest", "--part-size", "5MiB", "--progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    proc.stderr.close()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"pushed big 1.0" in out
    meta = json.loads(s3_client(s3_endpoint).get_object(Bucket=bucket, Key="big/tycho.json")[
        "Body"].read())
    assert meta["latest"] == "1.0"
    assert meta["tychoreg"]["records"]["1.0"]["sha256"] == hashlib.sha256(blob).hexdigest()


# -- 4. versions cut short ------------------------------------------------------------------


OLD = "2020-01-01T00:00:00+00:00"


def _pending(started_at: str, localname: str = "f.bin") -> bytes:
    """A pending record; an OLD one names a holder of this machine that is gone (this
    PID with another start time: the PID was reused), so it is abandoned at once."""
    holder = dead_holder() if started_at == OLD else None
    return json.dumps({"state": "pending", "tool": "tychoreg test", "started_at": started_at,
                       "localname": localname,
                       **({"holder": holder} if holder else {})}).encode()


def test_a_version_whose_record_is_pending_is_never_pulled(registry: Registry) -> None:
    _pushed(registry)
    write_file(Path("g.bin"), 5000, seed=3)
    registry.put("pkg/tycho_2.0.pkg", Path("g.bin").read_bytes())
    registry.put("pkg/tycho_2.0.meta.json", _pending(OLD))
    result = registry.cli("pull", "pkg", "--version", "2.0")
    assert result.exit_code == 3 and "cut short" in result.stderr and "--repair" in result.stderr
    assert not Path("tycho_packages").exists()
    assert registry.cli("exists", "pkg", "2.0").exit_code == 1
    assert registry.cli("promote", "pkg", "2.0").exit_code == 3
    again = registry.cli("push", "pkg", "2.0", "g.bin")
    assert again.exit_code == 1 and "--repair" in again.stderr


def test_repair_completes_a_push_cut_short_after_its_upload(registry: Registry) -> None:
    _pushed(registry)
    blob = write_file(Path("g.bin"), 5000, seed=3)
    registry.put("pkg/tycho_2.0.pkg", blob)
    registry.put("pkg/tycho_2.0.meta.json", _pending(OLD))
    repaired = registry.cli("verify", "pkg", "--version", "2.0", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "completed a push" in repaired.stdout
    record = json.loads(registry.get("pkg/tycho_2.0.meta.json") or b"")
    assert record["sha256"] == hashlib.sha256(blob).hexdigest() and "state" not in record
    assert registry.meta("pkg")["tychoreg"]["records"]["2.0"] == record
    pulled = registry.cli("pull", "pkg", "--version", "2.0", "-o", "out.bin")
    assert pulled.exit_code == 0 and Path("out.bin").read_bytes() == blob


def test_repair_creates_tycho_json_for_a_new_package_cut_short(registry: Registry) -> None:
    blob = write_file(Path("g.bin"), 5000, seed=3)
    registry.put("new/tycho_1.0.pkg", blob)
    registry.put("new/tycho_1.0.meta.json", _pending(OLD, "g.bin"))
    repaired = registry.cli("verify", "new", "--version", "1.0", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert registry.meta("new")["localname"] == "g.bin"
    assert registry.cli("pull", "new", "--version", "1.0").exit_code == 0
    assert Path("tycho_packages/g.bin").read_bytes() == blob


def test_a_dead_push_is_taken_over_and_a_live_one_refused(registry: Registry) -> None:
    _pushed(registry)
    blob = write_file(Path("g.bin"), 5000, seed=3)
    registry.put("pkg/tycho_2.0.meta.json", _pending(OLD))  # no object: died before upload
    taken = registry.cli("push", "pkg", "2.0", "g.bin")
    assert taken.exit_code == 0, taken.output
    assert registry.get("pkg/tycho_2.0.pkg") == blob
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    registry.put("pkg/tycho_3.0.meta.json", _pending(now))
    busy = registry.cli("push", "pkg", "3.0", "g.bin")
    assert busy.exit_code == 1 and "being pushed" in busy.stderr
    assert registry.get("pkg/tycho_3.0.pkg") is None
    cleared = registry.cli("verify", "pkg", "--version", "3.0", "--repair")
    assert cleared.exit_code == 1 and "being pushed" in cleared.stderr
    registry.put("pkg/tycho_3.0.meta.json", _pending(OLD))
    cleared = registry.cli("verify", "pkg", "--version", "3.0", "--repair")
    assert cleared.exit_code == 1 and "cleared the record" in cleared.stderr
    assert registry.get("pkg/tycho_3.0.meta.json") is None


@pytest.mark.anyio
async def test_a_failed_upload_leaves_no_pending_record(tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    from tycho_async.errors import StoreError

    write_file(tmp_path / "f.bin", 300_000)
    async with opened("s3", tmp_path, request) as (store, _):
        faulty = FaultyStore(store)
        reg = Reg(Engine(faulty, SMALL), tmp_path / "out")
        faulty.inject("upload_part", None, StoreError("access denied"))
        with pytest.raises(StoreError, match="access denied"):
            await reg.push("pkg", "1.0", tmp_path / "f.bin", promote=True)
        assert [info.key async for info in store.list_keys("")] == []
        assert await reg.exists("pkg", "1.0") is False
        await reg.push("pkg", "1.0", tmp_path / "f.bin", promote=True)  # free again
        assert await reg.exists("pkg", "1.0") is True


# -- 5. stores that ignore conditional writes (look before leap) ---------------------------


def test_init_twice_looks_before_it_leaps(registry: Registry) -> None:
    assert registry.cli("init", "pkg", "x.bin").exit_code == 0
    registry.put("pkg/tycho.json", json.dumps({"localname": "x.bin", "latest": "9",
                                               "mine": 1}).encode())
    again = registry.cli("init", "pkg", "y.bin")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert registry.meta("pkg") == {"localname": "x.bin", "latest": "9", "mine": 1}


def test_info_probe_says_conditional_writes_are_honoured(registry: Registry) -> None:
    result = registry.cli("info", "--probe", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["conditional_writes"] == "honoured"
    assert registry.object_keys() == []


# -- 7. I/O error paths -----------------------------------------------------------------------


def short_writes() -> LocalFS:
    """A disk that takes at most 1000 bytes a write, as pwrite may."""
    fs = LocalFS()

    def short_pwrite(fd: int, data: ReadableBuffer, offset: int) -> int:
        return os.pwrite(fd, memoryview(data)[:1000], offset)

    def short_pwritev(fd: int, chunks: SupportsLenAndGetItem[ReadableBuffer], offset: int,
                      flags: int = 0) -> int:
        return os.pwrite(fd, memoryview(chunks[0])[:1000], offset)

    fs.sys_pwrite = short_pwrite
    fs.sys_pwritev = short_pwritev
    return fs


def failing_disk(*, write: bool = False, read: bool = False) -> LocalFS:
    """A disk whose writes take nothing, or whose reads fail with EIO."""
    fs = LocalFS()

    def no_read(fd: int, size: int, offset: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def no_pwrite(fd: int, data: ReadableBuffer, offset: int) -> int:
        return 0

    def no_pwritev(fd: int, chunks: SupportsLenAndGetItem[ReadableBuffer], offset: int,
                   flags: int = 0) -> int:
        return 0

    if write:
        fs.sys_pwrite = no_pwrite
        fs.sys_pwritev = no_pwritev
    if read:
        fs.sys_pread = no_read
    return fs


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_short_writes_are_continued(kind: str, tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    blob = write_file(tmp_path / "src.bin", 300_000)
    async with opened(kind, tmp_path, request) as (store, _):
        engine = Engine(store, SMALL, fs=short_writes())
        result = await engine.upload_file(tmp_path / "src.bin", "k", label="k")
        info, _ = await engine.download("k", tmp_path / "dst.bin", label="k",
                                          expected=Expected(len(blob), sha256=result.sha256))
        assert (tmp_path / "dst.bin").read_bytes() == blob and info.size == len(blob)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_disk_that_takes_nothing_or_cannot_read_fails_cleanly(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    write_file(tmp_path / "src.bin", 300_000)
    async with opened(kind, tmp_path, request) as (store, _):
        await Engine(store, SMALL).upload_file(tmp_path / "src.bin", "k", label="k")
        (tmp_path / "out").mkdir()
        with pytest.raises(TransferError, match="cannot write the download: the disk"):
            await Engine(store, SMALL, fs=failing_disk(write=True)).download(
                "k", tmp_path / "out" / "dst.bin", label="k", expected=by_etag)
        with pytest.raises(TransferError, match="cannot read the file: Input/output error"):
            await Engine(store, SMALL, fs=failing_disk(read=True)).upload_file(
                tmp_path / "src.bin", "k2", label="k2")
        with pytest.raises(TransferError, match="cannot read the download: Input/output"):
            await Engine(store, SMALL, fs=failing_disk(read=True)).download(
                "k", tmp_path / "out" / "dst.bin", label="k", expected=by_etag)
        assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.anyio
async def test_tycho_json_that_keeps_changing_is_a_transfer_failure(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tycho_async.errors import PreconditionFailed

    async with opened("local", tmp_path, request) as (store, _):
        faulty = FaultyStore(store)
        reg = Reg(Engine(faulty, SMALL), tmp_path / "out")
        await reg.init("pkg", "x.bin")
        await store.put_bytes("pkg/tycho_1.pkg", b"x")
        faulty.inject("put_bytes", *[PreconditionFailed("lost the race")] * 20)
        with pytest.raises(TransferError, match="kept changing") as caught:
            await reg.promote("pkg", "1")
        assert caught.value.exit_code == 3


@pytest.mark.anyio
async def test_an_error_inside_an_empty_objects_range_has_no_hidden_cause(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with opened("s3", tmp_path, request) as (store, _):
        await store.put_bytes("empty", b"")
        with pytest.raises(ValueError) as caught:
            async with store.open_range("empty", 0, 100) as body:
                assert body.info.size == 0 and [c async for c in body.chunks] == []
                raise ValueError("the caller's own error")
        assert caught.value.__context__ is None


# -- 8. typos -------------------------------------------------------------------------------


def test_a_typod_local_registry_is_exit_2_and_a_push_says_it_creates_one(
        isolated_env: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tycho_async.cli import app

    runner = CliRunner()
    typo = str(tmp_path / "typo" / "dir")
    for args in (["list"], ["exists", "pkg", "1"], ["pull", "pkg"], ["list-versions", "pkg"],
                 ["promote", "pkg", "1"]):
        result = runner.invoke(app, [*args, "--registry", typo])
        assert result.exit_code == 2, (args, result.output)
        assert typo in result.stderr and "does not exist" in result.stderr
    assert not Path(typo).exists()
    write_file(Path("f.bin"), 10)
    pushed = runner.invoke(app, ["push", "pkg", "1", "f.bin", "--registry", typo])
    assert pushed.exit_code == 0, pushed.output
    assert f"created a new local registry at {typo}" in pushed.stderr
    assert runner.invoke(app, ["exists", "pkg", "1", "--registry", typo]).exit_code == 0


def test_the_default_registry_is_simply_empty_before_its_first_push(
        isolated_env: Path) -> None:
    from typer.testing import CliRunner

    from tycho_async.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and listed.stdout == ""
    assert runner.invoke(app, ["exists", "pkg", "1"]).exit_code == 1
    assert runner.invoke(app, ["pull", "pkg"]).exit_code == 1


def test_a_missing_bucket_is_exit_2(s3_endpoint: str, isolated_env: Path) -> None:
    env = _env(s3_endpoint, "no-such-bucket-here")
    write_file(Path("f.bin"), 10)
    for args in (["list"], ["exists", "pkg", "1"], ["pull", "pkg"], ["push", "pkg", "1", "f.bin"]):
        result = subprocess.run([TYCHOREG, *args], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "no-such-bucket-here" in result.stderr and "does not exist" in result.stderr


def test_unknown_config_keys_warn_with_the_closest_one(registry: Registry) -> None:
    registry.write_config(outdri="elsewhere")
    result = registry.cli("list")
    assert result.exit_code == 0
    assert "unknown key 'outdri'" in result.stderr and "did you mean 'outdir'" in result.stderr


def test_info_shows_an_unset_credential_variable(s3_registry: Registry) -> None:
    config = s3_registry.config()
    config["s3"]["aws_access_key_id"] = {"env": "REG_WRITE_KEY"}
    Path(".tychoreg.json").write_text(json.dumps(config))
    result = s3_registry.cli("info")
    assert result.exit_code == 0, result.output
    assert "REG_WRITE_KEY is not set" in result.stdout
    assert s3_registry.endpoint is not None and s3_registry.endpoint in result.stdout
    assert s3_registry.cli("list").exit_code == 2  # every other command still refuses


def test_a_failed_pull_leaves_no_fresh_outdir(registry: Registry) -> None:
    _pushed(registry)
    registry.put("pkg/tycho_1.0.pkg", b"y" * 3000)
    result = registry.cli("pull", "pkg", "--outdir", "fresh/deeper")
    assert result.exit_code == 3
    assert not Path("fresh").exists()
    listed = registry.cli("pull-list", "pkg", "--outdir", "fresh2")
    assert listed.exit_code == 3 and not Path("fresh2").exists()


# -- 9. tycho-station's `latest` --------------------------------------------------------------


def test_version_latest_means_the_latest(registry: Registry) -> None:
    blob = _pushed(registry)
    result = registry.cli("pull", "pkg", "--version", "latest")
    assert result.exit_code == 0, result.output
    assert Path("tycho_packages/f.bin").read_bytes() == blob
    listed = registry.cli("pull-list", "pkg==latest", "--force")
    assert listed.exit_code == 0 and "pulled pkg 1.0" in listed.stdout
    assert registry.cli("verify", "pkg", "--version", "latest").exit_code == 0
    refused = registry.cli("push", "pkg", "latest", "f.bin")
    assert refused.exit_code == 2 and "latest" in refused.stderr


# -- 10. progress -----------------------------------------------------------------------------


def test_results_go_to_stdout_only(registry: Registry) -> None:
    write_file(Path("f.bin"), 3000)
    pushed = registry.cli("push", "pkg", "1.0", "f.bin", "--promote-latest", "--no-progress")
    assert pushed.stderr == "" and "pushed pkg 1.0 (2.9 KiB, sha256 " in pushed.stdout
    pulled = registry.cli("pull", "pkg", "--no-progress")
    assert pulled.stderr == "" and "(2.9 KiB)" in pulled.stdout


def test_plain_progress_prints_a_line_after_10_s_then_every_10_s() -> None:
    import io

    from tycho_async.progress import PlainProgress

    now = [0.0]
    stream = io.StringIO()
    with PlainProgress(stream, "pulled", clock=lambda: now[0], files=1) as sink:
        task = sink.begin("pkg 1.0", 100 * MiB)
        for second in range(1, 31):
            now[0] = float(second)
            task.advance(2 * MiB)
        task.end(True)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "pulling: 20.0 MiB of 100.0 MiB (20%), 2.0 MiB/s, ETA 0:00:40",
        "pulling: 40.0 MiB of 100.0 MiB (40%), 2.0 MiB/s, ETA 0:00:30",
        "pulling: 60.0 MiB of 100.0 MiB (60%), 2.0 MiB/s, ETA 0:00:20",
    ]


def test_the_overall_bar_of_a_pull_list_never_claims_completion_early() -> None:
    from rich.console import Console

    from tycho_async.bars import RichProgress

    progress = RichProgress(Console(file=open(os.devnull, "w")), "pulled", files=3)  # noqa: SIM115
    small = progress.begin("a", 1000)
    small.advance(1000)
    small.end(True)
    big = progress.begin("b", 100 * MiB)
    big.advance(MiB)
    task = progress.progress.tasks[0]
    assert task.total is None and not task.finished
    big.end(True)


def test_a_size_learned_from_the_first_bytes_starts_the_bar(tmp_path: Path) -> None:
    async def main() -> list[int]:
        from tycho_async.storage.local import LocalStore

        store = LocalStore(tmp_path / "reg")
        await store.put_bytes("k", b"z" * (3 * 64 * 1024))
        seen: list[int] = []

        class Sink:
            def begin(self, label: str, total: int) -> object:
                seen.append(total)

                class Task:
                    def advance(self, n: int) -> None:
                        return None

                    def end(self, ok: bool) -> None:
                        return None

                return Task()

        engine = Engine(store, SMALL, Sink())  # type: ignore[arg-type]
        await engine.download("k", tmp_path / "out.bin", label="k", expected=by_etag)
        return seen

    assert anyio.run(main) == [3 * 64 * 1024]


def test_pull_request_latest_parses_to_no_version() -> None:
    assert PullRequest.parse("pkg==latest") == PullRequest("pkg")


def test_outfile_dev_stdout_into_a_pipe(s3_endpoint: str) -> None:
    """`pull -o /dev/stdout | tar x`: the bytes go down the pipe, /dev/stdout stays."""
    bucket = make_bucket(s3_endpoint)
    env = _env(s3_endpoint, bucket)
    blob = write_file(Path("f.bin"), 3 * MiB + 7)
    assert subprocess.run([TYCHOREG, "push", "pkg", "1", "f.bin", "--promote-latest", "-q"],
                          env=env, timeout=60, check=False).returncode == 0
    result = subprocess.run([TYCHOREG, "pull", "pkg", "-o", "/dev/stdout", "-q"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == blob
    assert Path("/dev/stdout").is_symlink() and not Path("/dev/stdout.etag").exists()


def test_unset_bucket_and_outdir_variables_are_shown_not_used(isolated_env: Path) -> None:
    from typer.testing import CliRunner

    from tycho_async.cli import app

    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "s3", "outdir": {"env": "REG_OUTDIR"}},
        "s3": {"bucket": {"env": "REG_BUCKET"}}}))
    runner = CliRunner()
    shown = runner.invoke(app, ["info", "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["registry"] == "s3://(unset)/" and info["outdir"] == "tycho_packages"
    assert any("REG_BUCKET is not set" in u for u in info["unset"])
    assert any("REG_OUTDIR is not set" in u for u in info["unset"])
    probe = runner.invoke(app, ["info", "--probe"])
    assert probe.exit_code == 2 and "REG_BUCKET" in probe.stderr
    assert runner.invoke(app, ["list"]).exit_code == 2


def test_delete_killed_midway_is_finished_by_the_same_command(s3_endpoint: str) -> None:
    """SIGKILL once ``delete P 0 1 2`` has deleted version 0 and starts on 1: running the
    same command line again deletes what is left and exits 0."""
    bucket = make_bucket(s3_endpoint)
    env = _env(s3_endpoint, bucket)
    for version in ("0", "1", "2"):
        write_file(Path("f.bin"), 100, seed=int(version))
        assert subprocess.run([TYCHOREG, "push", "P", version, "f.bin", "-q"], env=env,
                              timeout=60, check=False).returncode == 0
    proc = subprocess.Popen([TYCHOREG, "--debug", "delete", "P", "0", "1", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stderr:  # bounded: the process ends, and so does its stderr
            seen.append(line)
            if "DELETE" in line and "tycho_1.pkg" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    client = s3_client(s3_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "P/tycho_0.pkg" not in keys and "P/tycho_2.pkg" in keys
    again = subprocess.run([TYCHOREG, "delete", "P", "0", "1", "2"], env=env, timeout=60,
                           check=False, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["P/tycho.json"]
    meta = json.loads(client.get_object(Bucket=bucket, Key="P/tycho.json")["Body"].read())
    assert meta["tychoreg"]["records"] == {}
