"""The registry rules: packages, versions, tycho.json, latest, and what to move where.

Layout (shared with tycho-station, which must keep working on the same bucket)::

    PKG/tycho.json                {"localname": ..., "latest": ...,
                                   "tychoreg": {"records": {VERSION: {whole record}}}}
                                  written with indent=2; tycho-station keeps unknown keys
    PKG/tycho_VERSION.pkg         the bytes, exactly as pushed
    PKG/tycho_VERSION.meta.json   ours: the authoritative record {"sha256", "size",
                                  "pushed_at", "tool"}, or {"state": "pending", ...}
                                  while a push is under way; it does not end in .pkg, so
                                  tycho-station never sees it

A push goes pending record -> object -> full record and tycho.json copy, the last two
shielded from signals: a crash anywhere leaves either no version, a version a later
push takes over, or a pending one that pulls refuse and ``verify --repair`` completes.
Published versions are immutable: they are created with If-None-Match. tycho.json is
rewritten with If-Match on the ETag read, and re-read and retried when another client
won the race, so no update is lost and every key we do not own survives. The copy of the
record in tycho.json saves every pull a request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
import anyio.to_thread

from . import __version__, processes, retention
from .config import DEFAULT_CONFIG
from .digests import file_digests
from .errors import (
    AlreadyExists,
    IncompleteVersion,
    IntegrityError,
    MissingRegistry,
    NotFound,
    NothingToPull,
    OutputClosed,
    PartialFailure,
    PreconditionFailed,
    Refused,
    StoreError,
    TransferError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
from .layout import (
    DELETING,
    FILE,
    LATEST,
    PENDING,
    PROOF,
    RECORDS_KEY,
    TAR_ZSTD,
    TAR_ZSTD_SUFFIX,
    being_deleted,
    checked,
    cut_short,
    default_max_unpacked,
    dir_name,
    dump,
    etag_sidecar,
    expectation,
    format_of,
    is_current,
    is_pending,
    load_record,
    localname_clash,
    mark,
    meta_key,
    now,
    parse_meta,
    parse_record,
    record_key,
    records_in,
    state_of,
    version_key,
)
from .lifecycle import Liveness, abandoned, holder_of, written_at
from .localfs import LocalFS, Target, failure, fits, pseudo_fs, same_as_stdout
from .names import (
    check_localname_arg,
    check_package,
    check_remote_localname,
    check_version,
    is_valid_segment,
    sort_versions,
)
from .names import version_key as natural
from .results import (
    DeleteResult,
    PackageSummary,
    ProbeResult,
    PruneResult,
    PullRequest,
    PullResult,
    PushResult,
    ShowResult,
    VerifyResult,
    VersionInfo,
)
from .storage import ObjectInfo
from .transfer import CONFLICT, SETTLE, Engine, Expected
from .transfer.engine import ExpectedSource, UploadResult
from .transfer.groups import task_group
from .units import plural

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .archive.extract import Extracted, Limit
    from .archive.tree import Tree

META_ATTEMPTS = 20
# A pending record (a push under way) is taken over by a later push, or cleared by
# verify --repair or prune, only once lifecycle.abandoned says its push is gone.
CLEANUP_SECONDS = 15  # the longest an interrupted push spends removing its pending record
SHIELD_SECONDS = 120  # the longest a signal waits for a deletion's steps to finish
STALE_UPLOAD_SECONDS = 86400  # prune aborts multipart uploads older than this
SETTLE_SECONDS = 300  # push --skip-identical waits at most this for a rival push to finish


class _Busy(AlreadyExists):
    """Another push of the version is under way (alive, by its pending record)."""


class _Contended(TransferError):
    """tycho.json kept changing under every attempt to update it."""


@dataclass(frozen=True)
class _Source:
    """What a push reads: a file (``path``), a directory (``path`` and its ``tree``), or
    a stream."""

    path: Path | None
    tree: Tree | None
    stream: BinaryIO | None


STREAM_CHUNK = 1 << 20
STDOUT = 1


def _version_info(pushed: retention.Pushed, record: object, latest: object) -> VersionInfo:
    fields = record if isinstance(record, dict) else {}
    sha256, pushed_at = fields.get("sha256"), fields.get("pushed_at")
    return VersionInfo(pushed.version, pushed.size,
                       sha256 if isinstance(sha256, str) else None,
                       pushed_at if isinstance(pushed_at, str) else None,
                       format_of(record), latest == pushed.version, state_of(record),
                       pushed.modified)


def _unpack_limit(package: str, version: str, expected: Expected | None,
                  record: dict[str, Any], max_unpacked: int | None) -> Limit:
    """How far a directory package's tar may expand: its recorded ``tree_size`` exactly;
    without one (pushed before tree_size was recorded), ``max_unpacked`` or the default
    bound of its compressed size."""
    from .archive.extract import Limit
    from .units import human_size

    tree_size = record.get("tree_size")
    if tree_size is not None:
        if not isinstance(tree_size, int) or isinstance(tree_size, bool) or tree_size < 0:
            raise UnsafeRemoteData(f"{package} {version}: its record's tree_size is malformed")
        return Limit(tree_size, IntegrityError(
            f"{package} {version}: the archive expands beyond its recorded tree_size of "
            f"{tree_size} bytes"))
    size = max_unpacked if max_unpacked is not None else \
        default_max_unpacked(expected.size if expected is not None else 0)
    return Limit(size, UnsafeRemoteData(
        f"{package} {version}: the archive expands beyond {human_size(size)}, the most a "
        "directory package without a recorded tree_size may unpack to; pass "
        "--max-unpacked SIZE to allow more"))


def _flush(stream: BinaryIO) -> None:
    try:
        stream.flush()
    except BrokenPipeError:
        raise OutputClosed("the output was closed") from None
    except OSError as exc:
        raise failure(exc, "write the output") from exc


def _is_terminal(stream: BinaryIO | None) -> bool:
    """Whether what a pull to standard output writes to is a terminal."""
    try:
        return stream.isatty() if stream is not None else os.isatty(STDOUT)
    except (OSError, ValueError):
        return False


def _binary_to_terminal(package: str, version: str, what: str) -> UsageError:
    return UsageError(f"{package} {version} is {what}, and standard output is a terminal; "
                      "refusing to write it there: redirect it (> FILE, | CMD), or pass "
                      "--raw to write it anyway")


def _read_stream(stream: BinaryIO | None) -> Iterator[bytes]:
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


async def _own_record(get_bytes: Callable[[str], Awaitable[tuple[bytes, str]]], rkey: str,
                      push_id: str) -> str | None:
    """The record's ETag if it is the pending record our push wrote, None if it is gone
    or another's; a failed read raises (it tells nothing)."""
    with contextlib.suppress(NotFound, UnsafeRemoteData):
        data, etag = await get_bytes(rkey)
        if load_record("", "", data).get("push_id") == push_id:
            return etag
    return None


class _Hold:
    """A push's hold on its version: its pending record, renewed every ``interval``
    seconds (If-Match its own ETag) while the push runs, however slow its input, so no
    rival judges it abandoned; stopped before the full record replaces it. Renewals go to
    the store directly, outside the engine's budget, so parts saturating a slow link never
    delay them (the pool keeps connections beyond the budget). A renewal that fails for a
    moment is retried at the next beat (the bound allows several); one that finds another
    push's record lets the upload go on: If-None-Match on the object still decides who
    publishes."""

    def __init__(self, engine: Engine, key: str, body: dict[str, Any], etag: str,
                 interval: float) -> None:
        self.engine = engine
        self.key = key
        self.body = body
        self.etag = etag
        self.interval = interval
        self.push_id = str(body["push_id"])
        self._lock = anyio.Lock()
        self._done = False

    async def keep(self) -> None:
        while not self._done:
            await anyio.sleep(self.interval)
            async with self._lock:
                if not self._done:
                    await self._renew()

    async def _renew(self) -> None:
        self.body["renewed_at"] = now()
        store = self.engine.store
        try:
            # bounded, so that a store that stops answering never holds up the push's end
            # (a renewal that landed unanswered is recognised as ours by the next one)
            with anyio.move_on_after(max(self.interval, 1.0)):
                try:
                    self.etag = await store.put_bytes(self.key, dump(self.body),
                                                      if_match=self.etag)
                except PreconditionFailed:
                    mine = await _own_record(store.get_bytes, self.key, self.push_id)
                    if mine is None:
                        self._done = True  # taken over: nothing of ours to renew
                    else:
                        self.etag = mine  # an earlier renewal landed, its answer lost
        except TychoError:
            return  # a moment's failure (the read included): the next beat tries again

    async def stop(self) -> None:
        """No renewal after this returns (one under way is waited for)."""
        async with self._lock:
            self._done = True


WAVE_PER_SLOT = 16  # tycho.json read ahead of the items, per slot of the request budget


