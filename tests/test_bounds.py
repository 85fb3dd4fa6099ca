"""Pulls bounded by what the record promises, on every backend: an object larger than its
record, a body longer than its headers, a zstd bomb, data after the tar's end; and odd
inputs that must not break a whole command (deeply nested JSON, 255-byte localnames)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async import localfs
from tycho_async.api import Client
from tycho_async.archive.pack import tar_chunks
from tycho_async.archive.tree import scan
from tycho_async.config import load_settings
from tycho_async.errors import IntegrityError, TychoError, UnsafeRemoteData
from tycho_async.localfs import LocalFS
from tycho_async.registry import Registry as Reg
from tycho_async.results import PullRequest
from tycho_async.storage import open_store
from tycho_async.transfer import Engine

from .faults import FaultyStore
from .support import TYCHOREG, Registry, write_file
from .trees import hand_tar, member, set_mtimes, snapshot

MiB = 1024 * 1024
T0 = "2024-01-01T00:00:00+00:00"


def ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def store_version(registry: Registry, package: str, version: str, data: bytes,
                  record: dict[str, Any] | None, *, localname: str) -> None:
    """A version as the bucket holds it (``record`` None: pushed by tycho-station), the
    latest of its package."""
    meta: dict[str, Any] = {"localname": localname, "latest": version}
    if record is not None:
        record = {"pushed_at": T0, "tool": "tychoreg 0.1.0", "localname": localname,
                  **record}
        meta["tychoreg"] = {"records": {version: record}}
        registry.put(f"{package}/tycho_{version}.meta.json", json.dumps(record).encode())
    registry.put(f"{package}/tycho_{version}.pkg", data)
    registry.put(f"{package}/tycho.json", json.dumps(meta, indent=2).encode())


def file_record(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def tree_record(compressed: bytes, tar: bytes, **extra: Any) -> dict[str, Any]:
    return {**file_record(compressed), "format": "tar+zstd",
            "tree_sha256": hashlib.sha256(tar).hexdigest(), **extra}


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def one_file_tar(name: str, data: bytes) -> bytes:
    return hand_tar([member(name, data=data)])


class CountingFS(LocalFS):
    """The local file system, counting what downloads claim (preallocation) and write."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed = 0
        self.written = 0
        pwrite, pwritev = self.sys_pwrite, self.sys_pwritev

        def counted_pwrite(fd: int, data: Any, offset: int) -> int:
            written = pwrite(fd, data, offset)
            self.written += written
            return written

        def counted_pwritev(fd: int, chunks: Any, offset: int, flags: int = 0) -> int:
            written = pwritev(fd, chunks, offset, flags)
            self.written += written
            return written

        self.sys_pwrite = counted_pwrite
        self.sys_pwritev = counted_pwritev

    def preallocate(self, fd: int, size: int) -> None:
        self.claimed += size
        super().preallocate(fd, size)


@contextlib.asynccontextmanager
async def opened(registry: Registry, fs: LocalFS) -> AsyncIterator[tuple[Reg, FaultyStore]]:
    """The fixture's registry through the API, over a fault-injecting store."""
    settings = load_settings(str(registry.workdir / ".tychoreg.json"), environment=False)
    async with open_store(settings.store) as store:
        faulty = FaultyStore(store)
        yield Reg(Engine(faulty, settings.transfer, fs=fs), Path("tycho_packages"),
                  fs=fs), faulty


def pull_via_api(registry: Registry, package: str, *, faults: tuple[Any, ...] = (),
                 outfile: Any = None, force: bool = False
                 ) -> tuple[TychoError | None, CountingFS, FaultyStore]:
    fs = CountingFS()
    found: list[Any] = []

    async def main() -> None:
        async with opened(registry, fs) as (reg, faulty):
            found.append(faulty)
            faulty.inject("open_range", *faults)
            try:
                await reg.pull(PullRequest(package), outfile=outfile, force=force)
            except TychoError as exc:
                found.append(exc)

    anyio.run(main)
    return (found[1] if len(found) > 1 else None), fs, found[0]


