"""Safe, bounded extraction in: a .tar.zst stream, read from a file or from the
:class:`ChunkPipe` a download feeds, extracted into an empty directory by
:func:`extract`, which trusts nothing in the stream and decompresses no more than its
:class:`Limit`."""

from __future__ import annotations

import hashlib
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
from typing import IO, Protocol, cast

import zstandard

from ..errors import TransferError, TychoError, UnsafeRemoteData
from ..layout import PROOF
from ..localio import failure
from .tree import BLOCK, DIR, FILE, RECORD, SYMLINK

_ZERO_BLOCK = bytes(BLOCK)
_MODE_KEPT = 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)  # what extraction restores
_MAX_HEADER = 16 << 20  # a pax or long-name header larger than this is hostile
_READ_SIZE = 1 << 20

# name, mode, uid, gid, size, mtime, chksum, type, linkname, magic+version, uname, gname,
# devmajor, devminor, prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_FAST_TYPES = (tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE)

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
        padding = -self._pos % RECORD
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
        if len(buf) != BLOCK or buf[156:157] not in _FAST_TYPES:
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
        if parent and self.kinds.get(parent) != DIR:
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
        self.kinds[name] = DIR if member.isdir() else SYMLINK if member.issym() else FILE

    def _misplaced(self, name: str, parent: str) -> str:
        """Why ``name`` cannot go where it says: through a symlink, or under something
        that is not a directory of this archive (yet)."""
        parts = parent.split("/")
        for end in range(1, len(parts) + 1):
            prefix = "/".join(parts[:end])
            if self.kinds.get(prefix) == SYMLINK:
                return f"the archive writes {name!r} through the symlink {prefix!r}"
            if self.kinds.get(prefix) != DIR:
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
        if self.kinds.get(target) != FILE:
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
    if stream.tell() != end + BLOCK or stream.last != _ZERO_BLOCK:
        raise UnsafeRemoteData(f"the archive is corrupt or truncated at byte {end} of its tar")
    if stream.read(BLOCK) != _ZERO_BLOCK:
        raise UnsafeRemoteData("the archive's tar does not end with two zero blocks")
