"""Directory packages: a deterministic tar+zstd stream out, a safe extraction in.

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

Extraction trusts nothing in the stream: see :func:`extract`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
import tarfile
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

import zstandard

from . import __version__
from .errors import TransferError, TychoError, UnsafeRemoteData, UsageError
from .hashing import BackgroundSha256
from .layout import PROOF
from .localfs import failure
from .units import plural

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

_BLOCK = 512
_RECORD = 20 * _BLOCK
_ZERO_BLOCK = bytes(_BLOCK)
_MODE_KEPT = 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)  # what extraction restores
_MAX_HEADER = 16 << 20  # a pax or long-name header larger than this is hostile
_READ_SIZE = 1 << 20
_LISTED = 20  # offending paths named in a refusal
_TO_ASCII = bytes(range(128)) + b"?" * 128

# name, mode, uid, gid, size, mtime, chksum, type, linkname, magic+version, uname, gname,
# devmajor, devminor, prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_FAST_TYPES = (tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE)

_DIR, _FILE, _HARDLINK, _SYMLINK = "dir", "file", "hardlink", "symlink"
_TYPEFLAG = {_DIR: tarfile.DIRTYPE, _FILE: tarfile.REGTYPE, _HARDLINK: tarfile.LNKTYPE,
             _SYMLINK: tarfile.SYMTYPE}


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the canonical tar. ``kind`` is "dir", "file", "hardlink" or
    "symlink"; ``path`` is relative, POSIX, surrogate-escaped; ``link`` is a symlink's
    target or, for a hard link, the path of the first link."""

    path: str
    kind: str
    mode: int
    mtime: int
    size: int = 0
    link: str = ""
    dev: int = 0  # with ``ino``: which file was scanned, to notice it being replaced
    ino: int = 0


@dataclass(frozen=True)
class Tree:
    """A scanned directory: ``files`` counts regular-file paths (hard links included),
    ``bytes`` the content stored once per file."""

    root: Path
    entries: tuple[Entry, ...]
    files: int
    bytes: int
    dirs: int
    symlinks: int


@dataclass(frozen=True)
class Extracted:
    """What :func:`extract` wrote, counted as :class:`Tree` counts it."""

    files: int
    dirs: int
    symlinks: int
    bytes: int
    tree_sha256: str
    tar_size: int


@dataclass(frozen=True)
class Limit:
    """The most bytes the decompressed tar may hold, and the error raised as soon as it
    holds more (the caller's words: a recorded tree_size, or a default bound)."""

    size: int
    error: TychoError


class Source(Protocol):
    """What extraction reads the compressed bytes from: an open file or a ChunkPipe."""

    def read(self, size: int = -1, /) -> bytes: ...


# -- scanning ----------------------------------------------------------------------------

def scan(root: Path) -> Tree:
    """Walk ``root`` (following it if it is a symlink, and no symlink inside) and refuse,
    all in one message, whatever a pull could never restore as it was. The proof a pull
    wrote at the root (a regular file) is not part of the tree."""
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise UsageError(f"{root} is not a directory")
    except FileNotFoundError:
        raise UsageError(f"{root} does not exist") from None
    except OSError as exc:
        raise failure(exc, f"read {root}") from exc
    found = [(os.fsencode(rel), rel, st) for rel, _, st in _walk(root, lenient=False)]
    found.sort(key=lambda item: item[0])
    return _tree(root, found)