# -- A4: a download stops at the size the record promises ----------------------------------

def test_a_file_larger_than_its_record_is_refused_before_a_byte_lands(
        registry: Registry) -> None:
    """A record of 10 B and an object of 2 MiB: refused on the first answer's headers,
    nothing claimed or written on disk, nothing left (a fresh pull, and one that asks a
    HEAD first because a local copy exists)."""
    small = b"0123456789"
    store_version(registry, "pkg", "1", small, file_record(small), localname="f.bin")
    ok(registry.cli("pull", "pkg"))
    store_version(registry, "pkg", "2", os.urandom(2 * MiB), file_record(small),
                  localname="f.bin")
    out = Path("tycho_packages")

    result = registry.cli("pull", "pkg")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "2097152 bytes, 10 were pushed" in result.stderr and "Traceback" not in result.output
    assert (out / "f.bin").read_bytes() == small
    assert [name for name in listing(out) if name.startswith(".")] == []

    for force in (False, True):  # a HEAD first (a sidecar is there), or the GET's headers
        (out / "f.bin.etag").write_text('"an older etag"')
        error, fs, faulty = pull_via_api(registry, "pkg", force=force)
        assert isinstance(error, IntegrityError), error
        assert (fs.claimed, fs.written, faulty.delivered) == (0, 0, 0)
        assert (out / "f.bin").read_bytes() == small
    (out / "f.bin").unlink()
    error, fs, faulty = pull_via_api(registry, "pkg")  # a fresh pull
    assert isinstance(error, IntegrityError)
    assert (fs.claimed, fs.written, faulty.delivered) == (0, 0, 0)
    assert listing(out) == []


@pytest.mark.parametrize("case", ["small", "large", "stream", "tycho-station"])
def test_a_body_longer_than_its_headers_say_is_refused(registry: Registry, case: str) -> None:
    """A server whose body goes on past the size its headers (and the record) give: an
    integrity error, at most that size written, nothing left."""
    data = os.urandom(3 * MiB if case == "large" else 10)
    store_version(registry, "pkg", "1", data,
                  None if case == "tycho-station" else file_record(data), localname="f.bin")
    sink = io.BytesIO()
    error, fs, _ = pull_via_api(registry, "pkg", faults=("extend",) * 5,
                                outfile=sink if case == "stream" else None)
    assert isinstance(error, IntegrityError), error
    assert "longer than" in error.message
    assert fs.written <= len(data) and len(sink.getvalue()) <= len(data)
    assert listing(Path("tycho_packages")) == []


def test_a_tampered_archive_larger_than_its_record_is_refused_unread(
        registry: Registry) -> None:
    tar = one_file_tar("a.txt", b"one\n")
    store_version(registry, "tree", "1", zst(tar), tree_record(zst(tar), tar),
                  localname="tree.tar.zst")
    ok(registry.cli("pull", "tree"))
    dest = Path("tycho_packages/tree")
    before = snapshot(dest)
    big = one_file_tar("a.txt", os.urandom(2 * MiB))
    store_version(registry, "tree", "2", zst(big), tree_record(zst(tar), tar),
                  localname="tree.tar.zst")

    result = registry.cli("pull", "tree")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "were pushed" in result.stderr and "Traceback" not in result.output
    error, _, faulty = pull_via_api(registry, "tree")
    assert isinstance(error, IntegrityError) and faulty.delivered == 0
    assert snapshot(dest) == before
    assert listing(Path("tycho_packages")) == ["tree"]  # its proof is inside it


def _bomb() -> tuple[bytes, bytes]:
    """A tiny object that expands to 16 MiB of zeros."""
    tar = one_file_tar("zeros.bin", bytes(16 * MiB))
    return zst(tar), tar


