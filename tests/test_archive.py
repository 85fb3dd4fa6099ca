"""Directory packages: the canonical tar and its hash, the .tar.zst stream, the pipe, the
safe extractor (hostile archives built by hand), and the local directory mechanics."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async import localfs
from tycho_async.archive.extract import ChunkPipe, Extracted, Limit, _TarInfo, extract
from tycho_async.archive.pack import (
    DEFAULT_LEVEL,
    MAX_LEVEL,
    Packer,
    _ustar,
    tar_chunks,
    tree_sha256,
)
from tycho_async.archive.tree import Tree, scan
from tycho_async.errors import TransferError, TychoError, UnsafeRemoteData, UsageError
from tycho_async.localfs import LocalFS

from .trees import T0, Member, hand_tar, member, set_mtimes, snapshot

ROOT = os.geteuid() == 0
BAD_NAME = os.fsdecode(b"bad\xff-name")  # not UTF-8: kept byte for byte
LONG_NAME = "l" * 150  # past ustar's 100 bytes: a pax path record
UNICODE_NAME = "Grüße-日本-é"


# -- helpers -----------------------------------------------------------------------------

def make_sample(root: Path, *, reverse: bool = False, big: int = 3 << 20) -> Path:
    """The round-trip tree: empty dirs and files, unicode and non-UTF-8 names, a long
    name, an executable, relative and absolute symlinks (one pointing outside), a hard
    link inside, a file of a few MiB. ``reverse`` creates everything in the other order."""
    steps: list[Callable[[], object]] = [
        lambda: (root / "a" / "b").mkdir(parents=True),
        lambda: (root / "empty-dir" / "nested-empty").mkdir(parents=True),
        lambda: (root / "empty-file").write_bytes(b""),
        lambda: (root / "a" / "text.txt").write_text("hello\n"),
        lambda: (root / UNICODE_NAME).write_text("unicode\n"),
        lambda: (root / BAD_NAME).write_bytes(b"bytes\n"),
        lambda: (root / LONG_NAME).write_bytes(b"long\n"),
        lambda: (root / "run.sh").write_text("#!/bin/sh\necho hi\n"),
        lambda: os.chmod(root / "run.sh", 0o755),
        lambda: (root / "big.bin").write_bytes(os.urandom(big)),
        lambda: os.symlink("../text.txt", root / "a" / "b" / "rel-link"),
        lambda: os.symlink("/usr/bin/env", root / "abs-link"),
        lambda: os.symlink("../../outside/somewhere", root / "a" / "escaping-link"),
        lambda: os.symlink("a", root / "dir-link"),
        lambda: os.link(root / "a" / "text.txt", root / "hard"),
    ]
    root.mkdir(parents=True)
    if reverse:  # about the other way round, each step still after what it needs
        order = [0, 3, 14, 13, 12, 11, 10, 9, 7, 8, 6, 5, 4, 2, 1]
        steps = [steps[i] for i in order]
    for step in steps:
        step()
    set_mtimes(root)
    return root


def pack(tree: Tree, level: int = DEFAULT_LEVEL) -> tuple[bytes, Packer]:
    packer = Packer(tree, level=level)
    return b"".join(packer), packer


def extract_bytes(data: bytes, into: Path) -> Extracted:
    into.mkdir(exist_ok=True)
    return extract(io.BytesIO(data), into)


def zst(tar: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(tar)


# -- round trips -------------------------------------------------------------------------

def test_round_trip_keeps_bytes_modes_mtimes_links_and_hard_links(tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    tree = scan(src)
    data, packer = pack(tree)
    got = extract_bytes(data, tmp_path / "out")

    assert snapshot(tmp_path / "out") == snapshot(src)
    out = tmp_path / "out"
    assert os.readlink(out / "abs-link") == "/usr/bin/env"
    assert os.readlink(out / "a" / "escaping-link") == "../../outside/somewhere"
    assert os.readlink(out / "a" / "b" / "rel-link") == "../text.txt"
    assert (out / "hard").stat().st_ino == (out / "a" / "text.txt").stat().st_ino
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o755
    assert (out / BAD_NAME).read_bytes() == b"bytes\n"
    assert (out / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    # counts agree between the scan and the extraction; the hash three ways
    assert (got.files, got.dirs, got.symlinks, got.bytes) == (
        tree.files, tree.dirs, tree.symlinks, tree.bytes) == (8, 4, 4, (3 << 20) + 43)
    assert got.tree_sha256 == packer.tree_sha256 == tree_sha256(tree)
    assert got.tar_size == packer.tar_size and packer.tar_size % 10240 == 0
    assert packer.size == len(data)


def test_empty_tree_round_trips(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tree = scan(tmp_path / "src")
    assert (tree.entries, tree.files, tree.bytes) == ((), 0, 0)
    data, packer = pack(tree)
    got = extract_bytes(data, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert packer.tar_size == got.tar_size == 10240
    assert got.tree_sha256 == hashlib.sha256(bytes(10240)).hexdigest()


def test_read_only_and_setgid_directories_get_their_mode_and_mtime_last(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "ro" / "inner").mkdir(parents=True)
    (src / "ro" / "inner" / "f").write_text("x")
    (src / "ro" / "g").write_text("y")
    set_mtimes(src)
    os.chmod(src / "ro" / "inner", 0o2755)
    os.chmod(src / "ro", 0o555)
    try:
        data, _ = pack(scan(src))
        extract_bytes(data, tmp_path / "out")
        out = tmp_path / "out"
        assert stat.S_IMODE((out / "ro").stat().st_mode) == 0o555
        assert stat.S_IMODE((out / "ro" / "inner").stat().st_mode) == 0o755  # setgid dropped
        assert (out / "ro" / "inner" / "f").read_text() == "x"
        for rel in ("ro", "ro/inner"):
            assert (out / rel).stat().st_mtime == (src / rel).stat().st_mtime
    finally:
        os.chmod(src / "ro", 0o755)
        if (tmp_path / "out" / "ro").exists():
            os.chmod(tmp_path / "out" / "ro", 0o755)


def test_system_tar_lists_and_extracts_the_archive(tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    data, _ = pack(scan(src))
    (tmp_path / "x.tar.zst").write_bytes(data)
    listing = subprocess.run(["tar", "-I", "zstd", "-tvf", "x.tar.zst"], cwd=tmp_path,
                             capture_output=True, check=True).stdout.decode("utf-8", "replace")
    for name in ("a/b/rel-link -> ../text.txt", "abs-link -> /usr/bin/env", UNICODE_NAME,
                 LONG_NAME, "hard link to a/text.txt", "empty-dir/nested-empty/", "0/0"):
        assert name in listing
    (tmp_path / "gnu").mkdir()
    subprocess.run(["tar", "-I", "zstd", "-xf", "x.tar.zst", "-C", "gnu"], cwd=tmp_path,
                   capture_output=True, check=True)
    assert snapshot(tmp_path / "gnu") == snapshot(src)


def test_an_archive_made_by_system_tar_with_dot_prefixes_extracts(tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src", big=1000)
    subprocess.run(["tar", "--zstd", "-cf", str(tmp_path / "x.tar.zst"), "-C", str(src), "."],
                   check=True)
    extract_bytes((tmp_path / "x.tar.zst").read_bytes(), tmp_path / "out")
    assert snapshot(tmp_path / "out") == snapshot(src)


# -- the canonical tar -------------------------------------------------------------------

def test_same_tree_same_hash_whatever_order_atime_owner_or_level(tmp_path: Path) -> None:
    one = make_sample(tmp_path / "one", big=100_000)
    two = make_sample(tmp_path / "two", reverse=True, big=100_000)
    shutil.copyfile(one / "big.bin", two / "big.bin")  # the same random bytes
    set_mtimes(two)
    os.utime(two / "a" / "text.txt", (T0 - 12345, (one / "a" / "text.txt").stat().st_mtime))
    if ROOT:
        os.chown(two / "run.sh", 1234, 5678)
        os.chown(two / "a", 1234, 5678)
    tree_one, tree_two = scan(one), scan(two)
    want = tree_sha256(tree_one)
    assert tree_sha256(tree_two) == want
    assert {pack(tree_one, level)[1].tree_sha256 for level in (1, 3, 9)} == {want}
    assert pack(tree_two, 2)[1].tree_sha256 == want


@pytest.mark.parametrize("change", ["content", "mode", "mtime", "name", "link", "new dir"])
def test_any_change_changes_the_hash(tmp_path: Path, change: str) -> None:
    src = make_sample(tmp_path / "src", big=1000)
    before = tree_sha256(scan(src))
    text = src / "a" / "text.txt"
    mtime = text.stat().st_mtime
    if change == "content":
        text.write_text("hellO\n")
        os.utime(text, (mtime, mtime))
    elif change == "mode":
        os.chmod(text, 0o600)
    elif change == "mtime":
        os.utime(text, (mtime, mtime + 1))
    elif change == "name":
        (src / "run.sh").rename(src / "run.sh2")
        set_mtimes(src)
    elif change == "link":
        (src / "abs-link").unlink()
        os.symlink("/usr/bin/envy", src / "abs-link")
        set_mtimes(src)
    else:
        (src / "empty-dir" / "more").mkdir()
        set_mtimes(src)
    assert tree_sha256(scan(src)) != before


def test_canonical_tar_is_stable(tmp_path: Path) -> None:
    """The hash of a fixed tree, written down: a stored tree_sha256 must mean the same
    tree with every later release (and every Python)."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"hello\n")
    (src / "x").write_bytes(b"")
    os.chmod(src / "x", 0o755)
    os.symlink("d/f", src / "l")
    os.link(src / "d" / "f", src / "h")
    (src / UNICODE_NAME).write_bytes(b"u")
    os.chmod(src / UNICODE_NAME, 0o600)
    for rel, mtime in (("d/f", T0 + 1), ("x", T0 + 2), ("l", T0 + 3), (UNICODE_NAME, T0 + 4),
                       ("d", T0)):
        os.utime(src / rel, (mtime, mtime), follow_symlinks=False)
    os.chmod(src / "d" / "f", 0o644)
    os.chmod(src / "d", 0o755)
    tar = b"".join(tar_chunks(scan(src)))
    assert len(tar) == 10240
    assert hashlib.sha256(tar).hexdigest() == (
        "ada3ead9d6c36bbb5814df653121809d66e1a4c3edab6ff71f480cd894999eaa")


