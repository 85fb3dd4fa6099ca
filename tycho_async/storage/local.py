"""A registry in a local directory, in the bucket's layout.

Every write goes to a hidden temporary file beside its target and is renamed into place,
so readers never see half an object. Conditional writes take an exclusive lock on
``ROOT/.tychoreg.lock`` for the check and the rename, which serializes them across
processes. ETags are derived from the file's identity (inode, size, mtime), so they
change whenever the file is replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

import anyio
import anyio.to_thread

from ..errors import NotFound, PreconditionFailed, StoreError
from . import ObjectInfo, Part, PartReceipt, RangeBody, UploadInfo

if TYPE_CHECKING:
    from typing_extensions import Self

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; writes are then unserialized
    fcntl = None  # type: ignore[assignment]

CHUNK = 1 << 20
LOCK_NAME = ".tychoreg.lock"


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


_TEMP_NAME = re.compile(r"\.(.+)\.[0-9a-f]{32}\.tmp")  # what _temp_beside names


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, st.st_size, _etag(st), st.st_mtime)


def _oserror(exc: OSError, what: str) -> StoreError:
    return StoreError(f"local registry: cannot {what}: {exc.strerror or exc}")


class LocalStore:
    def __init__(self, root: Path, chunk_size: int = CHUNK) -> None:
        self.root = root
        self.chunk_size = chunk_size

    creates_root = True  # whether a first write creates the registry itself

    @property
    def location(self) -> str:
        return str(self.root)

    async def root_exists(self) -> bool:
        return await anyio.Path(self.root).is_dir()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in {"", ".", ".."} for p in parts):
            raise StoreError(f"local registry: refusing key {key!r}")
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _temp_beside(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    def _head(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _oserror(exc, f"read {key}") from exc
        return _info(key, st) if stat.S_ISREG(st.st_mode) else None  # a "directory": none

    async def head(self, key: str) -> ObjectInfo | None:
        info = await anyio.to_thread.run_sync(self._head, key)
        # mtimes are this machine's clock: so is the local store's
        return None if info is None else dataclasses.replace(info, server_time=time.time())

    def _get_bytes(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with path.open("rb") as f:
                return f.read(), _etag(os.fstat(f.fileno()))
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"{key} does not exist") from None
        except OSError as exc:
            raise _oserror(exc, f"read {key}") from exc

    async def get_bytes(self, key: str) -> tuple[bytes, str]:
        return await anyio.to_thread.run_sync(self._get_bytes, key)

    def _commit(self, temp: Path, key: str, *, if_none_match: bool, if_match: str | None) -> str:
        """Rename ``temp`` onto ``key`` if the conditions hold; remove it otherwise."""
        path = self._path(key)
        try:
            with self._locked():
                current = self._head(key)
                if if_none_match and current is not None:
                    raise PreconditionFailed(f"{key} already exists")
                if if_match is not None and (current is None or current.etag != if_match):
                    raise PreconditionFailed(f"{key} changed since it was read")
                os.replace(temp, path)
                return _etag(path.stat())
        except OSError as exc:
            raise _oserror(exc, f"write {key}") from exc
        finally:
            temp.unlink(missing_ok=True)

    def _new_temp(self, key: str, fill: Callable[[BinaryIO], object]) -> Path:
        """A hidden file beside ``key``'s path, filled by ``fill``."""
        try:
            temp = self._temp_beside(self._path(key))
            with temp.open("xb") as f:
                fill(f)
        except OSError as exc:
            raise _oserror(exc, f"write {key}") from exc
        return temp

    def _put_bytes(self, key: str, data: bytes, if_none_match: bool, if_match: str | None) -> str:
        temp = self._new_temp(key, lambda f: f.write(data))
        return self._commit(temp, key, if_none_match=if_none_match, if_match=if_match)

    async def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        return await anyio.to_thread.run_sync(self._put_bytes, key, data, if_none_match, if_match)

    @contextlib.asynccontextmanager
    async def open_range(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> AsyncIterator[RangeBody]:
        path = self._path(key)
        try:
            fd = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist") from None
        except OSError as exc:
            raise _oserror(exc, f"read {key}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"{key} does not exist")
            info = _info(key, st)
            if if_match is not None and info.etag != if_match:
                raise PreconditionFailed(f"{key} changed since it was read")
            stop = st.st_size if end is None else min(end, st.st_size)
            yield RangeBody(info, self._chunks(fd, key, start, stop))
        finally:
            os.close(fd)

    async def _chunks(self, fd: int, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        offset = start
        while offset < end:
            try:
                chunk = await anyio.to_thread.run_sync(
                    os.pread, fd, min(self.chunk_size, end - offset), offset
                )
            except OSError as exc:
                raise _oserror(exc, f"read {key}") from exc
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def _walk(self, prefix: str) -> list[ObjectInfo]:
        directory, _, _ = prefix.rpartition("/")
        base = self._path(directory) if directory else self.root
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if rel == "." else f"{rel}/{name}"
                if name.startswith(".") or not key.startswith(prefix):
                    continue
                info = self._head(key)
                if info is not None:
                    found.append(info)
        return found

    async def list_keys(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for info in await anyio.to_thread.run_sync(self._walk, prefix):
            yield info

    def _list_dirs(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        try:
            return sorted(
                entry.name for entry in os.scandir(base)
                if entry.is_dir() and not entry.name.startswith(".")
            )
        except (FileNotFoundError, NotADirectoryError):  # no such "directory": as on S3
            return []
        except OSError as exc:
            raise _oserror(exc, "list the registry") from exc

    async def list_dirs(self, prefix: str) -> list[str]:
        return await anyio.to_thread.run_sync(self._list_dirs, prefix)

    def _create_multipart(self, key: str, size: int) -> str:
        return self._new_temp(key, lambda f: f.truncate(size)).name

    async def create_multipart(self, key: str, size: int) -> str:
        return await anyio.to_thread.run_sync(self._create_multipart, key, size)

    def _upload_part(self, key: str, upload_id: str, part: Part, data: bytes) -> PartReceipt:
        temp = self._path(key).with_name(upload_id)
        try:
            fd = os.open(temp, os.O_WRONLY)
            try:
                view, offset = memoryview(data), part.offset
                while view:  # a short write continues where it stopped
                    written = os.pwrite(fd, view, offset)
                    if written <= 0:
                        raise OSError(5, "the disk accepted no bytes")
                    view, offset = view[written:], offset + written
            finally:
                os.close(fd)
        except OSError as exc:
            raise _oserror(exc, f"write {key}") from exc
        return {"ETag": f'"{part.number}"'}

    async def upload_part(self, key: str, upload_id: str, part: Part, data: bytes
                          ) -> PartReceipt:
        return await anyio.to_thread.run_sync(self._upload_part, key, upload_id, part, data)

    async def complete_multipart(
        self, key: str, upload_id: str, receipts: Sequence[PartReceipt], *,
        if_none_match: bool,
    ) -> str:
        temp = self._path(key).with_name(upload_id)
        return await anyio.to_thread.run_sync(
            lambda: self._commit(temp, key, if_none_match=if_none_match, if_match=None)
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        temp = self._path(key).with_name(upload_id)
        await anyio.to_thread.run_sync(lambda: temp.unlink(missing_ok=True))

    def _delete(self, key: str) -> None:
        try:
            with self._locked():
                self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            return  # a "directory" of other keys: no object of that key to remove
        except OSError as exc:
            raise _oserror(exc, f"delete {key}") from exc

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._delete, key)

    def _list_uploads(self, prefix: str) -> list[UploadInfo]:
        """Temp files ``.NAME.<32 hex>.tmp`` (``_temp_beside``) of keys starting with the
        prefix: in the prefix's directory and in every directory below it whose path
        starts with the prefix, as S3 lists the uploads of any key under a prefix."""
        directory, _, head = prefix.rpartition("/")
        base = self._path(directory) if directory else self.root
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            top = dirpath == str(base)
            dirnames[:] = [d for d in dirnames if not d.startswith(".")
                           and (not top or d.startswith(head))]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                match = _TEMP_NAME.fullmatch(name)
                if match is None:
                    continue
                key = match.group(1) if rel == "." else f"{rel}/{match.group(1)}"
                if key.startswith(prefix):
                    with contextlib.suppress(OSError):
                        found.append(UploadInfo(key, name,
                                                os.stat(os.path.join(dirpath, name)).st_mtime))
        return found

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return await anyio.to_thread.run_sync(self._list_uploads, prefix)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        return None  # nothing held open between calls