def test_a_zstd_bomb_is_refused_by_its_recorded_tree_size(registry: Registry) -> None:
    small, tar = _bomb()
    assert len(small) < 64 * 1024
    store_version(registry, "bomb", "1", small, tree_record(small, tar, tree_size=100_000),
                  localname="bomb.tar.zst")
    result = registry.cli("pull", "bomb")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "tree_size" in result.stderr and "Traceback" not in result.output
    assert listing(Path("tycho_packages")) == []


def _limited(limit: int) -> Any:
    def preexec() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_zstd_bomb_without_tree_size_is_bounded_by_max_unpacked(registry: Registry) -> None:
    """No tree_size recorded: --max-unpacked sets the bound (the default is far above
    these sizes). The refusal comes before any file grows past the bound: the pull runs
    with files limited to 2 MiB and still fails with the bound's message, not EFBIG."""
    small, tar = _bomb()
    store_version(registry, "bomb", "1", small, tree_record(small, tar),
                  localname="bomb.tar.zst")
    out = Path("tycho_packages")
    pulled = subprocess.run([TYCHOREG, "pull", "bomb", "--max-unpacked", "1MiB"],
                            capture_output=True, text=True, timeout=120, check=False,
                            preexec_fn=_limited(2 * MiB))
    assert pulled.returncode == 3, pulled.stderr
    assert "--max-unpacked" in pulled.stderr and "File too large" not in pulled.stderr
    assert "Traceback" not in pulled.stderr
    assert listing(out) == []

    many = registry.cli("pull-list", "bomb", "--max-unpacked", "1MiB", "--json")
    assert many.exit_code == 3 and "--max-unpacked" in many.stderr
    refused = pytest.raises(UnsafeRemoteData, match="max-unpacked")
    with Client(config=".tychoreg.json") as client, refused:
        client.pull("bomb", max_unpacked="1MiB")
    assert listing(out) == []

    ok(registry.cli("pull", "bomb", "--max-unpacked", "17MiB"))  # raised: it fits
    assert (out / "bomb" / "zeros.bin").stat().st_size == 16 * MiB

    bad = registry.cli("pull", "bomb", "--max-unpacked", "lots")
    assert bad.exit_code == 2 and "--max-unpacked" in bad.stderr


def test_the_default_bound_for_trees_without_tree_size() -> None:
    from tycho_async.layout import default_max_unpacked

    assert default_max_unpacked(0) == default_max_unpacked(1 << 20) == 8 << 30
    assert default_max_unpacked(1 << 30) == 64 << 30


@pytest.mark.parametrize("trailing", ["zeros", "frame", "padding"])
def test_data_after_the_end_of_the_tar_is_refused(registry: Registry, trailing: str) -> None:
    """The tar's end-of-archive ends it: 1 MiB of zeros after the padding, another zstd
    frame, or a non-zero byte in the padding are refused, though the record vouches for
    every byte of them (its SHA-256 and tree_sha256 are those of the whole stream)."""
    tar = one_file_tar("a.txt", b"hello\n")
    assert len(tar) % 10240 == 0
    if trailing == "zeros":
        full = tar + bytes(MiB)
        compressed = zst(full)
    elif trailing == "frame":
        full = tar + b"more data\n"
        compressed = zst(tar) + zst(b"more data\n")
    else:
        full = tar[:-1] + b"!"
        compressed = zst(full)
    store_version(registry, "tree", "1", compressed, tree_record(compressed, full),
                  localname="tree.tar.zst")
    result = registry.cli("pull", "tree")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "after the end of its tar" in result.stderr and "Traceback" not in result.output
    assert listing(Path("tycho_packages")) == []


def test_a_directory_push_records_its_tree_size(registry: Registry) -> None:
    src = Path("src")
    (src / "d").mkdir(parents=True)
    write_file(src / "d" / "f.bin", 100_000)
    set_mtimes(src)
    ok(registry.cli("push", "tree", "1", "src"))
    size = len(b"".join(tar_chunks(scan(src))))
    record = json.loads(registry.get("tree/tycho_1.meta.json") or b"")
    assert record["tree_size"] == size
    assert registry.meta("tree")["tychoreg"]["records"]["1"]["tree_size"] == size
    ok(registry.cli("pull", "tree", "--version", "1"))
    assert snapshot(Path("tycho_packages/src")) == snapshot(src)