def test_headers_for_what_ustar_cannot_hold(tmp_path: Path) -> None:
    src = tmp_path / "src"
    deep = src / ("d" * 120)
    deep.mkdir(parents=True)
    (deep / UNICODE_NAME).write_bytes(b"1")
    (src / BAD_NAME).write_bytes(b"2")
    os.symlink("t" * 200, src / "long-target")
    (src / "old").write_bytes(b"3")
    (src / "future").write_bytes(b"4")
    os.utime(src / "old", ns=(0, -5_000_000_000))  # before 1970
    os.utime(src / "future", (0, 8 ** 11 + 7))  # past the 11 octal digits
    data = b"".join(tar_chunks(scan(src)))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = {m.name: m for m in tar.getmembers()}
    assert set(got) == {"d" * 120, f"{'d' * 120}/{UNICODE_NAME}", BAD_NAME, "long-target",
                        "old", "future"}
    assert got["long-target"].linkname == "t" * 200
    assert got["old"].mtime == -5 and got["future"].mtime == 8 ** 11 + 7
    assert all((m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "") for m in got.values())
    assert all(set(m.pax_headers) <= {"path", "linkpath", "mtime", "hdrcharset"}
               for m in got.values())


def parsed(cls: type[tarfile.TarInfo], block: bytes) -> object:
    try:
        info = cls.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as exc:
        return type(exc).__name__
    return (info.name, info.mode, info.uid, info.gid, info.size, info.mtime, info.chksum,
            info.type, info.linkname, info.uname, info.gname, info.devmajor, info.devminor)