class _MetaWave:
    """The tycho.json of every package of a pull-list, each read once (however many
    items name it), by readers that run ahead of the items as fast as the budget lets
    them: one wave for a list of up to ``ahead`` packages, a wave sliding that far ahead
    of the items beyond, so memory stays flat for any length. A package's slot ahead is
    given back when its first item takes its tycho.json (items are taken in list order,
    packages are read in order of first appearance, so the oldest package read is
    always one an item is about to take: no deadlock), and the parsed tycho.json is
    dropped once its last item has ended. A failed read is each item's failure, as if
    the item had read tycho.json itself."""

    def __init__(self, registry: Registry, packages: Sequence[str], ahead: int) -> None:
        self._registry = registry
        self._order = iter(dict.fromkeys(packages))
        self._uses: dict[str, int] = {}
        for package in packages:
            self._uses[package] = self._uses.get(package, 0) + 1
        self._ahead = anyio.Semaphore(max(1, ahead))
        self._read: dict[str, anyio.Event] = {}
        self._found: dict[str, dict[str, Any] | TychoError] = {}
        self._taken: set[str] = set()

    def start(self, tg: TaskGroup, readers: int) -> None:
        for _ in range(min(len(self._uses), max(1, readers))):
            tg.start_soon(self._reader)

    async def _reader(self) -> None:
        for package in self._order:
            await self._ahead.acquire()
            try:
                check_package(package)
                found: dict[str, Any] | TychoError = \
                    (await self._registry.read_meta(package))[0]
            except TychoError as exc:
                found = exc
            self._found[package] = found
            self._read.setdefault(package, anyio.Event()).set()

    async def meta(self, package: str) -> dict[str, Any]:
        """The package's tycho.json, once the wave has read it (its error, raised)."""
        await self._read.setdefault(package, anyio.Event()).wait()
        if package not in self._taken:
            self._taken.add(package)
            self._ahead.release()
        found = self._found[package]
        if isinstance(found, TychoError):
            raise found
        return found

    def done(self, package: str) -> None:
        """An item of ``package`` ended: the last one drops its tycho.json."""
        self._uses[package] -= 1
        if not self._uses[package]:
            del self._uses[package]
            self._found.pop(package, None)
            self._read.pop(package, None)
            self._taken.discard(package)