# -- A9: odd inputs that must not break a whole command -------------------------------------

DEEP = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_deeply_nested_json_is_that_packages_problem(registry: Registry) -> None:
    data = b"payload"
    store_version(registry, "good", "1", data, file_record(data), localname="g.bin")
    registry.put("deep/tycho.json", DEEP)
    registry.put("deep/tycho_1.pkg", data)
    # a record object nested as deep, for a version without a copy in tycho.json
    registry.put("rec/tycho.json", json.dumps({"localname": "r.bin", "latest": "1",
                                               "tychoreg": {"records": {}}}).encode())
    registry.put("rec/tycho_1.pkg", data)
    registry.put("rec/tycho_1.meta.json", DEEP)

    listed = ok(registry.cli("list", "--json"))
    rows = {row["package"]: row for row in json.loads(listed.stdout)["packages"]}
    assert rows["good"]["latest"] == "1" and rows["rec"]["latest"] == "1"
    assert "nested too deeply" in rows["deep"]["problem"]
    plain = ok(registry.cli("list"))
    assert "deep" in plain.stdout and "good" in plain.stdout

    for args in (("pull", "deep"), ("list-versions", "deep"), ("show", "deep"),
                 ("pull", "rec"), ("verify", "rec")):
        result = registry.cli(*args)
        assert result.exit_code == 3, (args, result.stdout, result.stderr)
        assert "nested too deeply" in result.stderr, args
        assert "Traceback" not in result.output and "RecursionError" not in result.output
    ok(registry.cli("pull", "good"))


def in_a_dead_process(code: str, *args: str) -> None:
    """Run ``code`` (with ``LocalFS``, ``Path`` and ``sys`` at hand) in a process of its
    own that has ended by the time this returns: what it leaves carries a dead pid."""
    setup = "import sys\nfrom pathlib import Path\nfrom tycho_async.localfs import LocalFS\n"
    subprocess.run([sys.executable, "-c", setup + code, *args], check=True, timeout=60)


LONG_NAMES = ["f" * 251 + ".bin", "é" * 124 + "abc.bin"]  # 255 bytes, the most a name holds


@pytest.mark.parametrize("name", LONG_NAMES)
def test_a_255_byte_localname_round_trips(registry: Registry, name: str) -> None:
    """Pushed and pulled, small (written whole) and large (ranged, into a temp file);
    its sidecar (the name plus .etag) cannot exist, so it is never taken as current and
    a second pull downloads again."""
    assert len(os.fsencode(name)) == 255
    out = Path("tycho_packages")
    for version, size in (("1", 100), ("2", 3 * MiB)):
        blob = write_file(Path(name), size, seed=size)
        ok(registry.cli("push", "pkg", version, name, "--promote-latest"))
        for _ in range(2):
            ok(registry.cli("pull", "pkg"))
            assert (out / name).read_bytes() == blob
            assert listing(out) == [name]


def test_a_directory_with_a_247_byte_name_round_trips(registry: Registry) -> None:
    """NAME.tar.zst of 255 bytes: extracted into a shortened temp directory, replaced
    through a shortened .old- name; its proof inside it makes the second pull current."""
    name = "d" * 247
    out = Path("tycho_packages")
    for version, text in (("1", "one\n"), ("2", "two\n")):
        src = Path(name)
        src.mkdir(exist_ok=True)
        (src / "f.txt").write_text(text)
        ok(registry.cli("push", "tree", version, name, "--promote-latest"))
        ok(registry.cli("pull", "tree"))
        assert (out / name / "f.txt").read_text() == text
        assert "is up to date" in ok(registry.cli("pull", "tree")).stdout
        assert [n for n in listing(out) if n.startswith(".")] == []
        assert name in listing(out)