def test_the_fast_header_parser_takes_the_common_header(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    block = _ustar(b"dir/name", tarfile.REGTYPE, 0o644, 5, T0, b"")
    want = parsed(tarfile.TarInfo, block)
    monkeypatch.setattr(tarfile.TarInfo, "frombuf", None)  # no fallback to be had
    assert parsed(_TarInfo, block) == want


FIELDS = [0, 99, 100, 107, 108, 124, 130, 135, 136, 148, 156, 157, 257, 265, 297, 329,
          337, 345, 400, 499]


def field(size: int) -> st.SearchStrategy[bytes]:
    """Bytes where they matter: slashes, NULs, spaces, non-ASCII."""
    return st.lists(st.sampled_from(b"ab/. \0\xe9\xff"), max_size=size).map(bytes)


@settings(max_examples=300, deadline=None)
@given(name=field(100), link=field(100),
       kind=st.sampled_from([b"0", b"1", b"2", b"5", b"3", b"6", b"x", b"L", b"S", b"\0"]),
       mode=st.integers(0, 0o7777777), size=st.integers(0, 8 ** 11 - 1),
       mtime=st.integers(0, 8 ** 11 - 1), prefix=field(155),
       owner=field(32),
       changes=st.lists(st.tuples(st.one_of(st.sampled_from(FIELDS), st.integers(0, 511)),
                                  st.sampled_from(b"0179 \0\x80\xff/_x\t\xe9")), max_size=8),
       fix_checksum=st.booleans())
def test_the_fast_header_parser_agrees_with_tarfile(
        name: bytes, link: bytes, kind: bytes, mode: int, size: int, mtime: int,
        prefix: bytes, owner: bytes, changes: list[tuple[int, int]],
        fix_checksum: bool) -> None:
    block = bytearray(_ustar(name, kind, mode, size, mtime, link))
    block[345:345 + len(prefix)] = prefix
    block[265:265 + len(owner)] = owner
    for at, value in changes:
        block[at] = value
    if fix_checksum:
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\0 " % sum(block)
    assert parsed(_TarInfo, bytes(block)) == parsed(tarfile.TarInfo, bytes(block))


def test_chunks_are_bounded_and_files_read_in_pieces(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(5 << 20))
    for i in range(50):
        (src / f"small{i}").write_bytes(b"s" * i)
    tree = scan(src)
    chunks = list(tar_chunks(tree, chunk=256 << 10))
    assert max(len(c) for c in chunks) <= 2 * (256 << 10)
    assert len(chunks) >= 20
    packed = list(Packer(tree, level=1, chunk=256 << 10))
    assert all(len(c) == 256 << 10 for c in packed[:-1])


@pytest.mark.parametrize("change", ["grow", "shrink", "replace"])
def test_a_file_changing_while_packed_is_an_error(tmp_path: Path, change: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 100_000)
    tree = scan(src)
    if change == "grow":
        with open(src / "f", "ab") as f:
            f.write(b"more")
    elif change == "shrink":
        os.truncate(src / "f", 10)
    else:  # the old file kept, so its inode number is not reused at once
        (src / "f").rename(tmp_path / "old-f")
        (src / "f").write_bytes(b"x" * 100_000)
    with pytest.raises(TransferError, match="while it was being packed"):
        list(tar_chunks(tree))


@pytest.mark.parametrize("change,message", [("grow", "grew"), ("shrink", "shrank")])
def test_a_file_changing_during_its_read_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, message: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 300_000)
    tree = scan(tmp_path)
    real_read = os.read

    def read_and_change(fd: int, size: int) -> bytes:
        with open(path, "ab") as f:  # after the size was checked, before it is read
            if change == "shrink":
                f.truncate(1000)
            else:
                f.write(b"more")
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", read_and_change)
    with pytest.raises(TransferError, match=message):
        list(tar_chunks(tree, chunk=100_000))


