"""What a push reads (a file, a scanned directory, a stream) and the pushes that upload
nothing: ``--skip-existing`` (a cache's rule: a version there, or being pushed, is left
as it is at once) and ``--skip-identical`` (publishing: only the same content is left
as it is, after any rival push of it has settled), with the comparison of a local
source against a stored version that both rest on. Part of publish, which alone
imports it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio
import anyio.to_thread

from ..digests import file_digests
from ..errors import AlreadyExists, UnsafeRemoteData, UsageError
from ..layout import FILE, TAR_ZSTD, PackageMeta, Record
from ..lifecycle import VersionState
from ..localio import failure
from ..results import PushResult
from ..storage import ObjectInfo
from ..transfer import SETTLE, Expected
from .catalog import Busy, Context

if TYPE_CHECKING:
    from ..archive.tree import Tree

SETTLE_SECONDS = 300  # push --skip-identical waits at most this for a rival push to finish
STREAM_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """What a push reads: a file (``path``), a directory (``path`` and its ``tree``), or
    a stream."""

    path: Path | None
    tree: Tree | None
    stream: BinaryIO | None


async def source_of(source: Path | BinaryIO) -> Source:
    """What is pushed: a regular file, a directory (scanned: refused if it holds what
    cannot be restored faithfully) or a stream."""
    if not isinstance(source, Path):
        return Source(None, None, source)
    path = anyio.Path(source)
    if await path.is_dir():
        from ..archive.tree import scan

        tree = await anyio.to_thread.run_sync(scan, source)
        return Source(source, tree, None)
    if not await path.is_file():
        raise UsageError(f"{source} is not a readable file or directory")
    return Source(source, None, None)


def read_stream(stream: BinaryIO | None) -> Iterator[bytes]:
    """A binary stream in chunks (blocking reads: the engine runs them in a thread)."""
    assert stream is not None
    while True:
        try:
            data = stream.read(STREAM_CHUNK)
        except OSError as exc:
            raise failure(exc, "read standard input") from exc
        if not data:
            return
        yield data


def skip(package: str, version: str, fmt: str, pkg: ObjectInfo | None,
         record: Record | None, same: bool | None) -> PushResult:
    """The result of a push that uploaded nothing: what is there, by its record."""
    return PushResult(package, version, pkg.size if pkg is not None else 0,
                      (record.sha256 if record is not None else None) or "",
                      initialized=False, promoted=False, skipped=True,
                      format=record.format if record is not None else fmt,
                      tree_sha256=record.tree_sha256 if record is not None else None,
                      same_content=same)


class Skips:
    """Whether a push may leave a version as it is, and what it then reports."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog

    async def when_settled(self, package: str, version: str, meta: PackageMeta | None,
                           source: Source) -> PushResult | None:
        """``already_there``, once no other push of the version is under way: parallel
        jobs publishing one version wait for the first to finish, then compare (at most
        SETTLE_SECONDS, polling with backoff)."""
        retry = self.ctx.engine.retry
        deadline = retry.now() + SETTLE_SECONDS
        for attempt in itertools.count():
            try:
                return await self.already_there(package, version, meta, source)
            except Busy as exc:
                if retry.now() > deadline:
                    raise AlreadyExists(f"{exc.message}, still after {SETTLE_SECONDS} s; it "
                                        "cannot be told whether it holds the same content") \
                        from None
            await retry.wait(SETTLE, attempt)
            meta = await self.catalog.read_meta_or_none(package)
        raise AssertionError("unreachable")

    async def already_there(self, package: str, version: str, meta: PackageMeta | None,
                            source: Source) -> PushResult | None:
        """For ``--skip-identical``: None when the version does not exist; a result when
        it holds the same content; AlreadyExists (exit 1) when it holds other content or
        sameness cannot be proven; Busy while another push of it is alive. The record
        read is the copy in tycho.json, else the record object."""
        pkg, loaded, etag = await self.catalog.lookup(package, version)
        if pkg is None:
            if await self.catalog.alive(package, version, loaded, etag):
                raise Busy(f"{package} {version} is being pushed by another client")
            return None
        copy = meta.records.get(version) if meta is not None else None
        record = copy if copy is not None else loaded
        if record is not None and record.pending and \
                await self.catalog.alive(package, version, loaded, etag):
            raise Busy(f"{package} {version} is being recorded by another push")
        if record is not None and (record.pending or record.deleting):
            raise AlreadyExists(f"{package} {version} exists, but its "
                                f"{'push' if record.pending else 'deletion'} "
                                "was cut short, so it cannot be told whether it holds the "
                                f"same content; see 'tychoreg show {package} --version "
                                f"{version}'")
        same = await self.compare(package, version, pkg, record, source)
        if same is None:
            raise AlreadyExists(f"{package} {version} already exists and it cannot be told "
                                "whether it holds the same content (a stream, or a version "
                                "whose ETag is not one boto3 or tychoreg would make)")
        if not same:
            raise AlreadyExists(f"{package} {version} already exists with other content; "
                                "published versions are immutable, push a new version")
        return skip(package, version, record.format if record is not None else FILE, pkg,
                    record, True)

    async def skipped(self, package: str, version: str, meta: PackageMeta | None,
                      source: Source, fmt: str) -> PushResult | None:
        """For ``--skip-existing``: None when the version is free (no object, and no live
        push of it: ABSENT or ABANDONED); else the result of a push that uploads nothing,
        at once, with ``same_content`` where the local source can be compared to a
        complete record."""
        pkg, loaded, etag = await self.catalog.lookup(package, version)
        if pkg is None:
            state = await self.catalog.observe(package, version, pkg, loaded, etag)
            if state in (VersionState.ABSENT, VersionState.ABANDONED):
                return None
            return skip(package, version, fmt, None, None, None)  # a live push
        copy = meta.records.get(version) if meta is not None else None
        record = copy if copy is not None else loaded
        same = None
        if record is None or not (record.pending or record.deleting):
            with contextlib.suppress(UnsafeRemoteData):
                same = await self.compare(package, version, pkg, record, source)
        return skip(package, version, record.format if record is not None else FILE, pkg,
                    record if same is not None else None, same)

    async def compare(self, package: str, version: str, pkg: ObjectInfo,
                      record: Record | None, source: Source) -> bool | None:
        """Whether a complete version holds the source's content, computed from the
        local source only (a directory's tree hash without compressing, a file's
        digests); None when it cannot be told (a stream, an unknown ETag scheme)."""
        fmt = record.format if record is not None else FILE
        if source.tree is not None:
            if fmt != TAR_ZSTD or record is None or not isinstance(record.to_json(), dict):
                return False if record is not None else None
            from ..archive.pack import tree_sha256

            digest = await anyio.to_thread.run_sync(tree_sha256, source.tree)
            return bool(digest == record.tree_sha256)
        if source.path is None:
            return None
        digests = await anyio.to_thread.run_sync(file_digests, self.ctx.fs, source.path)
        if record is not None:
            return fmt == FILE and record.expected(package, version) == Expected(
                digests.size, sha256=digests.sha256)
        if digests.size != pkg.size:
            return False
        if pkg.md5 is not None:  # tycho-station's single PUT: the ETag is the MD5
            return pkg.md5 == digests.md5
        # a multipart ETag: sure only when it is the one boto3 would have made
        return pkg.etag.strip('"').lower() == digests.boto3_etag or None