def _walk(root: Path, *, lenient: bool) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every entry below ``root`` (in no order) as its relative path, its path and its
    lstat; no symlink inside is followed, and the proof a pull wrote at the root (a
    regular file) is left out. ``lenient``, for a pulled tree its user may be editing
    (:func:`manifest`): an entry that vanished meanwhile is skipped, and a directory
    without read and search permission is listed but not entered; otherwise (a tree to
    pack) both are errors."""
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        directory = os.path.join(root, rel_dir) if rel_dir else os.fspath(root)
        try:
            with os.scandir(directory) as listing:
                items = list(listing)
        except OSError as exc:
            if lenient and isinstance(exc, FileNotFoundError):
                continue
            raise failure(exc, f"read {directory}") from exc
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as exc:
                if lenient and isinstance(exc, FileNotFoundError):
                    continue
                raise failure(exc, f"read {item.path if lenient else directory}") from exc
            if rel == PROOF and stat.S_ISREG(st.st_mode):
                continue
            yield rel, item.path, st
            searchable = st.st_mode & stat.S_IRUSR and st.st_mode & stat.S_IXUSR
            if stat.S_ISDIR(st.st_mode) and (searchable or not lenient):
                pending.append(rel)


def _tree(root: Path, found: list[tuple[bytes, str, os.stat_result]]) -> Tree:
    """The entries of ``found`` (sorted). A file with several links is stored once, at
    its first path inside the tree; its other paths inside are hard-link entries to that
    one. Links outside the tree (a uv or conda cache) are not part of it, as for tar: a
    file linked from outside only once is a plain file, so the tar, and ``tree_sha256``,
    are those of a copy of the tree."""
    first_link: dict[tuple[int, int], str] = {}
    entries: list[Entry] = []
    refused: list[str] = []
    files = size = dirs = symlinks = 0
    for _, rel, st in found:
        mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000
        if rel == PROOF:
            refused.append(f"{rel} (the name of the proof a pull writes, and not a file)")
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, _DIR, mode, mtime))
            dirs += 1
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(os.path.join(root, rel))
            except OSError as exc:
                raise failure(exc, f"read {root / rel}") from exc
            entries.append(Entry(rel, _SYMLINK, mode, mtime, link=target))
            symlinks += 1
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            files += 1
            if key in first_link:
                entries.append(Entry(rel, _HARDLINK, mode, mtime, link=first_link[key]))
                continue
            if st.st_nlink > 1:
                first_link[key] = rel
            entries.append(Entry(rel, _FILE, mode, mtime, st.st_size, dev=st.st_dev,
                                 ino=st.st_ino))
            size += st.st_size
        else:
            refused.append(f"{rel} ({_kind_name(st.st_mode)})")
    if refused:
        listed = "\n  ".join(refused[:_LISTED])
        more = f"\n  and {len(refused) - _LISTED} more" if len(refused) > _LISTED else ""
        raise UsageError(f"cannot pack {root}: {plural(len(refused), 'entry', 'entries')} "
                         f"could never be restored as they are:\n  {listed}{more}")
    return Tree(root, tuple(entries), files, size, dirs, symlinks)


def _kind_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    return "not a file, directory or symlink"


# -- packing -----------------------------------------------------------------------------

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
        if entry.kind == _FILE and entry.size:
            yield from _file_data(os.path.join(root, entry.path), entry, buf, chunk)
            total += entry.size + (-entry.size % _BLOCK)
        if len(buf) >= chunk:
            yield bytes(buf)
            buf.clear()
    total += 2 * _BLOCK
    buf += bytes(2 * _BLOCK + (-total % _RECORD))
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
    buf += bytes(-entry.size % _BLOCK)


def _header(entry: Entry) -> bytes:
    """The entry's header blocks: a pax extended header first when a value does not fit
    its ustar field (a long or non-ASCII name, a size of 8 GiB or more, an mtime before
    1970 or after 2242)."""
    name = os.fsencode(entry.path) + (b"/" if entry.kind == _DIR else b"")
    link = os.fsencode(entry.link)
    size = entry.size if entry.kind == _FILE else 0
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
    return pax + payload + bytes(-len(payload) % _BLOCK) + ustar


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
    ]).ljust(_BLOCK, b"\0")
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


# -- the pipe between download and extraction ------------------------------------------

class ChunkPipe:
    """A bounded byte pipe from one writer thread (the download, in order) to one reader
    thread (:func:`extract`).

    ``write`` blocks until its data fits within ``limit`` (or the buffer is empty: one
    write larger than the limit passes alone); ``close`` marks the end; ``fail(exc)``
    makes the reader raise ``exc``, and a writer still writing gets a TransferError.
    Whoever runs the extraction calls ``abandon()`` once it has returned or raised: from
    then on, writes are not buffered but raise ``TransferError("the extractor stopped")``
    at once (a writer blocked in ``write`` too), so the download stops instead of
    fetching bytes nobody reads. ``peak`` is the most ever buffered."""

    def __init__(self, limit: int = 16 << 20) -> None:
        self.limit = limit
        self.peak = 0
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already read
        self._buffered = 0
        self._closed = False
        self._abandoned = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            while (self._buffered and self._buffered + len(data) > self.limit
                   and not self._abandoned and self._error is None):
                self._cond.wait()
            if self._abandoned:
                raise TransferError("the extractor stopped")
            if self._error is not None:
                raise TransferError("the transfer to the extractor was stopped")
            if self._closed:
                raise ValueError("write to a closed ChunkPipe")
            self._chunks.append(bytes(data))
            self._buffered += len(data)
            self.peak = max(self.peak, self._buffered)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._cond.notify_all()

    def abandon(self) -> None:
        with self._cond:
            self._abandoned = True
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all until the end if negative); b"" only at the end."""
        if size < 0:
            return b"".join(iter(lambda: self.read(_READ_SIZE), b""))
        with self._cond:
            while (not self._chunks and not self._closed and self._error is None
                   and not self._abandoned):
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if not self._chunks or size == 0:
                return b""
            first = self._chunks[0]
            data = first[self._offset:self._offset + size]
            self._offset += len(data)
            if self._offset == len(first):
                self._chunks.popleft()
                self._offset = 0
            self._buffered -= len(data)
            self._cond.notify_all()
            return data


