"""Directory packages through the CLI, on every backend: round trips, what push refuses,
hostile and tampered archives at pull, what a pull may replace, crashes mid-way, and
tycho-station reading the archive as a plain file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tycho_async import localfs
from tycho_async.layout import PROOF

from .support import (
    ONE,
    TWO,
    Registry,
    contents,
    listing,
    make_tree,
    ok,
    put_archive,
    put_version,
    s3_head,
    tree_tar,
)
from .trees import Member, hand_tar, member
from .trees import snapshot as _snapshot

pytestmark = pytest.mark.usefixtures("one_raw_client")

MiB = 1024 * 1024
PART = "5MiB"


# -- helpers ---------------------------------------------------------------------------------


def snapshot_(root: Path) -> dict[str, tuple[Any, ...]]:
    """As trees.snapshot, without symlinks' own mtimes."""
    return _snapshot(root, link_mtimes=False)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- round trips -----------------------------------------------------------------------------

def test_round_trip_keeps_the_tree_across_part_boundaries(registry: Registry) -> None:
    src = make_tree(Path("src"), big=6 * MiB + 123)
    pushed = ok(registry.cli("push", "cache", "1", "src", "--promote-latest",
                             "--part-size", PART))
    assert "initialized cache" in pushed.stdout and "pushed cache 1" in pushed.stdout
    data = registry.get("cache/tycho_1.pkg")
    assert data is not None and data[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    if registry.kind == "s3":  # streamed as a multipart upload, in several parts
        etag = s3_head(registry, "cache/tycho_1.pkg")["ETag"].strip('"')
        assert "-" in etag and int(etag.rsplit("-", 1)[1]) >= 2
    meta = registry.meta("cache")
    assert meta["localname"] == "src.tar.zst" and meta["latest"] == "1"
    copy = meta["tychoreg"]["records"]["1"]
    assert copy["format"] == "tar+zstd"
    assert copy["sha256"] == hashlib.sha256(data).hexdigest() and copy["size"] == len(data)
    assert len(copy["tree_sha256"]) == 64 and copy["tree_sha256"] != copy["sha256"]
    record = json.loads(registry.get("cache/tycho_1.meta.json") or b"")
    assert {k: record[k] for k in ("format", "tree_sha256", "sha256")} == \
        {k: copy[k] for k in ("format", "tree_sha256", "sha256")}

    pulled = ok(registry.cli("pull", "cache"))
    assert "tycho_packages/src" in pulled.stdout
    assert snapshot_(Path("tycho_packages/src")) == snapshot_(src)
    assert listing(Path("tycho_packages")) == ["src"]  # its proof is inside, no sidecar
    assert registry.multipart_uploads() == []


def test_an_empty_tree_pushed_as_dot_round_trips(registry: Registry,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = str(registry.workdir / ".tychoreg.json")
    Path("empty-tree").mkdir()
    monkeypatch.chdir("empty-tree")
    ok(registry.cli("push", "--config", config, "nothing", "1", ".", "--promote-latest"))
    assert listing(Path()) == []  # no temporary archive left in the tree
    monkeypatch.chdir(registry.workdir)
    assert registry.meta("nothing")["localname"] == "empty-tree.tar.zst"
    ok(registry.cli("pull", "nothing"))
    assert Path("tycho_packages/empty-tree").is_dir()
    assert listing(Path("tycho_packages/empty-tree")) == [PROOF]  # nothing but its proof


# -- refused at push -------------------------------------------------------------------------

def test_push_refuses_what_could_never_be_restored_listing_every_path(
        registry: Registry) -> None:
    bad = Path("bad")
    (bad / "sub").mkdir(parents=True)
    (bad / "fine.txt").write_text("fine")
    os.mkfifo(bad / "sub" / "a-fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("bad/a-socket")
    finally:
        sock.close()
    offending = ["sub/a-fifo", "a-socket"]
    try:
        os.mknod(bad / "a-device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        offending.append("a-device")
    except (PermissionError, OSError):
        pass  # not root: the other two still show the rule
    os.symlink("sub/a-fifo", bad / "link-to-fifo")  # a symlink is kept as it is: fine

    result = registry.cli("push", "cache", "1", "bad")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    for path in offending:
        assert path in result.stderr
    assert "fine.txt" not in result.stderr and "link-to-fifo" not in result.stderr
    assert registry.object_keys() == []
    assert registry.multipart_uploads() == []


def test_a_directory_cannot_join_a_package_of_files(registry: Registry) -> None:
    put_version(registry, "pkg", "1", b"a file")
    make_tree(Path("tree"))
    result = registry.cli("push", "pkg", "2", "tree")
    assert result.exit_code == 2
    assert ".tar.zst" in result.stderr
    assert registry.object_keys() == ["pkg/tycho.json", "pkg/tycho_1.meta.json",
                                      "pkg/tycho_1.pkg"]


# -- hostile archives at pull -----------------------------------------------------------------

HOSTILE: dict[str, tuple[Callable[[Path], list[Member]], str]] = {
    "abs": (lambda work: [member(str(work / "escaped-abs"), data=b"pwned")], "absolute"),
    "dotdot": (lambda work: [member("ok", tarfile.DIRTYPE),
                             member("ok/../../../escaped-dotdot", data=b"pwned")], ".."),
    "symlink": (lambda work: [member("link", tarfile.SYMTYPE, link=str(work / "outside-dir")),
                              member("link/pwned", data=b"pwned")], "symlink"),
    "relsymlink": (lambda work: [member("up", tarfile.SYMTYPE, link="../.."),
                                 member("up/escaped-rel", data=b"pwned")], "symlink"),
    "device": (lambda work: [member("null", tarfile.CHRTYPE)], "device"),
    "duplicate": (lambda work: [member("f", data=b"first"), member("f", data=b"second")],
                  "twice"),
}


def test_hostile_archives_are_refused_with_nothing_written(registry: Registry) -> None:
    """Absolute paths, '..', entries written through a symlink of the archive (absolute
    or relative), devices, duplicates: each refused, exit 3, nothing written anywhere."""
    work = registry.workdir
    (work / "outside-dir").mkdir()
    for case, (build, _) in HOSTILE.items():
        put_archive(registry, f"evil-{case}", "1", hand_tar(build(work)))
    before = listing(work)

    one = registry.cli("pull", "evil-abs")
    assert one.exit_code == 3, (one.stdout, one.stderr)
    assert "absolute" in one.stderr and "Traceback" not in one.output

    every = registry.cli("pull-list", *(f"evil-{case}" for case in HOSTILE), "--json")
    assert every.exit_code == 3, every.stderr
    items = {item["package"]: item for item in json.loads(every.stdout)["items"]}
    for case, (_, word) in HOSTILE.items():
        item = items[f"evil-{case}"]
        assert item["exit_code"] == 3 and word in item["error"], (case, item)
        assert f"evil-{case}" in every.stderr

    assert listing(work / "outside-dir") == []
    for name in ("escaped-abs", "escaped-dotdot", "escaped-rel", "pwned"):
        assert not (work / name).exists()
    assert listing(work) in (before, sorted([*before, "tycho_packages"]))
    assert listing(work / "tycho_packages") == []  # no directory, no temp dir, no sidecar


# -- tampered and truncated archives ------------------------------------------------------------

def _tamper(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "flipped":  # the same size
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    # another valid archive: it extracts cleanly, only the SHA-256 tells
    return zstandard.ZstdCompressor().compress(tree_tar({"other.txt": b"x"}))


def test_a_tampered_archive_leaves_the_old_directory_intact(registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    ok(registry.cli("pull", "cache"))
    dest = Path("tycho_packages/cache")
    assert contents(dest) == ONE
    before = snapshot_(dest)
    proof = (dest / PROOF).read_bytes()

    data = put_archive(registry, "cache", "2", tree_tar(TWO))
    for how in ("truncated", "flipped", "another archive"):
        registry.put("cache/tycho_2.pkg", _tamper(data, how))
        result = registry.cli("pull", "cache")
        assert result.exit_code == 3, (how, result.stdout, result.stderr)
        assert "Traceback" not in result.output
        assert snapshot_(dest) == before, how
        assert (dest / PROOF).read_bytes() == proof, how
        assert listing(Path("tycho_packages")) == ["cache"], how


# -- what a pull may replace ------------------------------------------------------------------

def test_outfile_dot_or_the_cwd_is_refused_and_the_checkout_untouched(
        registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    Path("checkout.txt").write_text("my work")
    before = snapshot_(registry.workdir)
    for outfile in (".", str(registry.workdir)):
        result = registry.cli("pull", "cache", "--outfile", outfile)
        assert result.exit_code == 2, (outfile, result.stdout, result.stderr)
        assert "internal error" not in result.stderr
        assert snapshot_(registry.workdir) == before


def test_an_existing_destination_not_made_by_a_pull_is_left_alone(
        registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    Path("tycho_packages/cache").mkdir(parents=True)
    Path("tycho_packages/cache/mine.txt").write_text("mine")
    Path("checkout").mkdir()
    Path("checkout/work.txt").write_text("work")
    Path("a-file").write_text("a file")

    for args in ((), ("--outfile", "checkout"), ("--outfile", "a-file")):
        result = registry.cli("pull", "cache", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.output
    assert listing(Path("tycho_packages")) == ["cache"]
    assert listing(Path("tycho_packages/cache")) == ["mine.txt"]
    assert Path("tycho_packages/cache/mine.txt").read_text() == "mine"
    assert listing(Path("checkout")) == ["work.txt"] and not Path("checkout.etag").exists()
    assert Path("a-file").read_text() == "a file"


def test_a_second_pull_skips_unless_forced_and_a_new_version_replaces(
        registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    ok(registry.cli("pull", "cache", "--outfile", "restored"))
    assert contents(Path("restored")) == ONE
    assert (Path("restored") / PROOF).is_file() and not Path("restored.etag").exists()

    again = ok(registry.cli("pull", "cache", "--outfile", "restored"))
    assert "up to date" in again.stdout

    ok(registry.cli("pull", "cache", "--outfile", "restored", "--force"))
    assert contents(Path("restored")) == ONE

    put_archive(registry, "cache", "2", tree_tar(TWO))
    newer = ok(registry.cli("pull", "cache", "--outfile", "restored"))
    assert "pulled cache 2" in newer.stdout
    assert contents(Path("restored")) == TWO
    assert listing(Path()) == [".tychoreg.json", "restored"]


def test_raw_keeps_the_archive_that_tycho_station_and_tar_read(registry: Registry) -> None:
    if shutil.which("tar") is None or shutil.which("zstd") is None:
        pytest.skip("needs tar and zstd")
    src = make_tree(Path("src"), big=1 * MiB)
    ok(registry.cli("push", "cache", "1", "src", "--promote-latest"))
    stored = registry.get("cache/tycho_1.pkg")  # what tycho-station downloads: the bytes
    assert stored is not None

    ok(registry.cli("pull", "cache", "--raw"))
    archive = Path("tycho_packages/src.tar.zst")
    assert archive.read_bytes() == stored
    assert listing(Path("tycho_packages")) == ["src.tar.zst", "src.tar.zst.etag"]

    Path("as-tycho-station.tar.zst").write_bytes(stored)
    Path("by-tar").mkdir()
    subprocess.run(["tar", "-I", "zstd", "-xf", "as-tycho-station.tar.zst", "-C", "by-tar"],
                   check=True, capture_output=True)
    assert snapshot_(Path("by-tar")) == snapshot_(src)


# -- crashes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["mid-extract", "between the renames"])
def test_the_next_pull_recovers_from_a_crash(registry: Registry, when: str) -> None:
    """What a SIGKILL leaves: mid-extract, a temp directory beside the old one; between the
    two renames, also the old directory (with its proof) renamed aside, and no NAME."""
    put_archive(registry, "cache", "1", tree_tar(ONE))
    ok(registry.cli("pull", "cache"))
    put_archive(registry, "cache", "2", tree_tar(TWO))

    outdir = Path("tycho_packages")
    pid = dead_pid()
    temp = outdir / f".cache{localfs.TEMP_MARK}{localfs._host()}-{pid}-0badc0de" \
                    f"{localfs.TEMP_SUFFIX}"
    (temp / "a").mkdir(parents=True)
    (temp / "a" / "text.txt").write_text("half")
    if when == "between the renames":
        (outdir / "cache").rename(outdir / f".cache.old-{localfs._host()}-{pid}-0badc0de")

    result = registry.cli("pull", "cache")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "pulled cache 2" in result.stdout
    assert contents(outdir / "cache") == TWO
    assert listing(outdir) == ["cache"]