def test_level_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tree = scan(tmp_path / "src")
    for level in (0, MAX_LEVEL + 1):
        with pytest.raises(UsageError, match="level"):
            Packer(tree, level=level)
    with pytest.raises(RuntimeError):
        _ = Packer(tree).tree_sha256


# -- scanning ----------------------------------------------------------------------------

def test_scan_refuses_what_cannot_be_restored_listing_every_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    os.mkfifo(src / "sub" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    (tmp_path / "outside").write_text("shared")
    os.link(tmp_path / "outside", src / "linked-from-outside")  # packed as its content
    (src / "fine").write_text("ok")
    os.link(src / "fine", src / "fine-too")  # both links inside: kept
    expected = ["sub/fifo (a FIFO)", "sock (a socket)"]
    if ROOT:
        os.mknod(src / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        expected.append("chr (a character device)")
    try:
        with pytest.raises(UsageError) as caught:
            scan(src)
    finally:
        sock.close()
    message = str(caught.value)
    assert f"{len(expected)} entries" in message
    for item in expected:
        assert item in message
    assert "fine" not in message.partition(":")[2] and "linked-from-outside" not in message


def test_scan_lists_the_first_twenty_and_counts_the_rest(tmp_path: Path) -> None:
    for i in range(25):
        os.mkfifo(tmp_path / f"fifo{i:02d}")
    with pytest.raises(UsageError) as caught:
        scan(tmp_path)
    message = str(caught.value)
    assert "fifo19" in message and "fifo20" not in message and "and 5 more" in message


def test_scan_follows_the_root_symlink_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("x")
    os.symlink("d", src / "to-d")
    os.symlink(src, tmp_path / "root-link")
    tree = scan(tmp_path / "root-link")
    assert [(e.path, e.kind) for e in tree.entries] == [
        ("d", "dir"), ("d/f", "file"), ("to-d", "symlink")]
    assert tree_sha256(tree) == tree_sha256(scan(src))


def test_scan_refuses_a_root_that_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        scan(tmp_path / "file")
    with pytest.raises(UsageError, match="does not exist"):
        scan(tmp_path / "missing")


def test_entries_sorted_by_bytes_directories_first(box: Path) -> None:
    high = os.fsdecode(b"\xff")  # sorts last as bytes, before "😀" as a str
    for rel in ("b/z", "a.txt", "a/b", "B", "é", high, "😀"):
        (box / rel).parent.mkdir(parents=True, exist_ok=True)
        (box / rel).write_text("x")
    paths = [e.path for e in scan(box).entries]
    assert paths == ["B", "a", "a.txt", "a/b", "b", "b/z", "é", "😀", high]


# -- hostile archives --------------------------------------------------------------------

@pytest.fixture
def box(tmp_path: Path) -> Path:
    """An empty directory of the test's own (the autouse fixture puts ``work`` in
    tmp_path)."""
    path = tmp_path / "box"
    path.mkdir()
    return path


@pytest.fixture
def arena(box: Path) -> Iterator[Callable[[list[Member] | bytes], UnsafeRemoteData]]:
    """Extract a hand-made archive into ``box/into``, expect a refusal, and check that
    nothing outside ``into`` was written or changed."""
    tmp_path = box
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("keep")
    into = tmp_path / "into"
    into.mkdir()

    def run(members: list[Member] | bytes) -> UnsafeRemoteData:
        tar = members if isinstance(members, bytes) else hand_tar(members)
        with pytest.raises(UnsafeRemoteData) as caught:
            extract(io.BytesIO(zst(tar)), into)
        return caught.value

    yield run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["into", "outside"]
    assert [p.name for p in outside.iterdir()] == ["sentinel"]
    assert (outside / "sentinel").read_text() == "keep"
    assert stat.S_IMODE((outside / "sentinel").stat().st_mode) == 0o644


def test_absolute_path_refused(box: Path, arena: Any) -> None:
    err = arena([member(str(box / "outside" / "evil"), data=b"x")])
    assert "absolute" in str(err)


@pytest.mark.parametrize("name", ["../outside/evil", "a/../../outside/evil", ".."])
def test_dot_dot_refused(arena: Any, name: str) -> None:
    assert "'..'" in str(arena([member("a", tarfile.DIRTYPE, mode=0o755),
                                member(name, data=b"x")]))


@pytest.mark.parametrize("target", ["ABS", "..", "../outside"])
def test_nothing_is_written_through_a_symlink(box: Path, arena: Any, target: str) -> None:
    target = str(box / "outside") if target == "ABS" else target
    inner = "outside/evil" if target == ".." else "evil"
    err = arena([member("link", tarfile.SYMTYPE, link=target),
                 member(f"link/{inner}", data=b"x")])
    assert "through the symlink 'link'" in str(err)
    assert os.readlink(box / "into" / "link") == target  # the link itself is kept


def test_a_directory_through_a_symlink_refused(box: Path, arena: Any) -> None:
    arena([member("link", tarfile.SYMTYPE, link=str(box / "outside")),
           member("link/sub", tarfile.DIRTYPE, mode=0o755)])


@pytest.mark.parametrize("target", ["../outside/sentinel", "ABS", "link", "missing", "d"])
def test_hard_links_only_to_files_of_the_archive(box: Path, arena: Any,
                                                 target: str) -> None:
    target = str(box / "outside" / "sentinel") if target == "ABS" else target
    arena([member("d", tarfile.DIRTYPE, mode=0o755),
           member("link", tarfile.SYMTYPE, link=str(box / "outside" / "sentinel")),
           member("h", tarfile.LNKTYPE, link=target)])


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, b"Z"])
def test_devices_fifos_and_unknown_types_refused(box: Path, arena: Any,
                                                 kind: bytes) -> None:
    info, data = member("dev", kind)
    info.devmajor, info.devminor = 1, 3
    assert "type a package may not hold" in str(arena([(info, data)]))
    assert not (box / "into" / "dev").exists()


