"""Pulls (the registry's pull operation): the kinds of destination (a file, a
symlink, a FIFO, a device, standard output, and what is refused), what a failed or
interrupted pull leaves behind, which version a request names (``latest``, fallback
keys), and what a pull costs in requests."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tycho_async.results import PullRequest
from tycho_async.transfer import Engine

from .faults import FaultyStore
from .support import (
    OLD,
    PART,
    SMALL,
    TYCHOREG,
    MiB,
    Registry,
    _env,
    _pending,
    _pushed,
    _wait_for,
    make_bucket,
    make_tree,
    ok,
    opened,
    put_station,
    s3_head,
    versions_stored,
    write_file,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


def test_a_failed_pull_leaves_no_fresh_outdir(registry: Registry) -> None:
    _pushed(registry)
    registry.put("pkg/tycho_1.0.pkg", b"y" * 3000)
    result = registry.cli("pull", "pkg", "--outdir", "fresh/deeper")
    assert result.exit_code == 3
    assert not Path("fresh").exists()
    listed = registry.cli("pull-list", "pkg", "--outdir", "fresh2")
    assert listed.exit_code == 3 and not Path("fresh2").exists()


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


def test_pull_request_latest_parses_to_no_version() -> None:
    assert PullRequest.parse("pkg==latest") == PullRequest("pkg")


def modified(registry: Registry, key: str) -> float:
    """The object's Last-Modified as a listing shows it."""
    if registry.kind == "s3":
        return float(s3_head(registry, key)["LastModified"].timestamp())
    return Path(registry.root, key).stat().st_mtime


def next_second() -> None:
    """Sleep to just past the next whole second: what is written right after it shares
    one Last-Modified (S3 keeps whole seconds), and differs from what came before."""
    time.sleep(1.02 - time.time() % 1)


def test_fallback_and_prune_share_one_order(registry: Registry) -> None:
    """S1 (one second for all four): a-1, k-10, t-10, t-9; S2: k-2."""
    data = {v: f"bytes of {v}".encode() for v in ("a-1", "k-10", "t-10", "t-9", "k-2")}
    older = {v: data[v] for v in ("a-1", "k-10", "t-10", "t-9")}
    if registry.kind == "s3":
        for _ in range(3):  # a burst that straddles a second is simply written again
            if time.time() % 1 > 0.7:
                next_second()
            put_station(registry, "fb", older, "a-1")
            if len({modified(registry, f"fb/tycho_{v}.pkg") for v in older}) == 1:
                break
        next_second()
        put_station(registry, "fb", {"k-2": data["k-2"]}, "a-1")
    else:
        put_station(registry, "fb", data, "a-1")
        base = time.time() - 3600
        for version in data:
            os.utime(Path(registry.root, f"fb/tycho_{version}.pkg"),
                     (base + 10 * (version == "k-2"),) * 2)
    at = {v: modified(registry, f"fb/tycho_{v}.pkg") for v in data}
    assert at["a-1"] == at["k-10"] == at["t-10"] == at["t-9"] < at["k-2"], at

    recent = ok(registry.cli("pull", "fb", "--version", "k-42", "--fallback", "k-"))
    assert "k-2" in recent.stdout and "fallback" in recent.stdout
    assert Path("tycho_packages/fb.bin").read_bytes() == data["k-2"]

    tie = ok(registry.cli("pull", "fb", "--version", "t-42", "--fallback", "t-",
                          "-o", "tie.bin", "--json"))
    assert {k: json.loads(tie.stdout)[k] for k in ("version", "exact")} == \
        {"version": "t-10", "exact": False}
    assert Path("tie.bin").read_bytes() == data["t-10"]

    first_prefix = ok(registry.cli("pull", "fb", "--version", "x-1", "--fallback", "z-",
                                   "--fallback", "a-", "--fallback", "k-", "-o", "a.bin"))
    assert "a-1" in first_prefix.stdout
    assert Path("a.bin").read_bytes() == data["a-1"]

    exact = ok(registry.cli("pull", "fb", "--version", "k-10", "--fallback", "k-",
                            "-o", "exact.bin"))
    assert "exact hit" in exact.stdout
    assert Path("exact.bin").read_bytes() == data["k-10"]

    none = registry.cli("pull", "fb", "--version", "x-1", "--fallback", "nope-")
    assert none.exit_code == 1
    assert "nope-" in none.stderr

    # newest first: k-2, then the tie by natural order: t-10, t-9, k-10, a-1 (the latest)
    pruned = ok(registry.cli("prune", "fb", "--keep", "2"))
    assert "deleted fb t-9" in pruned.stdout and "deleted fb k-10" in pruned.stdout
    assert versions_stored(registry, "fb") == ["a-1", "k-2", "t-10"]


def test_fallback_usage_errors(registry: Registry) -> None:
    put_station(registry, "fb", {"k-1": b"one"}, latest="k-1")
    no_version = registry.cli("pull", "fb", "--fallback", "k-")
    assert no_version.exit_code == 2
    assert "--version" in no_version.stderr
    empty = registry.cli("pull", "fb", "--version", "k-9", "--fallback", "")
    assert empty.exit_code == 2
    assert not Path("tycho_packages").exists()


