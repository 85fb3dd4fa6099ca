"""Packing out: the canonical tar of a scanned tree, its SHA-256, and the .tar.zst
stream a push uploads (:class:`Packer`).

The canonical tar (what ``tree_sha256`` hashes, so the same tree has the same hash on
every machine, whatever its file system order, owners or atimes):

- POSIX pax format, one entry per directory, regular file, hard link and symlink below
  the root (the root itself has no entry), sorted by relative path as bytes, so each
  directory comes before its contents; names relative, without a ``./`` prefix;
- uid and gid 0, empty user and group names, ``mode & 0o7777``, whole-second mtimes,
  no atime or ctime records; empty device fields;
- a pax extended header (``path``, ``linkpath``, ``size``, ``mtime``, in that order,
  ``hdrcharset=BINARY`` first when a name is not UTF-8) only when the ustar field cannot
  hold the value;
- the second and later paths of a hard-linked file are hard-link entries to the first;
  links outside the tree do not count (a file whose only other links are outside, in a
  uv or conda cache, is a regular file);
- two zero blocks, then zeros to a multiple of 10240 bytes.

The headers are built here rather than by ``tarfile``, whose output has changed between
Python releases (the device fields of 3.11.4): a stored ``tree_sha256`` must not.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator

import zstandard

from ..errors import TransferError, UsageError
from ..hashing import BackgroundSha256
from ..localio import failure
from .tree import BLOCK, DIR, FILE, HARDLINK, RECORD, SYMLINK, Entry, Tree

MIN_LEVEL = 1
MAX_LEVEL = zstandard.MAX_COMPRESSION_LEVEL
# Measured on this 2-core machine (zstd, threads=-1, CPU time, best of 3) on a 131 MB tar
# of a generated tree: the directory benchmark's mix (20,000 small files, 60 % text-like;
# one large random, one large text log, one half-and-half; 47 MiB random in all) plus a
# 10 MiB repetitive log:
#   level 1: 77.3 MB (ratio 1.69), 201 MB/s per core; the text log alone 2.79x
#   level 3: 75.2 MB (ratio 1.74), 150 MB/s per core; the text log alone 3.08x
#   level 6: 75.0 MB (ratio 1.74),  69 MB/s per core; the text log alone 3.15x
# Building the tar runs at about 230 MB/s on one core, so with the other core level 3 is
# not the bottleneck and costs no wall time, for 3 % fewer bytes overall and 10 % on
# text; level 6 would halve the speed for 0.3 % more.
DEFAULT_LEVEL = 3
MAX_WORKERS = 4  # zstd worker threads at most (memory grows with each)
JOB_SIZE = 2 << 20  # bytes of tar per zstd job

_TO_ASCII = bytes(range(128)) + b"?" * 128
_TYPEFLAG = {DIR: tarfile.DIRTYPE, FILE: tarfile.REGTYPE, HARDLINK: tarfile.LNKTYPE,
             SYMLINK: tarfile.SYMTYPE}


def tar_chunks(tree: Tree, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The canonical tar of ``tree`` in chunks of about ``chunk`` bytes, reading each file
    in pieces; a file that changed since the scan is an error, never a silent mix."""
    buf = bytearray()
    root = os.fspath(tree.root)
    total = 0
    for entry in tree.entries:
        header = _header(entry)
        buf += header
        total += len(header)
        if entry.kind == FILE and entry.size:
            yield from _file_data(os.path.join(root, entry.path), entry, buf, chunk)
            total += entry.size + (-entry.size % BLOCK)
        if len(buf) >= chunk:
            yield bytes(buf)
            buf.clear()
    total += 2 * BLOCK
    buf += bytes(2 * BLOCK + (-total % RECORD))
    yield bytes(buf)