@pytest.mark.parametrize("first,second", [
    (tarfile.REGTYPE, tarfile.REGTYPE), (tarfile.DIRTYPE, tarfile.DIRTYPE),
    (tarfile.DIRTYPE, tarfile.REGTYPE), (tarfile.SYMTYPE, tarfile.REGTYPE)])
def test_duplicate_paths_refused(box: Path, arena: Any, first: bytes,
                                 second: bytes) -> None:
    err = arena([member("dup", first, b"one", link=str(box / "outside" / "sentinel")),
                 member("./dup", second, b"two")])
    assert "'dup' twice" in str(err)


def test_an_entry_needs_its_directory_before_it(arena: Any) -> None:
    assert "before its directory" in str(arena([member("f", data=b"x"),
                                                member("f/child", data=b"y")]))
    assert "before its directory" in str(arena([member("nodir/child", data=b"y")]))


def test_an_impossible_mtime_refused(arena: Any) -> None:
    info, data = member("f", data=b"x")
    info.pax_headers = {"mtime": "1e300"}
    assert "impossible mtime" in str(arena([(info, data)]))


@pytest.mark.parametrize("name", ["", "x" * 120 + "\0" + "y"])
def test_empty_and_nul_names_refused(arena: Any, name: str) -> None:
    assert "empty" in str(arena([member(name, data=b"x")]))