# -- extraction --------------------------------------------------------------------------

class _TarStream:
    """The decompressed tar as the file object ``tarfile`` reads (forward seeks only),
    hashing every byte that comes out of the decompressor, read or skipped, and never
    decompressing more than ``limit`` bytes and one."""

    def __init__(self, source: Source, limit: Limit | None = None) -> None:
        self._source = source
        self._limit = limit
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], source), read_size=_READ_SIZE, read_across_frames=True, closefd=False)
        self._buf = b""
        self._at = 0  # position in _buf
        self._pos = 0  # position in the tar
        self.last = b""  # what the last read() returned: the header block tarfile judged
        self.digest = hashlib.sha256()
        self.size = 0

    def _fill(self) -> bool:
        """Load the next decompressed piece; False at the end of the stream."""
        want = _READ_SIZE if self._limit is None else \
            max(1, min(_READ_SIZE, self._limit.size + 1 - self.size))
        try:
            data = self._reader.read(want)
        except zstandard.ZstdError as exc:
            raise UnsafeRemoteData(f"the archive is not valid zstd data: {exc}") from exc
        except OSError as exc:
            raise failure(exc, "read the archive") from exc
        self.digest.update(data)
        self.size += len(data)
        if self._limit is not None and self.size > self._limit.size:
            raise self._limit.error
        self._buf, self._at = data, 0
        return bool(data)

    def read(self, size: int) -> bytes:
        if not 0 <= size <= _MAX_HEADER:
            raise UnsafeRemoteData(f"the archive has a header of {size} bytes at byte "
                                   f"{self._pos}; refusing to hold it in memory")
        pieces = []
        while size:
            if self._at == len(self._buf) and not self._fill():
                break
            piece = self._buf[self._at:self._at + size]
            self._at += len(piece)
            size -= len(piece)
            pieces.append(piece)
        self.last = b"".join(pieces)
        self._pos += len(self.last)
        return self.last

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0 and pos == self._pos:
            return pos
        if whence != 0 or pos < self._pos:
            raise UnsafeRemoteData("the archive asks to go back in the stream")
        self.copy_to(None, pos - self._pos, "skip")
        return self._pos

    def copy_to(self, fd: int | None, size: int, what: str) -> int:
        """Move ``size`` bytes from the stream to ``fd`` (None: discard them); returns
        how many there were before the end."""
        left = size
        while left:
            if self._at == len(self._buf) and not self._fill():
                break
            piece = memoryview(self._buf)[self._at:self._at + left]
            self._at += len(piece)
            left -= len(piece)
            while fd is not None and piece:
                try:
                    piece = piece[os.write(fd, piece):]
                except OSError as exc:
                    raise failure(exc, what) from exc
        self._pos += size - left
        return size - left

    def drain(self) -> None:
        """Read the rest after the tar's end-of-archive: zeros up to a whole record (the
        padding tar writers add), then the end of the decompressed stream; anything more
        is refused. Then the source itself, so a writer feeding it never waits on a
        reader that has gone."""
        padding = -self._pos % _RECORD
        rest = self.read(padding + 1)
        if len(rest) > padding or rest.count(0) != len(rest):
            raise UnsafeRemoteData(f"the archive has data after the end of its tar (at "
                                   f"byte {self._pos - len(rest)})")
        try:
            while self._source.read(_READ_SIZE):
                pass
        except OSError as exc:
            raise failure(exc, "read the archive") from exc