def test_a_ci_cache_restored_from_a_near_key(registry: Registry) -> None:
    venv = make_tree(Path("build/venv"), seed=1)
    ok(registry.cli("push", "deps", "lock-aaa", "build/venv"))
    restored = ok(registry.cli("pull", "deps", "--version", "lock-bbb", "--fallback",
                               "lock-", "--outfile", "venv", "--json"))
    doc = json.loads(restored.stdout)
    assert {k: doc[k] for k in ("version", "exact", "format", "path")} == \
        {"version": "lock-aaa", "exact": False, "format": "tar+zstd", "path": "venv"}
    assert Path("venv/a/text.txt").read_bytes() == (venv / "a/text.txt").read_bytes()

    Path("venv/installed.txt").write_text("pip install ran")
    ok(registry.cli("push", "deps", "lock-bbb", "venv", "--skip-existing"))
    again = ok(registry.cli("pull", "deps", "--version", "lock-bbb", "--fallback", "lock-",
                            "--outfile", "venv", "--json"))
    doc = json.loads(again.stdout)
    assert {k: doc[k] for k in ("version", "exact")} == {"version": "lock-bbb",
                                                          "exact": True}
    assert Path("venv/installed.txt").read_text() == "pip install ran"


@pytest.mark.anyio
async def test_pull_many_shares_one_budget(kind: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    from tycho_async.registry import Registry
    from tycho_async.results import PullRequest

    settings = replace(SMALL, concurrency=5)
    async with opened(kind, tmp_path, request, settings) as (inner, _):
        store = FaultyStore(inner, delay=0.01)
        registry = Registry(Engine(store, settings), tmp_path / "out")
        for i in range(12):
            write_file(tmp_path / f"f{i}.bin", PART * 2 + i, seed=i)
            await registry.push(f"p{i}", "1", tmp_path / f"f{i}.bin", promote=True)
        results = await registry.pull_many([PullRequest(f"p{i}") for i in range(12)])
        assert [r.path.read_bytes() for r in results] == [
            (tmp_path / f"f{i}.bin").read_bytes() for i in range(12)]
        assert registry.engine.budget.statistics().peak == 5 and store.peak == 5


@pytest.mark.anyio
async def test_pull_many_keeps_a_bounded_number_of_items_in_progress(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Memory flat in the length of the list: at most twice the request budget of items
    are being pulled at any time, whatever the number of items (an item enters ``pull``
    once the wave has read its tycho.json, so how many overlap below that bound depends
    on the reads' timing; that the budget is used is the test above's)."""
    from tycho_async.registry import Registry
    from tycho_async.results import PullRequest, PullResult

    class Counting(Registry):
        active = peak = 0

        async def pull(self, request: PullRequest, **kwargs: object) -> PullResult:
            Counting.active += 1
            Counting.peak = max(Counting.peak, Counting.active)
            try:
                return await super().pull(request, **kwargs)  # type: ignore[arg-type]
            finally:
                Counting.active -= 1

    settings = replace(SMALL, concurrency=3)
    async with opened("local", tmp_path, request, settings) as (store, _):
        registry = Counting(Engine(FaultyStore(store, delay=0.002), settings), tmp_path / "out")
        for i in range(40):
            await store.put_bytes(f"p{i}/tycho.json", b'{"localname": "f%d", "latest": "1"}' % i)
            await store.put_bytes(f"p{i}/tycho_1.pkg", b"x" * i)
        results = await registry.pull_many([PullRequest(f"p{i}") for i in range(40)])
        assert [r.path.read_bytes() for r in results] == [b"x" * i for i in range(40)]
        assert 1 <= Counting.peak <= 6


@pytest.mark.anyio
async def test_a_pull_of_our_push_costs_two_requests(kind: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    from tycho_async.registry import Registry
    from tycho_async.results import PullRequest

    blob = write_file(tmp_path / "f.bin", 1000)
    async with opened(kind, tmp_path, request) as (inner, _):
        await Registry(Engine(inner, SMALL), tmp_path).push("p", "1", tmp_path / "f.bin",
                                                             promote=True)
        store = FaultyStore(inner)
        registry = Registry(Engine(store, SMALL), tmp_path / "out")
        result = await registry.pull(PullRequest("p"))
        assert result.path.read_bytes() == blob
        assert registry.engine.stats.requests == 2  # tycho.json, then the object
        again = await registry.pull(PullRequest("p"))
        assert again.skipped and store.calls["head"] == 1


@pytest.mark.anyio
async def test_a_pull_of_a_tycho_station_package_costs_two_requests(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tycho_async.registry import Registry
    from tycho_async.results import PullRequest

    async with opened(kind, tmp_path, request) as (inner, _):
        await inner.put_bytes("old/tycho.json", b'{"localname": "o.bin", "latest": "1"}')
        await inner.put_bytes("old/tycho_1.pkg", b"station bytes")
        registry = Registry(Engine(FaultyStore(inner), SMALL), tmp_path / "out")
        result = await registry.pull(PullRequest("old"))
        assert result.path.read_bytes() == b"station bytes"
        assert registry.engine.stats.requests == 2