def _file_data(path: str, entry: Entry, buf: bytearray, chunk: int) -> Iterator[bytes]:
    """Append the file's bytes and padding to ``buf``, yielding whenever it is full.
    Each read asks for one byte more than is left, so that growth shows without an
    extra call, and a read that stops short exactly at the expected end is the end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise failure(exc, f"read {path}") from exc
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino, st.st_size) != (entry.dev, entry.ino, entry.size):
            raise TransferError(f"{path} changed while it was being packed")
        left = entry.size
        while True:
            want = min(chunk, left + 1)
            data = os.read(fd, want)
            if len(data) > left:
                raise TransferError(f"{path} grew while it was being packed")
            buf += data
            left -= len(data)
            if not data or (not left and len(data) < want):
                break
            if len(buf) >= chunk:
                yield bytes(buf)
                buf.clear()
        if left:
            raise TransferError(f"{path} shrank while it was being packed")
    except OSError as exc:
        raise failure(exc, f"read {path}") from exc
    finally:
        os.close(fd)
    buf += bytes(-entry.size % BLOCK)


def _header(entry: Entry) -> bytes:
    """The entry's header blocks: a pax extended header first when a value does not fit
    its ustar field (a long or non-ASCII name, a size of 8 GiB or more, an mtime before
    1970 or after 2242)."""
    name = os.fsencode(entry.path) + (b"/" if entry.kind == DIR else b"")
    link = os.fsencode(entry.link)
    size = entry.size if entry.kind == FILE else 0
    mtime = entry.mtime
    records: list[tuple[bytes, bytes]] = []
    if len(name) > 100 or not name.isascii():
        records.append((b"path", name))
    if len(link) > 100 or not link.isascii():
        records.append((b"linkpath", link))
    if size >= 8 ** 11:
        records.append((b"size", b"%d" % size))
        size = 0
    if not 0 <= mtime < 8 ** 11:
        records.append((b"mtime", b"%d" % mtime))
        mtime = 0
    ustar = _ustar(_ascii(name), _TYPEFLAG[entry.kind], entry.mode, size, mtime, _ascii(link))
    if not records:
        return ustar
    payload = _pax_payload(records)
    pax = _ustar(b"././@PaxHeader", tarfile.XHDTYPE, 0, len(payload), 0, b"")
    return pax + payload + bytes(-len(payload) % BLOCK) + ustar


def _ascii(value: bytes) -> bytes:
    """The ustar field's stand-in for a value a pax record carries in full."""
    return value[:100].translate(_TO_ASCII)


def _pax_payload(records: list[tuple[bytes, bytes]]) -> bytes:
    binary = False
    for _, value in records:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            binary = True
    out = [b"21 hdrcharset=BINARY\n"] if binary else []
    for key, value in records:
        body = len(key) + len(value) + 3  # " ", "=", "\n"
        length = body + len(str(body))
        length = body + len(str(length))  # counts its own digits: a fixed point in two steps
        out.append(b"%d %s=%s\n" % (length, key, value))
    return b"".join(out)


def _ustar(name: bytes, typeflag: bytes, mode: int, size: int, mtime: int,
           link: bytes) -> bytes:
    block = b"".join([
        name.ljust(100, b"\0"), b"%07o\0" % (mode & 0o7777), b"0000000\0", b"0000000\0",
        b"%011o\0" % size, b"%011o\0" % mtime, b" " * 8, typeflag, link.ljust(100, b"\0"),
        b"ustar\x0000", bytes(32 + 32 + 8 + 8 + 155),
    ]).ljust(BLOCK, b"\0")
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


def tree_sha256(tree: Tree) -> str:
    """The SHA-256 of the canonical tar, without compressing it (``push --skip-existing``
    compares this with the record's before uploading anything)."""
    digest = hashlib.sha256()
    for data in tar_chunks(tree):
        digest.update(data)
    return digest.hexdigest()


class Packer:
    """The compressed stream of a tree, in chunks of ``chunk`` bytes (the last shorter):
    a standard .tar.zst with a content checksum, compressed on ``threads`` worker
    threads (-1: one per CPU, at most 4) in jobs of 2 MiB while the tar is built and
    hashed. Iterate it once; ``tree_sha256``, ``tar_size`` and ``size`` (compressed
    bytes) are known at the end.

    Measured on 2 cores (236 MB tree, 20,000 files, level 3): zstd's default jobs and
    2 workers took 1.17 s and 84 MiB; 2 MiB jobs 0.78 s and 45 MiB, for 0.003 % more
    bytes. Each worker holds a few MiB, hence the cap of 4."""

    def __init__(self, tree: Tree, level: int = DEFAULT_LEVEL, threads: int = -1,
                 chunk: int = 1 << 20) -> None:
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise UsageError(f"the zstd level must be {MIN_LEVEL} to {MAX_LEVEL}, not {level}")
        self.tree = tree
        self.level = level
        self.threads = threads if threads >= 0 else min(MAX_WORKERS, os.cpu_count() or 1)
        self.chunk = chunk
        self.size = 0
        self._tree_sha256: str | None = None
        self._tar_size: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        digest = BackgroundSha256()  # on a thread of its own, beside the tar building
        tar_size = 0
        compressor = zstandard.ZstdCompressor(
            compression_params=zstandard.ZstdCompressionParameters.from_level(
                self.level, threads=self.threads, job_size=JOB_SIZE, write_checksum=True))
        chunker = compressor.chunker(chunk_size=self.chunk)
        try:
            for data in tar_chunks(self.tree, self.chunk):
                digest.update(data)
                tar_size += len(data)
                for out in chunker.compress(data):
                    self.size += len(out)
                    yield out
            for out in chunker.finish():
                self.size += len(out)
                yield out
            self._tree_sha256 = digest.hexdigest()
        finally:
            digest.close()
        self._tar_size = tar_size

    @property
    def tree_sha256(self) -> str:
        if self._tree_sha256 is None:
            raise RuntimeError("Packer.tree_sha256 is known once the stream is consumed")
        return self._tree_sha256

    @property
    def tar_size(self) -> int:
        if self._tar_size is None:
            raise RuntimeError("Packer.tar_size is known once the stream is consumed")
        return self._tar_size
