"""Locking: items resolved to the exact versions a lock file pins (``lockfile.Locked``),
each by what a pull would trust (the version's state, its record, the object's ETag and
size, the package's localname), and a lock checked and updated against the registry.
Every package's tycho.json is read once; the packages run concurrently through one
pool, within the engine's budget; nothing is decided on a failure: every failed item
is reported together (``PartialFailure``) and no lock is made. Under allowed signers
every version's ``.sig`` is read too (one GET, beside the version's other requests) and
must hold an allowed signature: the entry records the principal and the statement's
SHA-256, so that a pull of the lock checks a current copy with no request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ..errors import (
    IntegrityError,
    NotFound,
    PartialFailure,
    SignatureError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
from ..layout import (
    FILE,
    TAR_ZSTD,
    PackageMeta,
    Record,
    being_deleted,
    cut_short,
    version_key,
)
from ..lifecycle import VersionState
from ..lockfile import Lock, Locked, LockfileError, dump, parse
from ..names import check_package, check_remote_localname
from ..results import (
    LOCK_CHANGED,
    LOCK_DELETED,
    LOCK_MOVED,
    LOCK_OK,
    LockChange,
    LockCheck,
    LockStatus,
    PullRequest,
)
from ..statement import SigFile, Statement
from ..storage import ObjectInfo
from ..transfer.groups import task_group
from ..units import plural
from .catalog import Context, check_localname, resolve, tree_name
from .signing import check, read

T = TypeVar("T")
R = TypeVar("R")

class Locking:
    """``lock``, ``check`` and ``update`` of one registry (``ctx``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog

    @property
    def _concurrency(self) -> int:
        return self.ctx.engine.settings.concurrency

    async def lock(self, requests: Sequence[PullRequest], *,
                   require_sha256: bool = False) -> Lock:
        """The lock of ``requests`` (an item listed twice counts once; one package
        named with two versions is exit 2). ``require_sha256``: a version pushed by
        tycho-station (no record, so no SHA-256) is refused (exit 3)."""
        unique = list(dict.fromkeys(requests))
        seen: dict[str, PullRequest] = {}
        for request in unique:
            check_package(request.package)
            if request.package in seen:
                raise UsageError(f"{seen[request.package]} and {request} both name package "
                                 f"{request.package!r}; a lock holds one version of each")
            seen[request.package] = request
        entries = await each(unique, lambda request: self.locked(
            request, require_sha256=require_sha256), self._concurrency,
            "no lock was made")
        lock = Lock(self.ctx.identity, entries)
        try:  # never hand out a lock that would not read back (a lockfile rule we miss)
            parse(dump(lock), "the new lock")
        except LockfileError as exc:
            raise UnsafeRemoteData(f"the registry's data cannot be locked: {exc}") from None
        return lock

    async def locked(self, request: PullRequest, *, require_sha256: bool = False) -> Locked:
        """One item resolved as a pull resolves it, and refused where a pull would
        refuse it; the object's size must agree with its record."""
        package = request.package
        meta, _ = await self.catalog.read_meta(package)
        version = resolve(request, meta)
        sigs: list[SigFile | None] = []

        async def signature() -> None:
            found = await read(self.ctx, package, version)
            sigs.append(None if found is None else found[0])

        async with task_group() as tg:
            if self.ctx.signers is not None:  # no policy: no .sig is read
                tg.start_soon(signature)
            pkg, found = await self.catalog.look(package, version)
        if pkg is None:
            await self.catalog.require_root()
            raise NotFound(f"{package} {version} does not exist")
        record = None if found is None else Record.load(package, version, found[0])
        copy = meta.records.get(version)
        state = await self.catalog.observe(package, version, pkg, record,
                                           None if found is None else found[1], copy)
        if not state.trusted:
            raise being_deleted(package, version) if state is VersionState.DELETING \
                else cut_short(package, version)
        trusted = record if record is not None else copy  # the record object rules
        sha256, fmt, tree_sha256, tree_size = None, FILE, None, None
        if trusted is not None:
            expected = trusted.expected(package, version)
            if expected.size != pkg.size:
                raise IntegrityError(f"{package} {version}: its record says "
                                     f"{expected.size} bytes, the object holds {pkg.size}")
            sha256, fmt, tree_sha256 = expected.sha256, trusted.format, trusted.tree_sha256
            tree_size = trusted.tree_size(package, version) if fmt == TAR_ZSTD else None
        elif require_sha256:
            raise UnsafeRemoteData(f"{package} {version} was pushed by tycho-station: it has "
                                   "no SHA-256 to lock (only its size and ETag); "
                                   "--require-sha256 refuses it")
        localname = self._localname(package, meta, fmt)
        signed = None
        if self.ctx.signers is not None:
            if trusted is None:
                raise SignatureError(f"{package} {version} has no checksum record (pushed "
                                     "by tycho-station): it cannot be signed, and the "
                                     "allowed signers require a signature")
            signed = check(self.ctx.signers, package, version, sigs[0],
                           Statement.of(package, version, localname, trusted))
        return Locked(package, version, localname, pkg.size, pkg.etag, sha256=sha256,
                      format=fmt, tree_sha256=tree_sha256, tree_size=tree_size,
                      signed_by=None if signed is None else signed.principal,
                      statement_sha256=None if signed is None else signed.statement_sha256)

    def _localname(self, package: str, meta: PackageMeta, fmt: str) -> str:
        """tycho.json's localname, checked as a pull checks it before writing there."""
        localname = check_remote_localname(package, meta.localname)
        check_localname(package, localname, self.ctx.reserved)
        if fmt == TAR_ZSTD:
            check_localname(package, tree_name(package, localname), self.ctx.reserved)
        return localname

    async def check(self, lock: Lock, *, latest: bool = False,
                    other_registry: bool = False) -> LockCheck:
        """Every locked version against the registry: still there with the locked bytes
        (size, ETag, SHA-256), and whether latest moved on. A lock resolved against
        another registry is exit 2 unless ``other_registry``."""
        if lock.registry != self.ctx.identity and not other_registry:
            raise UsageError(f"the lock was resolved against {lock.registry}, not "
                             f"{self.ctx.identity}; name the registry with --registry to "
                             "check it against this one")
        statuses = await each(lock.packages, self._status, self._concurrency,
                              "the lock was not checked")
        return LockCheck(lock.registry, self.ctx.identity, tuple(statuses), latest)

    async def _status(self, entry: Locked) -> LockStatus:
        """One entry's state, from tycho.json and a HEAD of the object (and, under
        allowed signers, its ``.sig``), asked at once."""
        package, version = entry.name, entry.version
        metas: list[PackageMeta | None] = []
        infos: list[ObjectInfo | None] = []
        sigs: list[SigFile | None] = []

        async def signature() -> None:
            found = await read(self.ctx, package, version)
            sigs.append(None if found is None else found[0])

        async def read_meta() -> None:
            metas.append(await self.catalog.read_meta_or_none(package))

        async def head() -> None:
            infos.append(await self.ctx.engine.head(version_key(package, version)))

        async with task_group() as tg:
            tg.start_soon(read_meta)
            tg.start_soon(head)
            if self.ctx.signers is not None:
                tg.start_soon(signature)
        meta, info = metas[0], infos[0]
        if meta is None or info is None:
            return LockStatus(package, version, LOCK_DELETED, None,
                              "no tycho.json" if meta is None else "no object")
        record = None
        with contextlib.suppress(TychoError):  # unreadable: judged by size and ETag alone
            record = await self.catalog.raw_record(package, version, meta)
        if record is not None and record.deleting:
            return LockStatus(package, version, LOCK_DELETED, meta.latest, "being deleted")
        found = record.sha256 if record is not None and not record.pending else None
        if info.size != entry.size or info.etag != entry.etag or \
                (entry.sha256 is not None and found not in (None, entry.sha256)):
            return LockStatus(package, version, LOCK_CHANGED, meta.latest,
                              _change(entry, info.size, info.etag, found))
        if self.ctx.signers is not None:
            drift = self._signer_drift(entry, sigs[0])
            if drift is not None:
                return LockStatus(package, version, LOCK_CHANGED, meta.latest, drift)
        if meta.latest is not None and meta.latest != version:
            return LockStatus(package, version, LOCK_MOVED, meta.latest, None)
        return LockStatus(package, version, LOCK_OK, meta.latest, None)

    def _signer_drift(self, entry: Locked, found: SigFile | None) -> str | None:
        """Under allowed signers: the locked version still signed by an allowed signer
        (else SignatureError, exit 3), and by the one the lock records (else drift, in
        words: ``lock --update`` records the signer now)."""
        assert self.ctx.signers is not None
        if entry.station:
            raise SignatureError(f"{entry}: pushed by tycho-station (no sha256), it cannot "
                                 "be signed, and the allowed signers require a signature")
        signed = check(self.ctx.signers, entry.name, entry.version, found, entry.statement())
        if entry.signed_by is None:
            return f"signed by {signed.principal}, the lock records no signer"
        if signed.principal != entry.signed_by:
            return f"signed by {signed.principal}, locked as signed by {entry.signed_by}"
        if signed.statement_sha256 != entry.statement_sha256:
            return "its statement_sha256 is not the digest of what it locks (edited?)"
        return None

    async def update(self, lock: Lock, packages: Sequence[str] = (), *,
                     require_sha256: bool = False) -> tuple[Lock, list[LockChange]]:
        """The lock with ``packages`` (all when none) re-resolved to their latest, and
        old -> new per package re-resolved. A name the lock does not hold is exit 2, as
        is a lock of another registry (its other entries were not resolved here)."""
        if lock.registry != self.ctx.identity:
            raise UsageError(f"the lock was resolved against {lock.registry}, not "
                             f"{self.ctx.identity}; lock again against this registry "
                             "(tychoreg lock ITEM...) instead of updating it")
        names = list(dict.fromkeys(packages)) or [entry.name for entry in lock.packages]
        missing = [name for name in names if lock.get(name) is None]
        if missing:
            raise UsageError(f"the lock holds no package {missing[0]!r}; add it with "
                             "tychoreg lock (naming every package to lock)")
        fresh = {entry.name: entry for entry in await each(
            [PullRequest(name) for name in names],
            lambda request: self.locked(request, require_sha256=require_sha256),
            self._concurrency, "the lock was not updated")}
        changes = []
        for name in names:
            old = lock.get(name)
            assert old is not None
            changes.append(LockChange(name, old.version, fresh[name].version,
                                      old != fresh[name]))
        entries = [fresh.get(entry.name, entry) for entry in lock.packages]
        return Lock(lock.registry, entries), changes


def _change(entry: Locked, size: int, etag: str, sha256: str | None) -> str:
    """What differs from the lock, in words."""
    if size != entry.size:
        return f"{size} bytes, locked {entry.size}"
    if etag != entry.etag:
        return f"ETag {etag}, locked {entry.etag}"
    return f"sha256 {sha256}, locked {entry.sha256}"


async def each(items: Sequence[T], work: Callable[[T], Awaitable[R]], concurrency: int,
               outcome: str) -> list[R]:
    """``work`` on every item through a fixed pool of workers (twice the request budget:
    each item waits on tycho.json before its object), the results in the order given;
    every failure reported together at the end, ``outcome`` saying what that left."""
    results: dict[int, R] = {}
    failures: list[tuple[int, str, TychoError]] = []
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, item in queue:
            try:
                results[index] = await work(item)
            except TychoError as exc:
                failures.append((index, str(item), exc))

    async with task_group() as tg:
        for _ in range(min(len(items), 2 * concurrency)):
            tg.start_soon(worker)
    if failures:
        failures.sort(key=lambda failure: failure[0])
        raise PartialFailure(f"{len(failures)} of {plural(len(items), 'package')} failed; "
                             f"{outcome}", [(item, exc) for _, item, exc in failures])
    return [results[index] for index in range(len(items))]


async def write(ctx: Context, path: Path, lock: Lock) -> bool:
    """The lock's bytes to ``path`` by temp file and rename, never half-written; left
    untouched (False) when it holds these bytes already."""
    data = dump(lock)

    def same() -> bool:
        try:
            if not path.is_file():
                return False
            with path.open("rb") as file:
                return file.read(len(data) + 1) == data
        except OSError:
            return False

    if await anyio.to_thread.run_sync(same):
        return False
    await anyio.to_thread.run_sync(ctx.fs.write_atomic, path, data)
    return True