def test_a_huge_header_is_refused_without_reading_it(arena: Any) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 1 << 30
    tar = header.tobuf(tarfile.USTAR_FORMAT) + b"10 path=x\n".ljust(512, b"\0")
    assert "refusing to hold it in memory" in str(arena(tar))


def test_setuid_and_setgid_bits_are_dropped(tmp_path: Path) -> None:
    data = zst(hand_tar([member("suid", data=b"#!/bin/sh\n", mode=0o6755),
                         member("sticky", data=b"", mode=0o1644)]))
    got = extract_bytes(data, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "sticky").stat().st_mode) == 0o1644
    assert (tmp_path / "out" / "suid").read_bytes() == b"#!/bin/sh\n"
    assert got.files == 2


# -- truncated and corrupt streams -------------------------------------------------------

@pytest.fixture
def packed(tmp_path: Path) -> bytes:
    src = make_sample(tmp_path / "src", big=1 << 20)
    return pack(scan(src), level=1)[0]


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[:len(d) // 2], "truncated"),
    (lambda d: d[:200], r"truncated|empty"),
    (lambda d: b"", "empty"),
    (lambda d: d[:len(d) // 2] + bytes([d[len(d) // 2] ^ 0xFF]) + d[len(d) // 2 + 1:],
     r"zstd|corrupt"),
    (lambda d: d + b"trailing junk", "zstd"),
    (lambda d: b"not zstd at all" * 100, "zstd"),
])
def test_damaged_streams_give_a_clear_error(tmp_path: Path, packed: bytes,
                                            damage: Callable[[bytes], bytes],
                                            message: str) -> None:
    with pytest.raises(UnsafeRemoteData, match=message) as caught:
        extract_bytes(damage(packed), tmp_path / "out")
    assert isinstance(caught.value, TychoError) and caught.value.exit_code == 3


@pytest.mark.parametrize("cut", ["inside a file", "at a header", "one end block"])
def test_a_tar_cut_short_is_refused(tmp_path: Path, cut: str) -> None:
    tar = hand_tar([member("a", data=b"x" * 5000), member("b", data=b"y" * 100)])
    length = {"inside a file": 3000, "at a header": 512 + 5120,
              "one end block": 512 + 5120 + 1024 + 512}[cut]
    with pytest.raises(UnsafeRemoteData, match=r"truncated|two zero blocks"):
        extract_bytes(zst(tar[:length]), tmp_path / "out")


def test_a_corrupt_header_after_the_first_is_refused(tmp_path: Path) -> None:
    tar = bytearray(hand_tar([member("a", data=b"x"), member("b", data=b"y")]))
    tar[1024 + 10] ^= 0xFF  # the second header's name: its checksum no longer matches
    with pytest.raises(UnsafeRemoteData, match="corrupt"):
        extract_bytes(zst(bytes(tar)), tmp_path / "out")


# -- the pipe ----------------------------------------------------------------------------

def run_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, errors


def test_pipe_carries_bytes_in_order_within_its_limit() -> None:
    payload = os.urandom(3 << 20)
    pipe = ChunkPipe(limit=256 << 10)

    def writer() -> None:
        at, sizes = 0, [1, 1000, 70_000, 300_000, 5]
        while at < len(payload):
            size = sizes[at % len(sizes)]
            pipe.write(payload[at:at + size])
            at += size
        pipe.close()

    thread, errors = run_thread(writer)
    got = bytearray()
    n = 1
    while data := pipe.read(n):
        assert len(data) <= n
        got += data
        n = len(got) % 7 * 9000 + 1  # reads of many sizes, across the writes' edges
    thread.join(5)
    assert bytes(got) == payload and not errors
    assert pipe.peak <= 300_000 + (256 << 10)
    assert pipe.read(10) == b""