class _TarInfo(tarfile.TarInfo):
    """tarfile's TarInfo, with the common header (a file, directory, hard link or
    symlink, octal numbers, the unsigned checksum) parsed twice as fast, to the same result;
    any other block goes to tarfile's own parser. Parsing headers was most of the time
    of extracting many small files."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _TarInfo:
        if len(buf) != _BLOCK or buf[156:157] not in _FAST_TYPES:
            return super().frombuf(buf, encoding, errors)
        (name, mode, uid, gid, size, mtime, chksum, kind, link, _, uname, gname, major,
         minor, prefix) = _HEADER.unpack(buf)
        try:
            numbers = [int(field.split(b"\0", 1)[0] or b"0", 8)
                       for field in (mode, uid, gid, size, mtime, chksum, major, minor)]
        except ValueError:  # base-256 numbers, garbage: tarfile decides
            return super().frombuf(buf, encoding, errors)
        if numbers[5] != sum(buf) - sum(chksum) + 8 * 32:
            return super().frombuf(buf, encoding, errors)
        obj = cls()
        (obj.mode, obj.uid, obj.gid, obj.size, obj.mtime, obj.chksum, obj.devmajor,
         obj.devminor) = numbers
        obj.type = kind
        obj.name = name.split(b"\0", 1)[0].decode(encoding, errors)
        obj.linkname = link.split(b"\0", 1)[0].decode(encoding, errors)
        obj.uname = uname.split(b"\0", 1)[0].decode(encoding, errors)
        obj.gname = gname.split(b"\0", 1)[0].decode(encoding, errors)
        if kind == tarfile.DIRTYPE:
            obj.name = obj.name.rstrip("/")
        prefix = prefix.split(b"\0", 1)[0]
        if prefix:
            obj.name = f"{prefix.decode(encoding, errors)}/{obj.name}"
        return obj


class _Extraction:
    """The state of one extraction: what this archive has created, by normalized path."""

    def __init__(self, stream: _TarStream, into: Path) -> None:
        self.stream = stream
        self.root = os.fspath(into)
        self.kinds: dict[str, str] = {}
        self.dirs: list[tuple[str, int, int]] = []  # path, mode, mtime in ns
        self.files = self.bytes = self.symlinks = 0

    def add(self, member: tarfile.TarInfo) -> None:
        name = _safe_path(member.name, member.name)
        if not name:
            if member.isdir():
                return  # "./": the root, which the caller made
            raise UnsafeRemoteData(f"the archive has an entry with an empty name: "
                                   f"{member.name!r}")
        if name in self.kinds:
            raise UnsafeRemoteData(f"the archive has {name!r} twice")
        if name == PROOF:
            raise UnsafeRemoteData(f"the archive holds {PROOF!r}, the name of the proof a "
                                   "pull writes into the directory it extracts")
        parent = name.rpartition("/")[0]
        if parent and self.kinds.get(parent) != _DIR:
            raise UnsafeRemoteData(self._misplaced(name, parent))
        path = os.path.join(self.root, name)
        try:
            if member.isdir():
                ns = _mtime_ns(member, name)
                os.mkdir(path, 0o700)  # writable until the end, when its mode is set
                self.dirs.append((path, member.mode & _MODE_KEPT, ns))
            elif member.isreg():
                self._file(path, name, member)
            elif member.issym():
                self._symlink(path, name, member)
            elif member.islnk():
                self._hardlink(path, name, member)
            else:
                raise UnsafeRemoteData(f"the archive has {name!r} of a type a package may "
                                       f"not hold ({_type_name(member)})")
        except FileExistsError:
            raise UnsafeRemoteData(f"the archive has {name!r} twice (perhaps differing "
                                   "only in case or Unicode form)") from None
        except OSError as exc:
            raise failure(exc, f"write {path}") from exc
        self.kinds[name] = _DIR if member.isdir() else _SYMLINK if member.issym() else _FILE

    def _misplaced(self, name: str, parent: str) -> str:
        """Why ``name`` cannot go where it says: through a symlink, or under something
        that is not a directory of this archive (yet)."""
        parts = parent.split("/")
        for end in range(1, len(parts) + 1):
            prefix = "/".join(parts[:end])
            if self.kinds.get(prefix) == _SYMLINK:
                return f"the archive writes {name!r} through the symlink {prefix!r}"
            if self.kinds.get(prefix) != _DIR:
                break
        return (f"the archive has {name!r} before its directory {parent!r}, or "
                f"{parent!r} is not a directory")

    def _file(self, path: str, name: str, member: tarfile.TarInfo) -> None:
        if member.sparse is not None:
            raise UnsafeRemoteData(f"the archive has {name!r} as a sparse file, which a "
                                   "package never holds")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            self.stream.seek(member.offset_data)
            if self.stream.copy_to(fd, member.size, f"write {path}") != member.size:
                raise UnsafeRemoteData(f"the archive is truncated: it ends inside {name!r}")
            os.fchmod(fd, member.mode & _MODE_KEPT)
            ns = _mtime_ns(member, name)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        self.files += 1
        self.bytes += member.size

    def _symlink(self, path: str, name: str, member: tarfile.TarInfo) -> None:
        if not member.linkname or "\0" in member.linkname:
            raise UnsafeRemoteData(f"the archive has the symlink {name!r} with an empty or "
                                   "NUL target")
        os.symlink(member.linkname, path)
        if os.utime in os.supports_follow_symlinks:
            ns = _mtime_ns(member, name)
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        self.symlinks += 1

    def _hardlink(self, path: str, name: str, member: tarfile.TarInfo) -> None:
        target = _safe_path(member.linkname, name)
        if self.kinds.get(target) != _FILE:
            raise UnsafeRemoteData(f"the archive has {name!r} as a hard link to "
                                   f"{member.linkname!r}, which is not a file extracted "
                                   "before it")
        os.link(os.path.join(self.root, target), path, follow_symlinks=False)
        self.files += 1

    def finish_dirs(self) -> None:
        """Directory modes and mtimes last and deepest first, so a read-only directory
        still received its contents and no later write moves its mtime."""
        for path, mode, ns in reversed(self.dirs):
            try:
                os.chmod(path, mode)
                os.utime(path, ns=(ns, ns))
            except OSError as exc:
                raise failure(exc, f"write {path}") from exc


def _safe_path(name: str, entry: str) -> str:
    """``name`` normalized ("." and empty components dropped), or UnsafeRemoteData if it
    could point outside the directory."""
    if not name or "\0" in name:
        raise UnsafeRemoteData(f"the archive has an empty or NUL path in {entry!r}")
    if name.startswith("/"):
        raise UnsafeRemoteData(f"the archive has an absolute path: {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeRemoteData(f"the archive has a path with '..': {name!r}")
    return "/".join(parts)


def _mtime_ns(member: tarfile.TarInfo, name: str) -> int:
    mtime = member.mtime  # a float when a pax record gave it: whole seconds kept exact
    try:
        whole = math.floor(mtime)
        ns = whole * 1_000_000_000 + round((mtime - whole) * 1e9)
    except (OverflowError, ValueError):  # inf, nan
        ns = 2 ** 63
    if not -(2 ** 63) <= ns < 2 ** 63:
        raise UnsafeRemoteData(f"the archive gives {name!r} an impossible mtime: {mtime}")
    return ns


def _type_name(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return f"type {member.type!r}"


def extract(source: Source, into: Path, limit: Limit | None = None) -> Extracted:
    """Extract the .tar.zst read from ``source`` into the empty directory ``into``.

    Nothing is written outside ``into``: absolute paths, ``..``, paths through a symlink
    of the archive, hard links to anything but a file extracted before, devices, FIFOs,
    sparse files and duplicate paths are refused (UnsafeRemoteData), and every entry's
    parent must be a directory of the archive itself, extracted before it. Files are
    created with O_EXCL|O_NOFOLLOW, symlinks are created and never followed (they may
    point anywhere). setuid and setgid bits are dropped; other mode bits and mtimes are
    kept. The tar must end with its two zero blocks, and nothing but zeros to a whole
    10240-byte record may follow; the SHA-256 of the whole tar is returned for the caller
    to compare with the record. With ``limit``, no more than ``limit.size`` bytes (and
    one) are ever decompressed: a bomb is refused (``limit.error``) before it fills the
    disk. (zstd's streaming reader does not notice a stream cut between two frames or
    inside the final checksum: the SHA-256 does.) On an error, what was written stays in
    ``into`` for the caller to remove."""
    stream = _TarStream(source, limit)
    extraction = _Extraction(stream, into)
    for member in _members(stream):
        extraction.add(member)
    extraction.finish_dirs()
    stream.drain()
    return Extracted(files=extraction.files, dirs=len(extraction.dirs),
                     symlinks=extraction.symlinks, bytes=extraction.bytes,
                     tree_sha256=stream.digest.hexdigest(), tar_size=stream.size)


def _members(stream: _TarStream) -> Iterator[tarfile.TarInfo]:
    """The tar's members, then a check that it ended with two zero blocks: tarfile takes
    a stream cut at a header, or a corrupt header after the first, for the end."""
    try:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r:",
                          tarinfo=_TarInfo) as archive:
            while (member := archive.next()) is not None:
                # tarfile keeps every member (memory grows with the tree); none is needed
                archive.members.clear()  # type: ignore[attr-defined]
                yield member
    except (tarfile.TarError, ValueError, OverflowError) as exc:
        raise UnsafeRemoteData(f"the archive is corrupt or truncated: {exc}") from exc
    end = archive.offset
    if stream.tell() != end + _BLOCK or stream.last != _ZERO_BLOCK:
        raise UnsafeRemoteData(f"the archive is corrupt or truncated at byte {end} of its tar")
    if stream.read(_BLOCK) != _ZERO_BLOCK:
        raise UnsafeRemoteData("the archive's tar does not end with two zero blocks")


# -- the proof of a pulled directory -----------------------------------------------------------

Manifest = dict[str, list[object]]
_EDITS_NAMED = 5  # local edits a warning names


def manifest(root: Path) -> Manifest:
    """Every entry below ``root`` by relative path, the proof at the root left out: a
    file's mode, size and mtime (ns), a symlink's target, a directory's mode. Two
    manifests differ when a file was added, removed, rewritten or touched."""
    found: Manifest = {}
    for rel, path, st in _walk(root, lenient=True):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            try:
                found[rel] = ["l", os.readlink(path)]
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise failure(exc, f"read {path}") from exc
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ["d", mode]
        elif stat.S_ISREG(st.st_mode):
            found[rel] = ["f", mode, st.st_size, st.st_mtime_ns]
        else:
            found[rel] = ["?", stat.S_IFMT(st.st_mode)]
    return found


def write_proof(root: Path, package: str, version: str, etag: str) -> None:
    """Write the proof into a freshly extracted ``root`` (before it is renamed into place,
    so the tree and its proof appear together): the package, version and ETag a pull
    made it from, and the manifest of what the extraction wrote."""
    data = json.dumps({"package": package, "version": version, "etag": etag,
                       "tool": f"tychoreg {__version__}", "manifest": manifest(root)},
                      separators=(",", ":")).encode()
    path = os.path.join(root, PROOF)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise failure(exc, f"write {path}") from exc


def read_proof(root: Path) -> dict[str, Any] | None:
    """The proof inside ``root``, or None when there is none that can be read (a
    symlink, a directory, a FIFO or anything but a regular file, or not a JSON object is
    no proof). O_NONBLOCK: opening a FIFO of that name must not wait for a writer."""
    try:
        fd = os.open(os.path.join(root, PROOF),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            proof = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return proof if isinstance(proof, dict) else None


def local_edits(root: Path, proof: dict[str, Any]) -> list[str]:
    """What changed in ``root`` since the pull its proof describes, by path, each with
    "(added)", "(deleted)" or "(modified)"; [] when the tree is as it was pulled."""
    recorded = proof.get("manifest")
    if not isinstance(recorded, dict):
        return ["(its proof records no manifest)"]
    now = manifest(root)
    edits = [f"{path} (deleted)" if path not in now else f"{path} (modified)"
             for path, entry in recorded.items() if now.get(path) != entry]
    edits += [f"{path} (added)" for path in now if path not in recorded]
    return sorted(edits)


def describe_edits(edits: list[str]) -> str:
    """A few of the edits in words, and how many more there are."""
    named = ", ".join(edits[:_EDITS_NAMED])
    more = len(edits) - _EDITS_NAMED
    return f"{named} and {more} more" if more > 0 else named
