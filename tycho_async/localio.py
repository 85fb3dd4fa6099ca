"""Descriptor I/O with errors translated: reads and writes at an offset (a short write
continued, a write that makes no progress an error), writes to pipes and devices, space
claimed up front, renames and quiet clean-ups. The system calls of the hot path are
attributes, the one place a test injects a disk that writes short or fails to read.
``localfs.LocalFS`` builds temp files, directories and destinations on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .errors import TransferError


def failure(exc: OSError, what: str) -> TransferError:
    """The one wording of a local I/O failure: exit 3, naming what could not be done."""
    return TransferError(f"cannot {what}: {exc.strerror or exc}")


class FileIO:
    """Reads and writes on open descriptors, with every OSError translated by
    :func:`failure`.

    The system calls on the hot path are attributes, so a test can put a disk that
    writes short or fails to read under the policy (continue, translate) that uses them."""

    def __init__(self) -> None:
        self.sys_pread = os.pread
        self.sys_pwrite = os.pwrite
        self.sys_pwritev = os.pwritev

    # -- reading --------------------------------------------------------------------------

    def open_read(self, path: Path) -> int:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise failure(exc, f"read {path}") from exc

    def pread(self, fd: int, size: int, offset: int, what: str) -> bytes:
        try:
            return self.sys_pread(fd, size, offset)
        except OSError as exc:
            raise failure(exc, what) from exc

    # -- writing --------------------------------------------------------------------------

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int, what: str) -> None:
        """Write all of ``data`` at ``offset``: a short write is continued, and a write
        that makes no progress is an error (never a cursor moved past unwritten bytes)."""
        view = memoryview(data)
        while view:
            try:
                written = self.sys_pwrite(fd, view, offset)
            except OSError as exc:
                raise failure(exc, what) from exc
            if written <= 0:
                raise failure(OSError(errno.EIO, "the disk accepted no bytes"), what)
            view = view[written:]
            offset += written

    def pwritev(self, fd: int, chunks: list[bytes], offset: int, what: str) -> None:
        """Write ``chunks`` back to back at ``offset`` in one system call, without joining
        them first; a short write is continued from the byte where it stopped."""
        try:
            written = self.sys_pwritev(fd, chunks, offset)
        except OSError as exc:
            raise failure(exc, what) from exc
        total = sum(len(chunk) for chunk in chunks)
        if written >= total:
            return
        if written <= 0:
            raise failure(OSError(errno.EIO, "the disk accepted no bytes"), what)
        for chunk in chunks:  # continue past the bytes that were written
            if written >= len(chunk):
                written -= len(chunk)
                offset += len(chunk)
                continue
            self.pwrite(fd, memoryview(chunk)[written:], offset + written, what)
            offset += len(chunk)
            written = 0

    def write(self, fd: int, data: bytes | memoryview, what: str) -> None:
        """Write all of ``data`` at the current position (pipes and devices)."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except OSError as exc:
                raise failure(exc, what) from exc
            if written <= 0:
                raise failure(OSError(errno.EIO, "the device accepted no bytes"), what)
            view = view[written:]

    def preallocate(self, fd: int, size: int) -> None:
        """Claim the space up front, so a full disk fails at once rather than midway."""
        if size == 0:
            return
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in {errno.EOPNOTSUPP, errno.EINVAL}:
                    raise
                os.ftruncate(fd, size)
        except OSError as exc:
            raise failure(exc, "write the download") from exc

    def open_stream(self, path: Path) -> int:
        """Open a FIFO, a character device or a file reached through a descriptor
        (``/dev/fd/3``) for writing, in place (may block on a FIFO until a reader opens
        it)."""
        try:  # O_APPEND: a file reached through /dev/fd/N goes on where its writer is
            return os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise failure(exc, f"write {path}") from exc

    def replace(self, src: Path, dst: Path) -> None:
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise failure(exc, f"write {dst}") from exc

    def write_in_place(self, path: Path, data: bytes) -> None:
        """Write a small file directly, truncating it: for files whose every prefix is
        harmless (a sidecar cut short by a crash holds no whole ETag, so it never makes a
        file look current). One file operation fewer than a temp file and a rename."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise failure(exc, f"write {path}") from exc
        try:
            self.write(fd, data, f"write {path}")
        finally:
            self.close(fd)

    def unlink(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    def close(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)