class Registry:
    def __init__(self, engine: Engine, outdir: Path, *, missing_root_ok: bool = False,
                 fs: LocalFS | None = None, own_files: Sequence[str] = (),
                 liveness: Liveness | None = None) -> None:
        self.engine = engine
        self.liveness = liveness or Liveness()
        self.outdir = outdir
        self.fs = fs or engine.fs
        # tychoreg's own files (.tychoreg.json, the dotenv file the config names): no
        # localname may name them, at push or at pull
        self.reserved = frozenset({DEFAULT_CONFIG, *own_files})
        # The default local registry is simply empty before its first push; any other
        # registry that does not exist is a typo, and says so (exit 2).
        self.missing_root_ok = missing_root_ok
        self._root_seen = False

    async def _require_root(self) -> None:
        """Before reporting that something is missing, make sure the registry itself
        exists: ``exists || push`` must not create a typo'd registry."""
        if self.missing_root_ok or self._root_seen:
            return
        if not await self.engine.root_exists():
            raise MissingRegistry(f"registry {self.engine.store.location} does not exist")
        self._root_seen = True

    # -- tycho.json ---------------------------------------------------------------------------

    async def read_meta(self, package: str) -> tuple[dict[str, Any], str]:
        try:
            data, etag = await self.engine.get_bytes(meta_key(package))
        except NotFound:
            await self._require_root()
            raise NotFound(f"package {package!r} does not exist (no tycho.json)") from None
        return parse_meta(package, data), etag

    async def _read_meta_or_none(self, package: str) -> dict[str, Any] | None:
        try:
            return (await self.read_meta(package))[0]
        except NotFound:
            return None

    async def _update_meta(
        self, package: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Apply ``change`` to tycho.json with optimistic concurrency, keeping foreign keys."""
        for attempt in range(META_ATTEMPTS):
            meta, etag = await self.read_meta(package)
            change(meta)
            try:
                await self.engine.put_bytes(meta_key(package), dump(meta), if_match=etag)
                return meta
            except (PreconditionFailed, NotFound) as exc:
                await self.engine.backoff(attempt, exc, CONFLICT)
        raise _Contended(f"package {package!r}: tycho.json kept changing under "
                         f"{META_ATTEMPTS} attempts to update it; try again")

    async def _create(self, key: str, data: bytes) -> str | None:
        """Create an object that must not exist yet; its ETag, or None when it exists.
        Looks before it leaps (HEAD, then If-None-Match), so that the single-client case
        is right even on stores that ignore conditional writes."""
        if await self.engine.head(key) is not None:
            return None
        try:
            return await self.engine.put_bytes(key, data, if_none_match=True)
        except PreconditionFailed:
            return None

    # -- commands -------------------------------------------------------------------------------

    async def init(self, package: str, filename: str) -> None:
        check_package(package)
        self._check_new_localname(filename)
        if await self._create(meta_key(package), dump({"localname": filename,
                                                        "latest": None})) is None:
            raise AlreadyExists(f"package {package!r} already exists")

    async def _look(self, package: str, version: str
                    ) -> tuple[ObjectInfo | None, tuple[bytes, str] | None]:
        """The version's object (HEAD) and its record object (bytes, ETag), asked at
        once: one round trip."""
        found: dict[str, Any] = {"record": None}

        async def head() -> None:
            found["pkg"] = await self.engine.head(version_key(package, version))

        async def read() -> None:
            with contextlib.suppress(NotFound):
                found["record"] = await self.engine.get_bytes(record_key(package, version))

        async with task_group() as tg:
            tg.start_soon(head)
            tg.start_soon(read)
        return found["pkg"], found["record"]

    async def _state(self, package: str, version: str,
                     meta: dict[str, Any] | None = None) -> str:
        """What the version is: "missing", "pending" (a push cut short), "deleting" (a
        deletion cut short) or "ok"."""
        if meta is None:  # tycho.json too, asked beside the object and its record
            pkg, record, meta = await self._look_all(package, version)
        else:
            pkg, record = await self._look(package, version)
        if pkg is None:
            await self._require_root()
            return "missing"
        copy = state_of(records_in(meta or {}).get(version))
        if copy != "ok":  # a deletion marks the copy first
            return copy
        if record is not None:
            return state_of(load_record(package, version, record[0]))
        return "ok"

    async def _look_all(self, package: str, version: str) -> tuple[
            ObjectInfo | None, tuple[bytes, str] | None, dict[str, Any] | None]:
        found: dict[str, Any] = {}

        async def look() -> None:
            found["look"] = await self._look(package, version)

        async def meta() -> None:
            found["meta"] = await self._read_meta_or_none(package)

        async with task_group() as tg:
            tg.start_soon(look)
            tg.start_soon(meta)
        return (*found["look"], found["meta"])

    async def exists(self, package: str, version: str) -> bool:
        """Whether the version exists and is complete; ``latest`` means the latest, as
        for a pull (no latest set: no)."""
        check_package(package)
        check_version(version)
        if version == LATEST:
            meta = await self._read_meta_or_none(package)
            if meta is None or meta.get("latest") is None:
                return False
            version = self._resolve(PullRequest(package, version), meta)
            return await self._state(package, version, meta) == "ok"
        return await self._state(package, version) == "ok"

    async def push(self, package: str, version: str, source: Path | BinaryIO, *,
                   promote: bool, localname: str | None = None, level: int | None = None,
                   skip_existing: bool = False, skip_identical: bool = False) -> PushResult:
        """Publish a version in steps that a crash can interrupt anywhere without leaving
        anything a pull would trust: a pending record (created only if absent, so a
        second pusher is refused right there; renewed while the push runs, so no rival
        takes a live push over), the object (If-None-Match), then the full record and
        tycho.json, shielded from signals once the object is published.

        ``source`` is a file, a directory (packed as tar+zstd at ``level`` while it
        uploads) or a binary stream (read to its end). ``localname`` names a new package
        (required for a stream). ``skip_existing`` (a cache's rule): a version that
        exists, or that a live push is uploading, is left as it is at once, whatever it
        holds (``same_content`` says, where the local source can be compared).
        ``skip_identical`` (publishing): only a version holding the same content is left
        as it is; other content is AlreadyExists, and a rival push is waited for. Both
        still promote a version that exists, if asked."""
        check_package(package)
        check_version(version)
        if version == LATEST:
            raise UsageError(f"{LATEST!r} means the latest version to tycho-station; it "
                             "cannot name a version")
        if skip_existing and skip_identical:
            raise UsageError("--skip-existing and --skip-identical exclude each other")
        if localname is not None:
            check_localname_arg(localname)
        source_ = await self._source(source)
        if level is not None and source_.tree is None:
            raise UsageError("--level applies to a directory (files and streams are "
                             "uploaded as they are)")
        packer = None
        if source_.tree is not None:
            from .archive import pack  # loaded only for directories: pulls of files start faster

            packer = pack.Packer(source_.tree, level if level is not None
                                 else pack.DEFAULT_LEVEL)
        try:  # not read_meta: a push may create the (local) registry itself
            data, _ = await self.engine.get_bytes(meta_key(package))
            meta: dict[str, Any] | None = parse_meta(package, data)
        except NotFound:
            meta = None
        name = self._localname_for(package, meta, source_, localname)
        store = self.engine.store
        created_registry = None
        if store.creates_root and not await self.engine.root_exists():
            created_registry = store.location
        fmt = TAR_ZSTD if source_.tree else FILE
        for attempt in range(2):  # a second time only after a rival push died meanwhile
            there = None
            if skip_existing:
                there = await self._skipped(package, version, meta, source_, fmt)
            elif skip_identical:
                there = await self._when_settled(package, version, meta, source_)
            if there is not None:
                return await self._promote_skipped(there, promote)
            try:
                hold = await self._reserve(package, version, name, fmt)
                break
            except AlreadyExists:
                if skip_existing:  # a rival got there between the look and the reservation
                    return await self._promote_skipped(
                        self._skip(package, version, fmt, None, None, None), promote)
                if not skip_identical or attempt:
                    raise
                meta = await self._read_meta_or_none(package)
        published: list[UploadResult] = []
        initialized: list[bool] = []
        warnings: list[str] = []
        lost: dict[str, dict[str, Any]] = {}
        looked = anyio.Event()

        async def look_for_lost_copies() -> None:
            """While the bytes upload: versions whose copy in tycho.json a push that lost
            every race for it left missing; the publication writes them too."""
            try:
                with contextlib.suppress(TychoError):  # a repair on the side: never a failure
                    if meta is not None:
                        lost.update(await self._lost_copies(package, meta, version))
            finally:  # cancelled too: the shielded recording must not wait for it
                looked.set()

        async def record(result: UploadResult) -> None:
            published.append(result)
            await hold.stop()
            with anyio.move_on_after(SHIELD_SECONDS / 4):
                await looked.wait()
            extra = {} if packer is None else {"format": TAR_ZSTD,
                                               "tree_sha256": packer.tree_sha256,
                                               "tree_size": packer.tar_size}
            try:
                initialized.append(await self._publish(package, version, result, name,
                                                       promote=promote, extra=extra,
                                                       lost=lost))
            except _Contended as exc:
                if promote:
                    raise TransferError(
                        f"{package} {version} was published, but it could not be promoted: "
                        f"{exc.message.removesuffix('; try again')}; run 'tychoreg promote "
                        f"{package} {version}'") from exc
                initialized.append(False)
                warnings.append(
                    f"{package} {version} is published, but tycho.json kept changing, so "
                    "the copy of its record there is missing for now; the next push, pull "
                    f"or prune of {package} writes it")
            except TychoError as exc:
                raise TransferError(
                    f"{package} {version} was uploaded, but recording it failed ({exc}); "
                    f"run 'tychoreg verify {package} --version {version} --repair'") from exc

        key, label = version_key(package, version), f"{package} {version}"
        try:
            async with task_group() as tg:
                tg.start_soon(hold.keep)
                tg.start_soon(look_for_lost_copies)
                if meta is not None and RECORDS_KEY not in meta:
                    # Mark the package as one tychoreg pushes to: a pull of any of its
                    # versions without a copy of the record then looks for the record object.
                    await self._update_meta(package, mark)
                if source_.path is not None and source_.tree is None:
                    await self.engine.upload_file(source_.path, key, label=label, then=record)
                else:
                    chunks = iter(packer) if packer is not None else \
                        _read_stream(source_.stream)
                    await self.engine.upload_stream(chunks, key, label=label, then=record)
                tg.cancel_scope.cancel()
        except BaseException as exc:
            if not published:  # nothing was published: the version is free again
                with anyio.CancelScope(shield=True):
                    await self._release(package, version, hold)
            if isinstance(exc, PreconditionFailed):
                raise AlreadyExists(f"{package} {version} already exists (pushed by another "
                                    "client meanwhile)") from None
            raise
        result = published[0]
        return PushResult(package, version, result.size, result.sha256, initialized[0],
                          promote, created_registry,
                          format=TAR_ZSTD if packer else FILE,
                          tree_sha256=packer.tree_sha256 if packer else None,
                          warnings=tuple(warnings))

    @staticmethod
    def _skip(package: str, version: str, fmt: str, pkg: ObjectInfo | None,
              record: object, same: bool | None) -> PushResult:
        """The result of a push that uploaded nothing: what is there, by its record."""
        fields = record if isinstance(record, dict) else {}
        sha256, tree = fields.get("sha256"), fields.get("tree_sha256")
        return PushResult(package, version, pkg.size if pkg is not None else 0,
                          sha256 if isinstance(sha256, str) else "",
                          initialized=False, promoted=False, skipped=True,
                          format=format_of(record) if record is not None else fmt,
                          tree_sha256=tree if isinstance(tree, str) else None,
                          same_content=same)

    async def _promote_skipped(self, result: PushResult, promote: bool) -> PushResult:
        """A skipped push still promotes the version there, if asked; one that is not
        complete yet (a rival still pushing it) is not promoted, with a warning."""
        if not promote:
            return result
        try:
            await self.promote(result.package, result.version)
        except (NotFound, IncompleteVersion) as exc:
            return dataclasses.replace(result, warnings=(
                *result.warnings, f"not promoted: {exc.message}"))
        return dataclasses.replace(result, promoted=True)

    async def _source(self, source: Path | BinaryIO) -> _Source:
        """What is pushed: a regular file, a directory (scanned: refused if it holds what
        cannot be restored faithfully) or a stream."""
        if not isinstance(source, Path):
            return _Source(None, None, source)
        path = anyio.Path(source)
        if await path.is_dir():
            from .archive.tree import scan

            tree = await anyio.to_thread.run_sync(scan, source)
            return _Source(source, tree, None)
        if not await path.is_file():
            raise UsageError(f"{source} is not a readable file or directory")
        return _Source(source, None, None)

    def _check_new_localname(self, name: str) -> None:
        """A new package's localname: a plain file name that will not pass for a
        sidecar, a proof or tychoreg's own files (nor will the directory a directory
        package extracts to)."""
        check_localname_arg(name)
        for what in {name, dir_name(name) or name}:
            problem = localname_clash(what, self.reserved)
            if problem:
                raise UsageError(f"invalid file name {name!r}: {problem}; pass --localname "
                                 "NAME to name the package's file")

    def _localname_for(self, package: str, meta: dict[str, Any] | None, source: _Source,
                       given: str | None) -> str:
        """The package's localname: tycho.json's for an existing package (``given`` must
        agree), else ``given``, else the file's name, or ``NAME.tar.zst`` for a directory
        (NAME: its resolved base name, so ``.`` works)."""
        current = meta.get("localname") if meta is not None else None
        if isinstance(current, str):
            name = check_remote_localname(package, current)
            if given is not None and given != name:
                raise UsageError(f"package {package!r} already names its file {name!r}; "
                                 f"--localname {given!r} can only name a new package")
        elif given is not None:
            name = given
        elif source.tree is not None:
            base = source.tree.root.resolve().name
            if not base:
                raise UsageError(f"{source.tree.root} has no name to give the package's "
                                 "file; pass --localname NAME.tar.zst")
            name = base + TAR_ZSTD_SUFFIX
        elif source.path is not None:
            name = source.path.name
        else:
            raise UsageError(f"package {package!r} is new: a push from standard input needs "
                             "--localname NAME to name its file")
        if not isinstance(current, str):
            self._check_new_localname(name)
        if source.tree is None and any(format_of(copy) == TAR_ZSTD
                                       for copy in records_in(meta or {}).values()):
            raise UsageError(f"package {package!r} holds directories (tar+zstd): push a "
                             "directory to it, or the file to a package of files")
        if source.tree is not None and dir_name(name) is None:
            raise UsageError(f"package {package!r} names its file {name!r}, not NAME"
                             f"{TAR_ZSTD_SUFFIX}: a directory can only be pushed to a package "
                             "of directories")
        return name

    async def _when_settled(self, package: str, version: str, meta: dict[str, Any] | None,
                            source: _Source) -> PushResult | None:
        """``_already_there``, once no other push of the version is under way: parallel
        jobs publishing one version wait for the first to finish, then compare (at most
        SETTLE_SECONDS, polling with backoff)."""
        retry = self.engine.retry
        deadline = retry.now() + SETTLE_SECONDS
        for attempt in itertools.count():
            try:
                return await self._already_there(package, version, meta, source)
            except _Busy as exc:
                if retry.now() > deadline:
                    raise AlreadyExists(f"{exc.message}, still after {SETTLE_SECONDS} s; it "
                                        "cannot be told whether it holds the same content") \
                        from None
            await retry.wait(SETTLE, attempt)
            meta = await self._read_meta_or_none(package)
        raise AssertionError("unreachable")

    async def _already_there(self, package: str, version: str, meta: dict[str, Any] | None,
                             source: _Source) -> PushResult | None:
        """For ``--skip-identical``: None when the version does not exist; a result when
        it holds the same content; AlreadyExists (exit 1) when it holds other content or
        sameness cannot be proven; _Busy while another push of it is alive."""
        pkg, found = await self._look(package, version)
        loaded = load_record(package, version, found[0]) if found is not None else None
        if pkg is None:
            if await self._alive(package, version, loaded, found):
                raise _Busy(f"{package} {version} is being pushed by another client")
            return None
        copy = records_in(meta).get(version) if meta is not None else None
        record = copy if copy is not None else loaded
        if is_pending(record) and await self._alive(package, version, loaded, found):
            raise _Busy(f"{package} {version} is being recorded by another push")
        if state_of(record) != "ok":
            raise AlreadyExists(f"{package} {version} exists, but its "
                                f"{'push' if state_of(record) == PENDING else 'deletion'} "
                                "was cut short, so it cannot be told whether it holds the "
                                f"same content; see 'tychoreg show {package} --version "
                                f"{version}'")
        same = await self._compare(package, version, pkg, record, source)
        if same is None:
            raise AlreadyExists(f"{package} {version} already exists and it cannot be told "
                                "whether it holds the same content (a stream, or a version "
                                "whose ETag is not one boto3 or tychoreg would make)")
        if not same:
            raise AlreadyExists(f"{package} {version} already exists with other content; "
                                "published versions are immutable, push a new version")
        return self._skip(package, version, format_of(record), pkg, record, True)

    async def _skipped(self, package: str, version: str, meta: dict[str, Any] | None,
                       source: _Source, fmt: str) -> PushResult | None:
        """For ``--skip-existing``: None when the version is free (no object, and no live
        push of it); else the result of a push that uploads nothing, at once, with
        ``same_content`` where the local source can be compared to a complete record."""
        pkg, found = await self._look(package, version)
        loaded = load_record(package, version, found[0]) if found is not None else None
        if pkg is None:
            if found is None or loaded is None or (
                    is_pending(loaded) and
                    await self._abandoned(package, version, loaded, found[1])):
                return None
            return self._skip(package, version, fmt, None, None, None)  # a live push
        copy = records_in(meta).get(version) if meta is not None else None
        record = copy if copy is not None else loaded
        same = None
        if state_of(record) == "ok":
            with contextlib.suppress(UnsafeRemoteData):
                same = await self._compare(package, version, pkg, record, source)
        return self._skip(package, version, format_of(record), pkg,
                          record if same is not None else None, same)

    async def _compare(self, package: str, version: str, pkg: ObjectInfo, record: object,
                       source: _Source) -> bool | None:
        """Whether a complete version holds the source's content, computed from the
        local source only (a directory's tree hash without compressing, a file's
        digests); None when it cannot be told (a stream, an unknown ETag scheme)."""
        fmt = format_of(record)
        if source.tree is not None:
            if fmt != TAR_ZSTD or not isinstance(record, dict):
                return False if record is not None else None
            from .archive.pack import tree_sha256

            digest = await anyio.to_thread.run_sync(tree_sha256, source.tree)
            return bool(digest == record.get("tree_sha256"))
        if source.path is None:
            return None
        digests = await anyio.to_thread.run_sync(file_digests, self.fs, source.path)
        if record is not None:
            return fmt == FILE and parse_record(package, version, record) == Expected(
                digests.size, sha256=digests.sha256)
        if digests.size != pkg.size:
            return False
        if pkg.md5 is not None:  # tycho-station's single PUT: the ETag is the MD5
            return pkg.md5 == digests.md5
        # a multipart ETag: sure only when it is the one boto3 would have made
        return pkg.etag.strip('"').lower() == digests.boto3_etag or None

    async def _reserve(self, package: str, version: str, localname: str,
                       fmt: str = FILE) -> _Hold:
        """Create the version's pending record and hold it. Refused while the version
        exists or another push of it is alive. Only a pending record with no object
        beside it is ever taken over, and only once its push is gone (lifecycle)."""
        rkey = record_key(package, version)
        pkg, old = await self._look(package, version)
        loaded = load_record(package, version, old[0]) if old is not None else None
        if pkg is not None:
            if is_pending(loaded):
                if await self._alive(package, version, loaded, old):
                    raise _Busy(f"{package} {version} is being recorded by another push "
                                "right now; published versions are immutable, push a new "
                                "version")
                raise AlreadyExists(
                    f"{package} {version} exists, but the push that uploaded it was cut "
                    f"short; run 'tychoreg verify {package} --version {version} --repair'")
            raise AlreadyExists(f"{package} {version} already exists; published versions "
                                "are immutable, push a new version")
        busy = _Busy(f"{package} {version} is being pushed by another client right "
                     "now; published versions are immutable, push a new version")
        conditions: dict[str, Any] = {"if_none_match": True}
        if old is not None and loaded is not None:
            if state_of(loaded) == DELETING:
                raise AlreadyExists(f"{package} {version} is being deleted (a deletion was "
                                    f"cut short); 'tychoreg delete {package} {version}' "
                                    "finishes it")
            if not is_pending(loaded):
                # A complete record: its object appeared after our HEAD (the HEAD and the
                # read of the record run at once). Never taken over.
                raise AlreadyExists(f"{package} {version} already exists; published "
                                    "versions are immutable, push a new version")
            if not await self._abandoned(package, version, loaded, old[1]):
                raise busy
            if await self.engine.head(version_key(package, version)) is not None:
                # looked again after reading: its push was alive after all, and uploaded
                raise busy
            conditions = {"if_match": old[1]}
        holder = processes.this_process()
        push_id = uuid.uuid4().hex
        body: dict[str, Any] = {
            "state": PENDING, "tool": f"tychoreg {__version__}", "started_at": now(),
            "localname": localname, "push_id": push_id,
            **({} if fmt == FILE else {"format": fmt}),
            **({} if holder is None else {"holder": holder.to_json()})}
        try:
            etag = await self.engine.put_bytes(rkey, dump(body), **conditions)
        except PreconditionFailed:
            # A retried write whose first answer was lost finds its own record: ours if
            # it carries our push id.
            mine = await _own_record(self.engine.get_bytes, rkey, push_id)
            if mine is None:
                raise busy from None
            etag = mine
        if "if_match" in conditions:  # taken over: the dead push's upload goes too
            key = version_key(package, version)
            with contextlib.suppress(TychoError):
                for upload in await self.engine.list_uploads(key):
                    if upload.key == key:
                        await self.engine.abort_upload(key, upload.upload_id)
        return _Hold(self.engine, rkey, body, etag, self.liveness.interval)

    async def _alive(self, package: str, version: str, record: dict[str, Any] | None,
                     found: tuple[bytes, str] | None) -> bool:
        """Whether ``record`` (read as ``found``: its bytes and ETag; None when that
        ETag is not known) is the pending record of a push that is still alive."""
        return record is not None and is_pending(record) and not await self._abandoned(
            package, version, record, found[1] if found is not None else None)

    async def _abandoned(self, package: str, version: str, record: dict[str, Any],
                         etag: str | None) -> bool:
        """Whether a pending record (read with ``etag``) belongs to a push that is gone:
        its process on this machine no longer exists, or it has not been renewed for
        ``liveness.bound`` seconds by the store's clock (Date against Last-Modified)."""
        alive = processes.alive(holder_of(record))
        if alive is False or not is_pending(record):
            return abandoned(record, now=0.0, renewed=None, holder_alive=alive,
                             liveness=self.liveness)
        info = await self.engine.head(record_key(package, version))
        if info is None or (etag is not None and info.etag != etag):
            return False  # renewed or replaced since it was read: someone holds it
        now_, renewed = info.server_time, info.modified
        if now_ is None or renewed is None:  # a store that tells no time: the record's
            now_, renewed = time.time(), written_at(record)  # own stamp, by our clock
        return abandoned(record, now=now_, renewed=renewed, holder_alive=alive,
                         liveness=self.liveness)

    async def _release(self, package: str, version: str, hold: _Hold) -> None:
        """Remove our pending record after a push that published nothing, unless another
        push took it over meanwhile, or the object is there after all (an answer lost to
        a signal or a timeout): then the record stays pending, so no pull trusts the
        object until ``verify --repair`` records it. Bounded: it runs while a signal
        waits."""
        rkey = record_key(package, version)
        with anyio.move_on_after(CLEANUP_SECONDS):
            try:
                pkg, record = await self._look(package, version)
                if pkg is None and record is not None and (
                        record[1] == hold.etag or
                        load_record(package, version, record[0]).get("push_id") ==
                        hold.push_id):
                    await self.engine.delete(rkey)
            except TychoError:
                return  # a pending record left behind is taken over later, never trusted

    async def _publish(self, package: str, version: str, result: UploadResult,
                       localname: str, *, promote: bool,
                       record: dict[str, Any] | None = None,
                       extra: dict[str, Any] | None = None,
                       lost: dict[str, dict[str, Any]] | None = None) -> bool:
        """Write the full record (unless ``record`` is the one already written) and its
        copy in tycho.json (creating tycho.json for a new package); True when tycho.json
        was created. ``lost``: complete records of other versions whose copy is missing
        (left so by a push that lost every race for tycho.json), copied in the same write."""
        lost = lost or {}
        written = record
        if written is None:
            written = {"sha256": result.sha256, "size": result.size, "pushed_at": now(),
                       "tool": f"tychoreg {__version__}", "localname": localname,
                       **(extra or {})}
            await self.engine.put_bytes(record_key(package, version), dump(written))

        def publish(meta: dict[str, Any]) -> None:
            records = records_in(meta, create=True)
            records[version] = written
            for other, copy in lost.items():
                records.setdefault(other, copy)
            if promote:
                meta["latest"] = version

        try:
            await self._update_meta(package, publish)
            return False
        except NotFound:
            fresh: dict[str, Any] = {"localname": localname, "latest": None}
            publish(fresh)
            if await self._create(meta_key(package), dump(fresh)) is not None:
                return True
        await self._update_meta(package, publish)
        return False

    async def _lost_copies(
        self, package: str, meta: dict[str, Any], *exclude: str,
        listing: tuple[dict[str, retention.Pushed], set[str]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Complete records of versions whose object is there but whose copy is missing
        from ``meta`` (one listing, unless given; a record read per such version, rarely
        any)."""
        if RECORDS_KEY not in meta:
            return {}
        pushed, recorded = listing or await self._listing(package)
        copies = records_in(meta)
        wanted = sorted(v for v in recorded & set(pushed)
                        if v not in copies and v not in exclude)
        found: dict[str, dict[str, Any]] = {}

        async def read(version: str) -> None:
            with contextlib.suppress(TychoError):
                data, _ = await self.engine.get_bytes(record_key(package, version))
                record = load_record(package, version, data)
                parse_record(package, version, record)  # complete and well formed only
                found[version] = record

        async with task_group() as tg:
            for version in wanted:
                tg.start_soon(read, version)
        return found

    async def _restore_copies(self, package: str, records: dict[str, dict[str, Any]]
                              ) -> None:
        """Copy complete records into tycho.json where it has none for their version."""
        def restore(meta: dict[str, Any]) -> None:
            copies = records_in(meta, create=True)
            for version, record in records.items():
                copies.setdefault(version, record)

        if records:
            await self._update_meta(package, restore)

    async def promote(self, package: str, version: str) -> None:
        check_package(package)
        check_version(version)
        state = await self._state(package, version)
        if state == "missing":
            raise NotFound(f"{package} {version} does not exist; nothing to promote")
        if state == PENDING:
            raise cut_short(package, version)
        if state == DELETING:
            raise being_deleted(package, version)

        def set_latest(meta: dict[str, Any]) -> None:
            if state_of(records_in(meta).get(version)) == DELETING:  # in the same write
                raise being_deleted(package, version)
            meta["latest"] = version

        await self._update_meta(package, set_latest)

    async def list_packages(self) -> list[PackageSummary]:
        names = [n for n in await self.engine.list_dirs("") if is_valid_segment(n)]
        if not names:
            await self._require_root()
        summaries: dict[str, PackageSummary] = {}

        async def summarize(name: str) -> None:
            try:
                meta, _ = await self.read_meta(name)
            except NotFound:
                # an emptied folder (SeaweedFS and the local backend keep them) is no package
                if await self.engine.list_keys(f"{name}/"):
                    summaries[name] = PackageSummary(name, None, None, "no tycho.json")
                return
            except UnsafeRemoteData as exc:
                summaries[name] = PackageSummary(name, None, None, exc.message)
                return
            summaries[name] = PackageSummary(name, meta.get("latest"), meta.get("localname"))

        async with task_group() as tg:
            for name in names:
                tg.start_soon(summarize, name)
        return [summaries[name] for name in sorted(names) if name in summaries]

    async def list_versions(self, package: str) -> list[VersionInfo]:
        """Every version, in natural order, with what tycho.json's copies of the records
        say of it (asked beside the listing: one round trip, no request per version)."""
        return (await self._versions(package))[0]

    async def _versions(self, package: str) -> tuple[list[VersionInfo], dict[str, Any]]:
        """The versions (as ``list_versions``) and tycho.json ({} if there is none)."""
        check_package(package)
        found: dict[str, Any] = {}

        async def meta() -> None:
            with contextlib.suppress(NotFound):
                found["meta"] = (await self.read_meta(package))[0]

        async def listing() -> None:
            found["pushed"] = await self._pushed(package)

        async with task_group() as tg:
            tg.start_soon(meta)
            tg.start_soon(listing)
        pushed: list[retention.Pushed] = found["pushed"]
        if "meta" not in found and not pushed:
            raise NotFound(f"package {package!r} does not exist (no tycho.json)")
        meta_: dict[str, Any] = found.get("meta") or {}
        copies = records_in(meta_)
        by_version = {p.version: p for p in pushed}
        return [_version_info(by_version[v], copies.get(v), meta_.get("latest"))
                for v in sort_versions(list(by_version))], meta_

    async def _raw_record(self, package: str, version: str, meta: dict[str, Any] | None,
                          *, authoritative: bool = False) -> dict[str, Any] | None:
        """The version's record: the copy in tycho.json (no request), else the record
        object, else None (a version pushed by tycho-station).

        A package whose tycho.json has no section of ours was never pushed to by tychoreg
        (a push marks it before it uploads), so a pull does not look for a record object
        there (one request a package saved); ``authoritative`` lookups (verify) always do."""
        copy = records_in(meta).get(version) if meta is not None else None
        if copy is not None:
            return copy if isinstance(copy, dict) else {}
        if meta is not None and RECORDS_KEY not in meta and not authoritative:
            return None
        try:
            data, _ = await self.engine.get_bytes(record_key(package, version))
        except NotFound:
            return None
        return load_record(package, version, data)

    async def _record(self, package: str, version: str, meta: dict[str, Any] | None, *,
                      authoritative: bool = False) -> Expected | None:
        """What the pushed bytes were, by the record (None: no record). A record of a push
        or deletion cut short raises IncompleteVersion: it is never trusted."""
        record = await self._raw_record(package, version, meta, authoritative=authoritative)
        return None if record is None else parse_record(package, version, record)

    @staticmethod
    def _resolve(request: PullRequest, meta: dict[str, Any]) -> str:
        package = request.package
        version = request.version if request.version not in (None, LATEST) \
            else meta.get("latest")
        if version is None:
            raise NothingToPull(f"package {package!r} has no latest version; promote one "
                                "or pass --version")
        if not is_valid_segment(version):
            raise UnsafeRemoteData(f"package {package!r}: tycho.json names an invalid latest "
                                   f"version {version!r}")
        return version

    async def verify(self, request: PullRequest, *, repair: bool = False) -> VerifyResult:
        """Download a version into a scratch directory, check it, and delete it. With
        ``repair``, an interrupted push is completed (its object is there: its SHA-256
        is recorded) or cleared (it is not), and a lost copy in tycho.json restored."""
        package = check_package(request.package)
        meta = await self._read_meta_or_none(package) if repair and request.version \
            else (await self.read_meta(package))[0]
        version = request.version if meta is None and request.version else \
            self._resolve(request, meta or {})
        if repair:
            return await self._repair(package, version, meta)
        record = await self._record(package, version, meta, authoritative=True)
        return await self._scratch_verify(package, version, record)

    async def _scratch_verify(self, package: str, version: str, record: Expected | None,
                              repaired: str | None = None) -> VerifyResult:
        """Download a version into a scratch directory to check it (by the record, else
        as layout's policy says), and delete it."""
        used: list[Expected] = []

        async def expected(info: ObjectInfo) -> Expected:
            used.append(expectation(record, info))  # asked again if another answer came
            return used[-1]

        import tempfile  # only verify needs a scratch directory

        scratch = await anyio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix="tychoreg-verify-"))
        try:
            info, sha256 = await self._download(package, version, Path(scratch) / "o",
                                                known=None, expected=expected)
        finally:
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)
        return VerifyResult(package, version, info.size, sha256, checked(used[-1]), repaired)

    async def _repair(self, package: str, version: str,
                      meta: dict[str, Any] | None) -> VerifyResult:
        rkey = record_key(package, version)
        pkg, found = await self._look(package, version)  # one round trip for both
        record = load_record(package, version, found[0]) if found is not None else None
        if record is None or not is_pending(record):
            copy = records_in(meta).get(version) if meta is not None else None
            source = copy if copy is not None else record  # what verify would read
            expected = parse_record(package, version, source) if source is not None else None
            result = await self._scratch_verify(package, version, expected)
            if record is not None and copy is None:
                # a push cut short after its record: copy it where pulls look (and create
                # tycho.json for a new package, named by the record's localname)
                await self._publish(package, version, UploadResult(result.size, result.sha256,
                                                                   "", 0),
                                    check_remote_localname(package, record.get("localname")),
                                    promote=False, record=record)
                result = dataclasses.replace(
                    result, repaired="restored the copy of its record in tycho.json")
            return result
        if not await self._abandoned(package, version, record,
                                     found[1] if found is not None else None):
            raise AlreadyExists(f"{package} {version} is being pushed right now (started "
                                f"{record.get('started_at')}); try again later")
        if pkg is None:
            await self.engine.delete(rkey)
            raise NotFound(f"{package} {version} does not exist: cleared the record of a "
                           "push that was cut short before its upload finished")
        result = await self._scratch_verify(
            package, version, None, "completed a push that was cut short after its upload "
            "(recorded the SHA-256 of the stored bytes)")
        fmt = format_of(record)  # a directory's push keeps its format (not its tree hash)
        await self._publish(package, version, UploadResult(result.size, result.sha256, "", 0),
                            check_remote_localname(package, record.get("localname")),
                            promote=False, extra={} if fmt == FILE else {"format": fmt})
        return result

    async def _download(
        self, package: str, version: str, dest: Path, *, known: ObjectInfo | None,
        expected: ExpectedSource,
        finish: Callable[[ObjectInfo], None] | None = None,
    ) -> tuple[ObjectInfo, str]:
        try:
            return await self.engine.download(version_key(package, version), dest,
                                              known=known, expected=expected,
                                              label=f"{package} {version}", finish=finish)
        except NotFound:
            raise NotFound(f"{package} {version} does not exist") from None

    async def pull(
        self, request: PullRequest, *, force: bool = False,
        outfile: Path | BinaryIO | None = None, raw: bool = False,
        fallback: Sequence[str] = (),
        claim: Callable[[Path], Awaitable[None]] | None = None,
        max_unpacked: int | None = None, meta: dict[str, Any] | None = None,
    ) -> PullResult:
        """Download one version; ``claim`` lets a batch refuse two items with one target,
        ``meta`` hands over the package's tycho.json when the batch has read it already.

        A directory package is extracted to ``OUTDIR/NAME`` (or ``outfile``) unless
        ``raw``, never expanding past its recorded ``tree_size`` (without one: past
        ``max_unpacked``, by default ``default_max_unpacked`` of its size); ``outfile``
        ``-`` (or any path that is the file standard output is) is standard output, and
        a binary file object gets the bytes in order (both checked after the last byte);
        binary bytes are not written to a terminal unless ``raw`` or ``force``.
        ``fallback``: prefixes tried in order, each for its most recently
        pushed version, when the requested version does not exist.

        Only where a local copy may already be current is the object asked for with a
        HEAD first; otherwise its first GET tells size and ETag. A FIFO or character
        device is written in place, in order; anything else that is not a regular file
        is refused before a byte moves, unless the version does not exist (that answer
        comes first: exit 1, whatever the destination)."""
        package = check_package(request.package)
        if meta is None:
            meta, _ = await self.read_meta(package)
        version, exact = await self._pick(request, meta, fallback)
        record = await self._raw_record(package, version, meta)
        expected = None if record is None else parse_record(package, version, record)
        if record is not None and RECORDS_KEY in meta and \
                version not in records_in(meta):  # a push lost every race for tycho.json
            with contextlib.suppress(TychoError):  # best effort: a pull may not write
                await self._restore_copies(package, {version: record})
        fmt = format_of(record)
        localname = check_remote_localname(package, meta.get("localname"))
        if isinstance(outfile, Path) and same_as_stdout(outfile):
            outfile = Path("-")
        if outfile is not None and (not isinstance(outfile, Path) or str(outfile) == "-"):
            return await self._pull_stdout(package, version, expected, exact=exact, fmt=fmt,
                                           stream=None if isinstance(outfile, Path)
                                           else outfile, binary_ok=raw or force)
        try:
            if outfile is None:
                self._check_localname(package, localname)
            if fmt == TAR_ZSTD and not raw:
                name = dir_name(localname)
                if name is None:
                    raise UnsafeRemoteData(f"package {package!r}: its localname {localname!r} "
                                           f"is not NAME{TAR_ZSTD_SUFFIX}, so it names no "
                                           "directory to extract to (--raw keeps the archive)")
                if outfile is None:
                    self._check_localname(package, name)
                dest = outfile if outfile is not None else self.outdir / name
                if claim is not None:
                    await claim(dest.absolute())
                return await self._pull_tree(package, version, expected, record or {}, dest,
                                             force=force, exact=exact,
                                             max_unpacked=max_unpacked)
            if outfile is not None and outfile.is_dir():
                raise UsageError(f"{outfile} is a directory: --outfile names the file to write; "
                                 f"to save {localname} into it, pass --outdir {outfile}")
            named = self.outdir / localname if outfile is None else outfile
            if named.name == PROOF:
                raise UsageError(f"{named} is the name of the proof inside a pulled "
                                 "directory; a file pull never writes one")
            # A few stats and mkdirs: faster on the event loop than through a worker thread
            # (measured: a thread hop per file cost more CPU in GIL hand-offs than it saved).
            target, created, has_sidecar = self._prepare(
                named, self.outdir if outfile is None else None)
        except (UsageError, UnsafeRemoteData):
            await self._must_exist(package, version, record)
            raise
        try:
            if claim is not None:
                try:
                    await claim(target.real)
                except UsageError:
                    await self._must_exist(package, version, record)
                    raise
            result = await self._pull_to(package, version, expected, target, force=force,
                                         has_sidecar=has_sidecar)
        except BaseException:
            self.fs.remove_empty_dirs(created)
            raise
        return dataclasses.replace(result, exact=exact, format=fmt)

    def _check_localname(self, package: str, localname: str) -> None:
        """A localname that decides where a pull writes must not pass for a sidecar, a
        proof or one of tychoreg's own files."""
        problem = localname_clash(localname, self.reserved)
        if problem:
            raise UnsafeRemoteData(f"refusing package {package!r}: its tycho.json names the "
                                   f"local file {localname!r}, and {problem}; pull it with "
                                   "--outfile PATH")

    async def _must_exist(self, package: str, version: str,
                          record: dict[str, Any] | None) -> None:
        """Before refusing a destination, make sure the version exists: a missing version
        is the answer (exit 1), whatever is in the way. A record says it does (no
        request); otherwise one HEAD tells."""
        if record is None and await self.engine.head(version_key(package, version)) is None:
            await self._require_root()
            raise NotFound(f"{package} {version} does not exist") from None

    async def _pick(self, request: PullRequest, meta: dict[str, Any],
                    fallback: Sequence[str]) -> tuple[str, bool]:
        """The version to pull and whether it is the one asked for (not a fallback)."""
        if fallback and request.version is None:
            raise UsageError("--fallback needs --version: the exact key to try first")
        if any(not prefix for prefix in fallback):
            raise UsageError("--fallback needs a non-empty prefix")
        version = self._resolve(request, meta)
        if not fallback or await self._state(request.package, version, meta) == "ok":
            return version, True
        pushed = await self._pushed(request.package)
        copies = records_in(meta)
        for candidate, _ in retention.fallback_order(
                [p for p in pushed if p.version != version], fallback):
            copy = copies.get(candidate)
            if copy is not None:
                if state_of(copy) == "ok":
                    return candidate, False
            elif RECORDS_KEY not in meta or \
                    await self._state(request.package, candidate, meta) == "ok":
                return candidate, False  # (a cut-short push or deletion is passed over)
        raise NotFound(f"{request.package} {version} does not exist, and no complete version "
                       f"starts with {', '.join(repr(p) for p in fallback)}")

    async def _pushed(self, package: str) -> list[retention.Pushed]:
        """Every version of a package as the listing shows it (time of push, size)."""
        return list((await self._listing(package))[0].values())

    async def _listing(self, package: str) -> tuple[dict[str, retention.Pushed], set[str]]:
        """One listing of the package's keys: its versions' objects (``.pkg``, as
        tycho-station lists them) and the versions that have a record object."""
        head = f"{package}/tycho_"
        pushed: dict[str, retention.Pushed] = {}
        recorded: set[str] = set()
        for info in await self.engine.list_keys(head):
            name = info.key[len(head):]
            if name.endswith(".pkg") and is_valid_segment(version := name[:-len(".pkg")]):
                pushed[version] = retention.Pushed(version, info.modified or 0.0, info.size)
            elif name.endswith(".meta.json") and \
                    is_valid_segment(version := name[:-len(".meta.json")]):
                recorded.add(version)
        return pushed, recorded

    def _prepare(self, named: Path, within: Path | None) -> tuple[Target, list[Path], bool]:
        """Everything a pull looks at on disk before it moves a byte: what the
        destination is, the folders it needs (created, to be taken back on failure),
        whether a sidecar may make it current."""
        target = self.fs.target(named, within=within)
        created = self.fs.make_dirs(target.real.parent)
        sidecar = etag_sidecar(target.named)
        return target, created, target.sidecar and fits(sidecar) and sidecar.exists()

    def _expects(self, record: Expected | None) -> ExpectedSource:
        """What a pull checks: the record itself when there is one (its size known before
        the first request, so a small object is asked with a plain GET), else layout's
        policy, asked on the first answer's headers."""
        if record is not None:
            return record

        async def expected(info: ObjectInfo) -> Expected:
            return expectation(None, info)

        return expected

    async def _stream(self, package: str, version: str, record: Expected | None,
                      sink: Callable[[bytes], None]) -> ObjectInfo:
        try:
            info, _ = await self.engine.download_stream(
                version_key(package, version), sink, label=f"{package} {version}",
                expected=self._expects(record))
        except NotFound:
            raise NotFound(f"{package} {version} does not exist") from None
        return info

    async def _pull_stdout(self, package: str, version: str, record: Expected | None, *,
                           exact: bool, fmt: str, stream: BinaryIO | None,
                           binary_ok: bool) -> PullResult:
        """The bytes, in order, to standard output (or ``stream``); checked after the
        last one. Onto a terminal, binary bytes (a directory's archive, or a file whose
        first bytes hold a NUL) are refused before any is written, unless ``binary_ok``."""
        guard = not binary_ok and _is_terminal(stream)
        if guard and fmt == TAR_ZSTD:
            raise _binary_to_terminal(package, version, "a directory package's archive")
        refused: list[bool] = []  # decided by the first bytes, kept for any retry

        def sink(data: bytes) -> None:
            if guard and data and not refused:
                refused.append(b"\0" in data)
            if refused and refused[0]:
                raise _binary_to_terminal(package, version, "binary data")
            try:
                if stream is not None:
                    stream.write(data)
                else:
                    self.fs.write(STDOUT, data, "write to standard output")
            except BrokenPipeError:
                raise OutputClosed("the output was closed") from None
            except OSError as exc:
                raise failure(exc, "write the output") from exc
            except TransferError as exc:
                if isinstance(exc.__cause__, BrokenPipeError):
                    raise OutputClosed("the output was closed") from None
                raise

        info = await self._stream(package, version, record, sink)
        if stream is not None:
            await anyio.to_thread.run_sync(_flush, stream)
        return PullResult(package, version, Path("-"), info.size, skipped=False, exact=exact,
                          format=fmt)

    async def _pull_to(self, package: str, version: str, record: Expected | None,
                       target: Target, *, force: bool, has_sidecar: bool) -> PullResult:
        if target.is_stream:
            fd = await anyio.to_thread.run_sync(self.fs.open_stream, target.real,
                                                abandon_on_cancel=True)

            def sink(data: bytes) -> None:
                self.fs.write(fd, data, "write the download")

            try:
                info = await self._stream(package, version, record, sink)
            finally:
                self.fs.close(fd)
            return PullResult(package, version, target.named, info.size, skipped=False)
        known = None
        sidecar = etag_sidecar(target.named)
        if has_sidecar:
            if not force:
                known = await self.engine.head(version_key(package, version))
                if known is None:
                    raise NotFound(f"{package} {version} does not exist")
                if is_current(target.named, known):
                    return PullResult(package, version, target.named, known.size,
                                      skipped=True)
            # Drop the old sidecar first: a file whose sidecar is gone is never taken as
            # current, whatever happens to this process before the new one is written.
            await anyio.to_thread.run_sync(self.fs.unlink, sidecar)

        def write_sidecar(info: ObjectInfo) -> None:
            if fits(sidecar):  # else (a 251-byte localname or more) never taken as current
                self.fs.write_in_place(sidecar, info.etag.encode())

        info, _ = await self._download(package, version, target.real, known=known,
                                       expected=self._expects(record),
                                       finish=write_sidecar if target.sidecar else None)
        return PullResult(package, version, target.named, info.size, skipped=False)

    async def _pull_tree(self, package: str, version: str, expected: Expected | None,
                         record: dict[str, Any], dest: Path, *, force: bool,
                         exact: bool, max_unpacked: int | None) -> PullResult:
        """Extract a directory package at ``dest``, atomically: into a temporary
        directory beside it while the stream is hashed, with the proof written into it;
        ``dest`` is replaced (the old one renamed aside, the new one into place) only
        once the SHA-256 matches. An existing ``dest`` is replaced only if its proof
        says a pull of this package made it, and skipped while that proof names this
        version's object and its manifest still matches the tree. Replacing a tree with
        local edits proceeds, with a warning naming them."""
        if dest.name in ("", ".", ".."):
            raise UsageError(f"{dest} names no directory; pull a directory package to a "
                             "path such as ./deps")
        key = version_key(package, version)
        limit = _unpack_limit(package, version, expected, record, max_unpacked)
        created, proof = await anyio.to_thread.run_sync(self._tree_target, package, dest)
        from .archive.proof import describe_edits, local_edits, write_proof

        warnings: tuple[str, ...] = ()
        try:
            if proof is not None:
                edits = await anyio.to_thread.run_sync(local_edits, dest, proof)
                if not force and not edits and proof.get("version") == version:
                    known = await self.engine.head(key)
                    if known is None:
                        raise NotFound(f"{package} {version} does not exist")
                    if proof.get("etag") == known.etag:
                        return PullResult(package, version, dest, known.size, skipped=True,
                                          exact=exact, format=TAR_ZSTD)
                if edits:
                    warnings = (f"{dest} had local edits, replaced by the pull: "
                                f"{describe_edits(edits)}",)
            temp = await anyio.to_thread.run_sync(self.fs.create_temp_dir, dest)
            try:
                info, extracted = await self._extract(package, version, expected, temp,
                                                      limit)
                want = record.get("tree_sha256")
                if isinstance(want, str) and extracted.tree_sha256 != want:
                    raise IntegrityError(f"{package} {version}: the extracted tree does not "
                                         "match the recorded tree_sha256")
                await anyio.to_thread.run_sync(write_proof, temp, package, version,
                                               info.etag)
                with anyio.CancelScope(shield=True):
                    old = await anyio.to_thread.run_sync(self.fs.replace_dir, temp, dest)
                if old is not None:
                    await anyio.to_thread.run_sync(self.fs.remove_tree, old)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.fs.remove_tree, temp)
                raise
        except BaseException:
            self.fs.remove_empty_dirs(created)
            raise
        return PullResult(package, version, dest, info.size, skipped=False, exact=exact,
                          format=TAR_ZSTD, warnings=warnings)

    def _tree_target(self, package: str, dest: Path) -> tuple[list[Path], dict[str, Any] | None]:
        """Check where a directory package may go: a missing path, or a directory whose
        proof says a pull of this package made it; never the current directory, the
        download folder, anything holding them, or a place in /proc. Finish a
        replacement a crash cut short (only once the destination is known to be ours or
        missing); create the folders above it. Returns those created, and the proof of
        the directory there (None: there is none yet)."""
        from .archive.proof import read_proof

        resolved = dest.resolve()
        for keep in (Path.cwd(), self.outdir.resolve()):
            if resolved == keep or resolved in keep.parents:
                raise UsageError(f"{dest} is (or holds) {keep}; pull a directory package "
                                 "to a path of its own")
        if pseudo_fs(dest) == "/proc":
            raise UsageError(f"cannot extract to {dest}: /proc holds processes, not files; "
                             "choose another path")
        for above in dest.parents:
            if os.path.lexists(above):
                if not above.is_dir():
                    raise UsageError(f"{above} is not a directory")
                break
        if os.path.lexists(dest):
            if dest.is_symlink() or not dest.is_dir():
                raise UsageError(f"{dest} exists and is not a directory; pull a directory "
                                 "package to a new path, or remove it")
            proof = read_proof(dest)
            self._check_proof(package, dest, proof)
            self.fs.recover_dir(dest)  # leftovers of a replacement: removed
            return self.fs.make_dirs(dest.parent), proof
        proof = None
        if self.fs.recover_dir(dest):  # a crash between the two renames: the old tree is back
            proof = read_proof(dest)
            self._check_proof(package, dest, proof)
        return self.fs.make_dirs(dest.parent), proof

    @staticmethod
    def _check_proof(package: str, dest: Path, proof: dict[str, Any] | None) -> None:
        """Refuse (exit 2) a directory that no pull of ``package`` made, saying how to go
        on. A ``NAME.etag`` beside it proves nothing (tychoreg 0.1.0 wrote one for the
        directories it pulled, and any file pull can write one)."""
        if proof is None:
            legacy = etag_sidecar(dest)
            if legacy.is_file():
                raise UsageError(
                    f"{dest} exists and nothing in it proves that a pull of {package} made "
                    f"it (no {PROOF} inside); {legacy.name} beside it is not proof (tychoreg "
                    f"0.1.0 wrote one, and so can any file pull). If it is a pulled copy you "
                    f"no longer need, remove it (rm -r {dest}) and pull again; otherwise "
                    "pull to another --outfile")
            raise UsageError(f"{dest} exists and was not made by a pull of {package} (no "
                             f"{PROOF} inside it); it is left alone: move it away or pull "
                             "to another --outfile")
        owner = proof.get("package")
        if owner != package:
            raise UsageError(f"{dest} holds a pull of package {owner!r}, not {package!r}; "
                             f"it is left alone: pull {package} to another --outfile, or "
                             f"remove {dest} first")

    async def _extract(self, package: str, version: str, expected: Expected | None,
                       into: Path, limit: Limit) -> tuple[ObjectInfo, Extracted]:
        """Stream the object through the extractor (a worker thread reading a bounded
        pipe) while the engine hashes it; both must succeed."""
        from .archive.extract import ChunkPipe, extract

        pipe = ChunkPipe()
        done: list[Extracted] = []

        async def extracting() -> None:
            try:
                done.append(await anyio.to_thread.run_sync(extract, pipe, into,
                                                           limit))
            finally:
                pipe.abandon()

        async with task_group() as tg:
            tg.start_soon(extracting)
            try:
                info = await self._stream(package, version, expected, pipe.write)
            except BaseException as exc:
                pipe.fail(exc)
                raise
            pipe.close()
        return info, done[0]

    async def pull_many(
        self, requests: Sequence[PullRequest], *, force: bool = False,
        max_unpacked: int | None = None,
    ) -> list[PullResult]:
        """Pull every item concurrently (an item listed twice, once); report every failure
        together at the end. Two items that would write one path collide only if both
        exist: an item meeting a path claimed by another waits for that one to end, and
        takes the path over if it failed (``tool==1.0 tool==7``, 7 missing: 1.0 is
        pulled, 7 is "does not exist"). ``max_unpacked`` as for ``pull``.

        Every package's tycho.json is read once, however many items name it, in one wave
        ahead of the objects (``_MetaWave``): the reads go out at once, at the head of the
        budget's queue, and an item whose tycho.json is in starts its object's GET without
        a round trip of its own."""
        with self.fs.batch():  # the folders written to are looked at once, not per file
            return await self._pull_many(list(dict.fromkeys(requests)), force=force,
                                         max_unpacked=max_unpacked)

    async def _pull_many(self, requests: list[PullRequest], *, force: bool,
                         max_unpacked: int | None) -> list[PullResult]:
        results: dict[int, PullResult] = {}
        failures: list[tuple[str, TychoError]] = []
        claimed: dict[Path, tuple[str, anyio.Event]] = {}
        created = await anyio.to_thread.run_sync(self.fs.make_dirs, self.outdir)
        concurrency = self.engine.settings.concurrency
        wave = _MetaWave(self, [r.package for r in requests], WAVE_PER_SLOT * concurrency)

        async def one(index: int, request: PullRequest) -> None:
            ended = anyio.Event()
            mine: list[Path] = []

            async def claim(key: Path) -> None:  # an absolute path
                while key in claimed:  # bounded: each claimer ends once
                    other, other_ended = claimed[key]
                    await other_ended.wait()
                    if key in claimed:  # it succeeded: a real collision
                        raise UsageError(f"{request} and {other} both write {key}")
                claimed[key] = (str(request), ended)
                mine.append(key)

            try:
                meta = await wave.meta(request.package)
                results[index] = await self.pull(request, force=force, claim=claim,
                                                 max_unpacked=max_unpacked, meta=meta)
            except TychoError as exc:
                failures.append((str(request), exc))
                for key in mine:  # a failed item writes nothing: its paths are free
                    del claimed[key]
            finally:
                wave.done(request.package)
                ended.set()

        # A fixed pool of workers, not a task per item: memory stays flat in the length of
        # the list, and twice the request budget keeps every slot busy (an item waits on
        # tycho.json before its object).
        queue = iter(enumerate(requests))

        async def worker() -> None:
            for index, request in queue:
                await one(index, request)

        try:
            async with task_group() as tg:
                wave.start(tg, concurrency)
                for _ in range(min(len(requests), 2 * concurrency)):
                    tg.start_soon(worker)
        finally:
            if not results:
                self.fs.remove_empty_dirs(created)
        if failures:
            done = len(results)
            raise PartialFailure(
                f"{len(failures)} of {plural(len(requests), 'package')} failed ({done} "
                "pulled)", failures,
                [results[i] for i in sorted(results)])
        return [results[i] for i in range(len(requests))]

    # -- deletion ------------------------------------------------------------------------

    async def _deleting(self, package: str, version: str, meta: dict[str, Any]
                        ) -> tuple[ObjectInfo | None, dict[str, Any] | None, bool]:
        """The version's object, its record object, and whether a deletion of it was
        started (its copy in tycho.json or its record says so)."""
        pkg, found = await self._look(package, version)
        record = load_record(package, version, found[0]) if found is not None else None
        started = DELETING in (state_of(records_in(meta).get(version)), state_of(record))
        return pkg, record, started

    async def delete(self, package: str, versions: Sequence[str], *, force: bool = False,
                     dry_run: bool = False, everything: bool = False) -> DeleteResult:
        """Delete versions, all or none: every one is checked first (a missing version,
        or the latest without ``force``, refuses the whole command). Each deletion is
        ordered so that a crash between its steps leaves nothing a pull would trust
        (``_delete_versions``); the same command run again, or a prune, finishes it.
        ``everything`` removes the whole package (``_delete_package``)."""
        check_package(package)
        versions = list(dict.fromkeys(check_version(v) for v in versions))
        if everything:
            if versions:
                raise UsageError("name versions or --all, not both")
            return await self._delete_package(package, dry_run=dry_run)
        if not versions:
            raise UsageError("name at least one version to delete (or --all)")
        if LATEST in versions:
            raise UsageError(f"{LATEST!r} is tycho-station's word for the latest version; "
                             "name the version to delete")
        meta, _ = await self.read_meta(package)
        looked: dict[str, tuple[ObjectInfo | None, dict[str, Any] | None, bool]] = {}

        async def look(version: str) -> None:
            looked[version] = await self._deleting(package, version, meta)

        async with task_group() as tg:
            for version in versions:
                tg.start_soon(look, version)
        problems: list[tuple[str, TychoError]] = []
        for version in versions:
            pkg, _, started = looked[version]
            if pkg is None and not started:
                problems.append((version, NotFound(f"{package} {version} does not exist")))
            elif meta.get("latest") == version and not force:
                problems.append((version, Refused(
                    f"{package} {version} is the latest version; promote another first, or "
                    "pass --force to delete it and leave latest unset")))
        if problems:
            if len(problems) == 1:
                raise problems[0][1]
            raise PartialFailure(f"nothing deleted: {len(problems)} of "
                                 f"{plural(len(versions), 'version')} refused", problems)
        cleared = meta.get("latest") in versions
        if not dry_run:
            await self._delete_versions(package, versions, force=force)
        return DeleteResult(package, versions, cleared, dry_run)

    async def _delete_package(self, package: str, *, dry_run: bool) -> DeleteResult:
        """Every version (latest included: removing the package is what was asked), by
        the steps of ``_delete_versions``, then the package's multipart uploads, then
        tycho.json last: a crash anywhere leaves a package the same command finishes.
        A push still alive is never cut short: it refuses the whole command."""
        meta = await self._read_meta_or_none(package)
        pushed, recorded = await self._listing(package)
        if meta is None and not pushed and not recorded:
            await self._require_root()
            raise NotFound(f"package {package!r} does not exist")
        copies = records_in(meta or {})
        versions = sorted((v for v in set(pushed) | recorded | set(copies)
                           if is_valid_segment(v)), key=natural)
        for version in sorted(recorded - {v for v, c in copies.items() if state_of(c) == "ok"},
                              key=natural):
            _, record, started = await self._deleting(package, version, meta or {})
            if not started and await self._alive(package, version, record, None):
                raise _Busy(f"{package} {version} is being pushed by another client right "
                            "now; nothing deleted (try again once it is done)")
        latest = (meta or {}).get("latest")
        cleared = isinstance(latest, str)
        uploads = await self.engine.list_uploads(f"{package}/tycho_")
        if dry_run:
            return DeleteResult(package, versions, cleared, True, package_removed=True)
        if versions:  # marks only in a tycho.json that exists (none: no pull trusts any)
            await self._delete_versions(package, versions, force=True,
                                        marks=meta is not None)
        for upload in uploads:
            with contextlib.suppress(NotFound):
                await self.engine.abort_upload(upload.key, upload.upload_id)
        objects, records = await self._listing(package)
        if left := sorted(set(objects) | records, key=natural):
            raise TransferError(f"{package}: {', '.join(left)} pushed meanwhile; tycho.json "
                                f"kept (run delete {package} --all again)")
        if meta is not None:
            await self.engine.delete(meta_key(package))
        return DeleteResult(package, versions, cleared, False, package_removed=True)

    async def _delete_versions(self, package: str, versions: Sequence[str], *,
                               force: bool, marks: bool = True) -> None:
        """1. mark every version as being deleted in tycho.json, in one conditional
        write that re-checks latest (from here no pull trusts any of them, and the same
        command run again knows them: a mark is "deleted by a run cut short", not a
        typo); then, version by version, 2. mark its record object too (for a reader
        whose tycho.json lost our copy), 3. delete the object, 4. delete the record
        object; only once the last object is gone, 5. drop the marks from tycho.json.
        A crash anywhere leaves the marks, which the next delete or prune finishes.
        ``marks`` False: the package has no tycho.json (steps 1 and 5 are skipped)."""
        olds: dict[str, dict[str, Any] | None] = {}

        async def read(version: str) -> None:
            olds[version] = None
            with contextlib.suppress(NotFound):
                olds[version] = load_record(package, version, (await self.engine.get_bytes(
                    record_key(package, version)))[0])

        async with task_group() as tg:
            for version in versions:
                tg.start_soon(read, version)
        since = now()
        marked = {v: {**(old if old is not None and state_of(old) == "ok" else {}),
                      "state": DELETING, "deleting_since": since,
                      "deleted_by": f"tychoreg {__version__}"} for v, old in olds.items()}

        def start(meta: dict[str, Any]) -> None:
            latest = meta.get("latest")
            if latest in marked:
                if not force:
                    raise Refused(f"{package} {latest} became the latest version meanwhile; "
                                  "nothing deleted")
                meta["latest"] = None
            records_in(meta, create=True).update(marked)

        def finish(meta: dict[str, Any]) -> None:
            records = records_in(meta)
            for version in versions:
                if state_of(records.get(version)) == DELETING:
                    del records[version]

        if marks:
            await self._update_meta(package, start)
        try:
            for version in versions:
                with anyio.CancelScope(shield=True), anyio.fail_after(SHIELD_SECONDS):
                    rkey = record_key(package, version)
                    if olds[version] is not None:
                        await self.engine.put_bytes(rkey, dump(marked[version]))
                    await self.engine.delete(version_key(package, version))
                    await self.engine.delete(rkey)
            if marks:
                with anyio.CancelScope(shield=True), anyio.fail_after(SHIELD_SECONDS):
                    await self._update_meta(package, finish)
        except TimeoutError:
            raise TransferError(f"{package}: a deletion got no answer within "
                                f"{SHIELD_SECONDS} s; 'tychoreg delete {package} "
                                f"{' '.join(versions)}' finishes it") from None

    async def prune(self, package: str, *, keep: int, older_than: float | None = None,
                    dry_run: bool = False) -> PruneResult:
        """Keep the ``keep`` most recently pushed versions and latest; delete the rest
        (only those older than ``older_than`` seconds, when given). Also finishes what
        was cut short: deletions, pushes whose object is there (recorded) or is not
        (cleared), and multipart uploads older than a day (aborted)."""
        check_package(package)
        if keep < 0:
            raise UsageError("--keep must be 0 or more")
        meta, _ = await self.read_meta(package)
        pushed, recorded = await self._listing(package)
        unfinished = await self._unfinished(package, meta, pushed, recorded)
        plan = retention.plan_prune([p for v, p in pushed.items() if v not in unfinished],
                                    keep=keep, latest=meta.get("latest"),
                                    older_than=older_than, now=time.time())
        stale = await self._stale_uploads(package)
        if not dry_run:
            for how in dict.fromkeys(unfinished.values()):  # one restore serves several
                await how()
            for key, upload_id in stale:
                await self.engine.abort_upload(key, upload_id)
            if plan.delete:
                await self._delete_versions(package, [p.version for p in plan.delete],
                                            force=False)
        return PruneResult(package, [p.version for p in plan.delete],
                           [p.version for p in plan.keep], sorted(unfinished, key=natural),
                           len(stale), dry_run)

    async def _unfinished(self, package: str, meta: dict[str, Any],
                          pushed: dict[str, retention.Pushed], recorded: set[str]
                          ) -> dict[str, Callable[[], Awaitable[Any]]]:
        """Versions left half-way by a crash, each with what finishes it: a deletion
        (finished), a push that died (recorded if its object is there, else cleared).
        A push still alive is left alone."""
        copies = records_in(meta)
        todo: dict[str, Callable[[], Awaitable[Any]]] = {}
        candidates = {v for v, c in copies.items() if state_of(c) != "ok"} | \
            (recorded - set(pushed)) | \
            {v for v in recorded & set(pushed) if v not in copies}
        for version in sorted(candidates, key=natural):
            if not is_valid_segment(version):
                continue
            _, record, started = await self._deleting(package, version, meta)
            if started:
                todo[version] = functools.partial(self._delete_versions, package, [version],
                                                  force=True)
            elif is_pending(record) and record is not None \
                    and await self._abandoned(package, version, record, None):
                todo[version] = functools.partial(
                    self._repair_quietly, PullRequest(package, version))
        lost = await self._lost_copies(package, meta, *todo, listing=(pushed, recorded))
        if lost:  # recorded, but tycho.json lost the copy: restored in one write
            restore = functools.partial(self._restore_copies, package, lost)
            todo.update(dict.fromkeys(lost, restore))
        return todo

    async def _repair_quietly(self, request: PullRequest) -> None:
        with contextlib.suppress(NotFound):  # NotFound: cleared, as asked
            await self.verify(request, repair=True)

    async def _stale_uploads(self, package: str) -> list[tuple[str, str]]:
        """Multipart uploads of the package's versions started over a day ago, whatever
        became of the version (one listing)."""
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        return [(u.key, u.upload_id)
                for u in await self.engine.list_uploads(f"{package}/tycho_")
                if u.key.endswith(".pkg") and u.initiated < cutoff]

    async def show(self, package: str, version: str | None = None) -> ShowResult:
        """What is known of a package (and of one version): no byte is downloaded."""
        check_package(package)
        if version is not None and version != LATEST:
            check_version(version)
        versions, meta = await self._versions(package)
        latest = meta.get("latest")
        localname = meta.get("localname")
        result = ShowResult(package, localname if isinstance(localname, str) else None,
                            latest if isinstance(latest, str) else None, len(versions),
                            sum(v.size for v in versions))
        if version is None:
            return result
        name = self._resolve(PullRequest(package, version), meta)
        info = next((v for v in versions if v.version == name), None)
        record = await self._raw_record(package, name, meta, authoritative=True)
        if info is None:
            raise NotFound(f"{package} {name} does not exist")
        fields = record or {}
        if info.sha256 is None and record is not None:  # the record object, not a copy
            info = _version_info(retention.Pushed(name, info.modified or 0.0, info.size),
                                 record, latest)
        tool, tree = fields.get("tool"), fields.get("tree_sha256")
        return dataclasses.replace(
            result, version=info, tool=tool if isinstance(tool, str) else
            ("tycho-station" if record is None else None),
            tree_sha256=tree if isinstance(tree, str) else None)

    async def probe(self) -> ProbeResult:
        """Whether the store honours conditional writes: write a probe object under the
        registry root, try to overwrite it against If-None-Match and a wrong If-Match,
        and remove it whatever happens."""
        key = f".tychoreg-probe-{uuid.uuid4().hex}"
        await self._require_root()
        await self.engine.put_bytes(key, b"probe", if_none_match=True)
        try:
            outcomes = []
            kwargs: dict[str, Any]
            for kwargs in ({"if_none_match": True}, {"if_match": '"0000"'}):
                try:
                    await self.engine.put_bytes(key, b"probe again", **kwargs)
                    outcomes.append(False)
                except PreconditionFailed:
                    outcomes.append(True)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self.engine.delete(key)
        return ProbeResult(*outcomes)