def test_fail_wakes_a_blocked_reader() -> None:
    pipe = ChunkPipe()
    got: list[bytes] = []
    thread, errors = run_thread(lambda: got.append(pipe.read(10)))
    time.sleep(0.05)
    assert thread.is_alive()
    pipe.fail(TransferError("download failed"))
    thread.join(5)
    assert not got and len(errors) == 1 and str(errors[0]) == "download failed"


def test_abandon_unblocks_a_writer_and_refuses_later_writes() -> None:
    pipe = ChunkPipe(limit=10)
    pipe.write(b"x" * 10)
    thread, errors = run_thread(lambda: pipe.write(b"more"))
    time.sleep(0.05)
    assert thread.is_alive()  # blocked: the buffer is full
    pipe.abandon()
    thread.join(5)
    assert not thread.is_alive()
    assert [str(e) for e in errors] == ["the extractor stopped"]
    with pytest.raises(TransferError, match="the extractor stopped"):
        pipe.write(b"again")


def test_data_after_the_tar_is_refused_and_the_writer_released(tmp_path: Path,
                                                               packed: bytes) -> None:
    """Bytes after the tar's end and its padding (here another zstd frame) are refused,
    and the writer feeding the pipe is released, not left blocked."""
    trailing = zstandard.ZstdCompressor().compress(os.urandom(1 << 20))
    pipe = ChunkPipe(limit=64 << 10)

    def writer() -> None:
        data = packed + trailing
        for at in range(0, len(data), 10_000):
            pipe.write(data[at:at + 10_000])
        pipe.close()

    thread, errors = run_thread(writer)
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeRemoteData, match="after the end of its tar"):
        try:
            extract(pipe, tmp_path / "out")
        finally:
            pipe.abandon()
    thread.join(5)
    assert not thread.is_alive()
    assert [str(e) for e in errors] in ([], ["the extractor stopped"])


@pytest.mark.parametrize("limit", [0, 5000, 1 << 20])
def test_the_limit_stops_decompression_past_it(tmp_path: Path, limit: int) -> None:
    """A bomb (16 MiB of zeros in a few hundred bytes) refused with the caller's error
    once the tar passes the limit: never more than the limit written to disk."""
    bomb = zst(hand_tar([member("d", tarfile.DIRTYPE), member("d/zeros", data=bytes(16 << 20))]))
    error = UnsafeRemoteData("too big")
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeRemoteData) as raised:
        extract(io.BytesIO(bomb), tmp_path / "out", Limit(limit, error))
    assert raised.value is error
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= limit


def test_a_tar_of_exactly_the_limit_extracts(tmp_path: Path, packed: bytes) -> None:
    size = len(zstandard.ZstdDecompressor().decompress(packed, max_output_size=1 << 30))
    (tmp_path / "out").mkdir()
    got = extract(io.BytesIO(packed), tmp_path / "out",
                  Limit(size, UnsafeRemoteData("too big")))
    assert got.tar_size == size
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "src")


def test_a_refused_extraction_releases_the_writer(tmp_path: Path) -> None:
    bad = zst(hand_tar([member("/etc/evil", data=b"x")])) + os.urandom(1 << 20)
    pipe = ChunkPipe(limit=4096)

    def writer() -> None:
        for at in range(0, len(bad), 1000):
            pipe.write(bad[at:at + 1000])
        pipe.close()

    thread, errors = run_thread(writer)
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeRemoteData):
        try:
            extract(pipe, tmp_path / "out")
        finally:
            pipe.abandon()
    thread.join(5)
    assert not thread.is_alive()
    assert [str(e) for e in errors] == ["the extractor stopped"]


# -- random trees ------------------------------------------------------------------------

NAMES = st.text(alphabet="abcXYZ019é☃ -_.", min_size=1, max_size=8).filter(
    lambda n: n not in (".", ".."))
FILE = st.tuples(st.binary(max_size=300), st.sampled_from([0o644, 0o755, 0o600, 0o444]))
LINK = st.text(alphabet="ab./é", min_size=1, max_size=12)
SHAPE = st.recursive(
    st.one_of(FILE, LINK.map(lambda t: ("link", t))),
    lambda kids: st.dictionaries(NAMES, kids, max_size=4), max_leaves=12)