@pytest.fixture
def long_dests(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two 255-byte names that share their first 250 bytes."""
    yield tmp_path / ("x" * 250 + "a.bin"), tmp_path / ("x" * 250 + "b.bin")


def test_temp_names_fit_and_are_swept_whatever_the_name_length(
        long_dests: tuple[Path, Path]) -> None:
    a, b = long_dests
    in_a_dead_process("fs = LocalFS()\nfs.create_temp(Path(sys.argv[1]), 10)\n"
                      "(fs.create_temp_dir(Path(sys.argv[2])) / 'inside').write_text('x')",
                      str(a), str(b))
    left = sorted(a.parent.glob(".x*"))
    assert len(left) == 2 and {p.is_dir() for p in left} == {True, False}
    for made in left:
        assert len(os.fsencode(made.name)) <= 255 and made.name.endswith(localfs.TEMP_SUFFIX)
    live, fd = LocalFS().create_temp(a)  # a later process's sweep
    os.close(fd)
    assert sorted(a.parent.glob(".x*")) == [live]


def test_a_cut_replacement_of_a_long_named_tree_is_recovered(
        long_dests: tuple[Path, Path]) -> None:
    """A crash between the two renames of a replacement, for two long names that share
    their start: each old tree goes back in its own place, never in the other's."""
    for dest in long_dests:
        in_a_dead_process(
            "fs = LocalFS()\ndest = Path(sys.argv[1])\n"
            "for text in ('old', 'new'):\n"
            "    temp = fs.create_temp_dir(dest)\n"
            "    (temp / 'f').write_text(text + ' ' + dest.name[-5])\n"
            "    old = fs.replace_dir(temp, dest)\n"
            "fs.remove_tree(dest)  # as if killed between the renames\n", str(dest))
    a, b = long_dests
    olds = [p for p in a.parent.iterdir() if ".old-" in p.name]
    assert len(olds) == 2 and all(len(os.fsencode(p.name)) <= 255 for p in olds)
    assert LocalFS().recover_dir(a) is True
    assert (a / "f").read_text() == "old a" and not b.exists()  # b's is not a's
    assert LocalFS().recover_dir(b) is True
    assert (b / "f").read_text() == "old b"
    assert sorted(p.name for p in a.parent.iterdir() if "x" in p.name) == [a.name, b.name]


NAME_BYTES = st.one_of(  # any bytes a name may hold, often near the 255-byte limit
    st.binary(min_size=1, max_size=255),
    st.integers(200, 255).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
).map(lambda raw: raw.replace(b"/", b"_").replace(b"\0", b"_")).filter(
    lambda raw: raw not in (b".", b".."))


@settings(max_examples=200, deadline=None)
@given(NAME_BYTES)
def test_any_name_gets_a_temp_name_beside_it(raw: bytes) -> None:
    """Whatever a destination's name (any bytes, up to 255), a temp file and a temp
    directory can be created beside it, keeping the start of the name."""
    with tempfile.TemporaryDirectory() as where:
        dest = Path(where, os.fsdecode(raw))
        temp, fd = LocalFS().create_temp(dest)
        os.close(fd)
        folder = LocalFS().create_temp_dir(dest)
        for made in (temp, folder):
            assert os.fsencode(made.name).startswith(b"." + raw[:150])
            assert made.name.endswith(localfs.TEMP_SUFFIX)


@given(NAME_BYTES, NAME_BYTES, st.integers(0, 60))
def test_fitted_names_fit_and_differ(one: bytes, other: bytes, room: int) -> None:
    fitted = [os.fsencode(localfs.fitted(os.fsdecode(raw), room)) for raw in (one, other)]
    for raw, got in zip((one, other), fitted, strict=True):
        assert len(got) + room <= 255
        assert got == raw if len(raw) + room <= 255 else got.startswith(raw[:255 - room - 9])
    assert (fitted[0] == fitted[1]) == (one == other)