def build(path: Path, shape: Any) -> None:
    if isinstance(shape, dict):
        path.mkdir()
        for name, kid in shape.items():
            build(path / name, kid)
    elif shape[0] == "link":
        os.symlink(shape[1], path)
    else:
        path.write_bytes(shape[0])
        os.chmod(path, shape[1])


@settings(max_examples=25, deadline=None)
@given(shape=st.dictionaries(NAMES, SHAPE, max_size=5), base=st.integers(-2 ** 30, 2 ** 33))
def test_random_trees_round_trip(shape: dict[str, Any], base: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        build(src, shape)
        set_mtimes(src, base)
        tree = scan(src)
        data, packer = pack(tree, level=1)
        got = extract_bytes(data, out)
        assert snapshot(out) == snapshot(src)
        assert got.tree_sha256 == packer.tree_sha256 == tree_sha256(tree)


# -- local directory mechanics -----------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temp_dir_is_swept_once_its_process_is_gone(tmp_path: Path) -> None:
    temp = LocalFS().create_temp_dir(tmp_path / "pkg")
    assert temp.parent == tmp_path and temp.is_dir() and not any(temp.iterdir())
    assert temp.name.startswith(".pkg.tychoreg-") and temp.name.endswith(".part")
    stale = tmp_path / f".pkg{localfs.TEMP_MARK}{localfs._host()}-{dead_pid()}-abcd.part"
    (stale / "d").mkdir(parents=True)
    (stale / "d" / "f").write_text("x")
    os.chmod(stale / "d", 0o555)
    LocalFS().sweep_stale(tmp_path)
    assert not stale.exists()
    assert temp.is_dir()  # ours: alive


def test_replace_dir_swaps_and_removes_the_old_one(box: Path) -> None:
    fs = LocalFS()
    dest = box / "pkg"
    for content in ("one", "two"):
        temp = fs.create_temp_dir(dest)
        (temp / "f").write_text(content)
        old = fs.replace_dir(temp, dest)
        assert (dest / "f").read_text() == content
        if content == "one":
            assert old is None
        else:  # the old tree is handed back, for the caller to remove once recorded
            assert old is not None and (old / "f").read_text() == "one"
            fs.remove_tree(old)
        assert sorted(p.name for p in box.iterdir()) == ["pkg"]


def test_a_crash_between_the_renames_is_recovered(box: Path) -> None:
    dest = box / "pkg"
    old = box / f".pkg.old-{localfs._host()}-{dead_pid()}-00000001"
    older = box / f".pkg.old-{localfs._host()}-{dead_pid()}-00000002"
    users = box / ".pkg.old-backup"  # not of our making: never touched
    users.mkdir()
    older.mkdir()
    time.sleep(0.01)
    old.mkdir()
    (old / "f").write_text("previous")
    live = box / f".pkg.old-{localfs._host()}-{os.getpid()}-00000003"  # a replace under way
    live.mkdir()
    assert LocalFS().recover_dir(dest) is True
    assert (dest / "f").read_text() == "previous"
    assert sorted(p.name for p in box.iterdir()) == sorted([live.name, users.name, "pkg"])
    older.mkdir()
    assert LocalFS().recover_dir(dest) is False  # dest present: leftovers removed
    assert (dest / "f").read_text() == "previous" and not older.exists()


def test_remove_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = LocalFS()
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o555)
    tree = tmp_path / "tree"
    (tree / "ro" / "deeper").mkdir(parents=True)
    (tree / "ro" / "deeper" / "f").write_text("x")
    os.symlink(outside, tree / "ro" / "link")
    os.chmod(tree / "ro" / "deeper", 0o500)
    os.chmod(tree / "ro", 0o555)
    real_rmtree = shutil.rmtree
    calls: list[str] = []

    def rmtree_once_denied(path: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(str(path))
        if len(calls) == 1:  # as a non-root user meets a read-only directory
            raise PermissionError(13, "Permission denied")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree_once_denied)  # localfs imports it lazily
    fs.remove_tree(tree)
    assert not tree.exists() and len(calls) == 2
    assert stat.S_IMODE(outside.stat().st_mode) == 0o555  # never followed
    fs.remove_tree(tmp_path / "missing")
    os.symlink(outside, tmp_path / "link")
    fs.remove_tree(tmp_path / "link")
    assert outside.is_dir() and not (tmp_path / "link").exists()
