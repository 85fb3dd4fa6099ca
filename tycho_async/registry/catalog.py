"""The bucket as the operations see it: tycho.json read, updated conditionally (If-Match,
re-read and retried when another client won the race) and created (If-None-Match);
a version looked up (its object and its record object in one round trip) and its state;
its record (the copy in tycho.json, else the record object); a package's listing; lost
copies restored; whether a pending record's push is gone (the liveness probe); a
version's bytes downloaded (checked) to a file, a sink or a scratch directory; and the
tycho.json wave of a pull-list. Every operation shares one ``Context``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .. import processes, retention
from ..errors import (
    AlreadyExists,
    MissingRegistry,
    NotFound,
    NothingToPull,
    PreconditionFailed,
    TransferError,
    TychoError,
    UnsafeRemoteData,
)
from ..layout import (
    LATEST,
    TAR_ZSTD_SUFFIX,
    PackageMeta,
    Record,
    checked,
    dir_name,
    expectation,
    localname_clash,
    meta_key,
    record_key,
    version_key,
)
from ..lifecycle import Liveness, VersionState, abandoned, holder_of, observe, written_at
from ..names import check_package, is_valid_segment
from ..results import PullRequest, VerifyResult
from ..storage import ObjectInfo
from ..transfer import CONFLICT, Engine, Expected
from ..transfer.engine import ExpectedSource
from ..transfer.groups import task_group

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..localfs import LocalFS
    from ..sshsig import AllowedSigners
    from .signing import Signer

META_ATTEMPTS = 20
WAVE_PER_SLOT = 16  # tycho.json read ahead of the items, per slot of the request budget


class Busy(AlreadyExists):
    """Another push of the version is under way (alive, by its pending record)."""


class Contended(TransferError):
    """tycho.json kept changing under every attempt to update it."""


def resolve(request: PullRequest, meta: PackageMeta | None) -> str:
    """The version a request names: its own, or tycho.json's latest."""
    package = request.package
    version = request.version if request.version not in (None, LATEST) \
        else meta.latest if meta is not None else None
    if version is None:
        raise NothingToPull(f"package {package!r} has no latest version; promote one "
                            "or pass --version")
    if not is_valid_segment(version):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json names an invalid latest "
                               f"version {version!r}")
    return version


def check_localname(package: str, localname: str, reserved: frozenset[str],
                    hint: str = "") -> None:
    """A localname that decides where a pull writes must not pass for a sidecar, a
    proof or one of tychoreg's own files (``hint``: what the caller can do instead)."""
    problem = localname_clash(localname, reserved)
    if problem:
        raise UnsafeRemoteData(f"refusing package {package!r}: its tycho.json names the "
                               f"local file {localname!r}, and {problem}{hint}")


def tree_name(package: str, localname: str, hint: str = "") -> str:
    """The directory a directory package's ``NAME.tar.zst`` localname extracts to."""
    name = dir_name(localname)
    if name is None:
        raise UnsafeRemoteData(f"package {package!r}: its localname {localname!r} is not "
                               f"NAME{TAR_ZSTD_SUFFIX}, so it names no directory to "
                               f"extract to{hint}")
    return name


class Catalog:
    """tycho.json, records, listings and downloads of one registry, by the rules of the
    format; it decides nothing about what an operation does with them."""

    def __init__(self, engine: Engine, liveness: Liveness, *,
                 missing_root_ok: bool = False, clock: Callable[[], float] = time.time
                 ) -> None:
        self.engine = engine
        self.liveness = liveness
        self.clock = clock  # the registry's one wall clock (seconds since the epoch)
        # The default local registry is simply empty before its first push; any other
        # registry that does not exist is a typo, and says so (exit 2).
        self.missing_root_ok = missing_root_ok
        self._root_seen = False

    async def require_root(self) -> None:
        """Before reporting that something is missing, make sure the registry itself
        exists: ``exists || push`` must not create a typo'd registry."""
        if self.missing_root_ok or self._root_seen:
            return
        if not await self.engine.root_exists():
            raise MissingRegistry(f"registry {self.engine.store.location} does not exist")
        self._root_seen = True

    # -- tycho.json ---------------------------------------------------------------------

    async def read_meta(self, package: str) -> tuple[PackageMeta, str]:
        try:
            data, etag = await self.engine.get_bytes(meta_key(package))
        except NotFound:
            await self.require_root()
            raise NotFound(f"package {package!r} does not exist (no tycho.json)") from None
        return PackageMeta.parse(package, data), etag

    async def read_meta_or_none(self, package: str) -> PackageMeta | None:
        try:
            return (await self.read_meta(package))[0]
        except NotFound:
            return None

    async def update_meta(
        self, package: str, change: Callable[[PackageMeta], None]
    ) -> PackageMeta:
        """Apply ``change`` to tycho.json with optimistic concurrency, keeping foreign keys."""
        for attempt in range(META_ATTEMPTS):
            meta, etag = await self.read_meta(package)
            change(meta)
            try:
                await self.engine.put_bytes(meta_key(package), meta.dump(), if_match=etag)
                return meta
            except (PreconditionFailed, NotFound) as exc:
                await self.engine.backoff(attempt, exc, CONFLICT)
        raise Contended(f"package {package!r}: tycho.json kept changing under "
                        f"{META_ATTEMPTS} attempts to update it; try again")

    async def create(self, key: str, data: bytes) -> str | None:
        """Create an object that must not exist yet; its ETag, or None when it exists.
        Looks before it leaps (HEAD, then If-None-Match), so that the single-client case
        is right even on stores that ignore conditional writes."""
        if await self.engine.head(key) is not None:
            return None
        try:
            return await self.engine.put_bytes(key, data, if_none_match=True)
        except PreconditionFailed:
            return None

    # -- a version ----------------------------------------------------------------------

    async def look(self, package: str, version: str
                   ) -> tuple[ObjectInfo | None, tuple[bytes, str] | None]:
        """The version's object (HEAD) and its record object (bytes, ETag), asked at
        once: one round trip."""
        pkg: list[ObjectInfo | None] = [None]
        record: list[tuple[bytes, str] | None] = [None]

        async def head() -> None:
            pkg[0] = await self.engine.head(version_key(package, version))

        async def read() -> None:
            with contextlib.suppress(NotFound):
                record[0] = await self.engine.get_bytes(record_key(package, version))

        async with task_group() as tg:
            tg.start_soon(head)
            tg.start_soon(read)
        return pkg[0], record[0]

    async def lookup(self, package: str, version: str
                     ) -> tuple[ObjectInfo | None, Record | None, str | None]:
        """``look``, the record parsed: the object, the record object and its ETag."""
        pkg, found = await self.look(package, version)
        if found is None:
            return pkg, None, None
        return pkg, Record.load(package, version, found[0]), found[1]

    async def state(self, package: str, version: str, meta: PackageMeta | None = None
                    ) -> tuple[VersionState, ObjectInfo | None]:
        """What the version is (``lifecycle.observe``; a pending record's push is not
        probed: it reads as alive) and its object. Beside no object, an unreadable
        record object reads as none: the callers answer by the object's absence."""
        if meta is None:  # tycho.json too, asked beside the object and its record
            pkg, found, meta = await self._look_all(package, version)
        else:
            pkg, found = await self.look(package, version)
        if pkg is None:
            await self.require_root()
        record = None
        if found is not None:
            try:
                record = Record.load(package, version, found[0])
            except UnsafeRemoteData:
                if pkg is not None:
                    raise
        copy = meta.records.get(version) if meta is not None else None
        return _observed(pkg, record, copy), pkg

    async def _look_all(self, package: str, version: str) -> tuple[
            ObjectInfo | None, tuple[bytes, str] | None, PackageMeta | None]:
        looked: list[tuple[ObjectInfo | None, tuple[bytes, str] | None]] = []
        metas: list[PackageMeta | None] = []

        async def look() -> None:
            looked.append(await self.look(package, version))

        async def meta() -> None:
            metas.append(await self.read_meta_or_none(package))

        async with task_group() as tg:
            tg.start_soon(look)
            tg.start_soon(meta)
        return (*looked[0], metas[0])

    async def raw_record(self, package: str, version: str, meta: PackageMeta | None,
                         *, authoritative: bool = False) -> Record | None:
        """The version's record: the copy in tycho.json (no request), else the record
        object, else None (a version pushed by tycho-station).

        A package whose tycho.json has no section of ours was never pushed to by tychoreg
        (a push marks it before it uploads), so a pull does not look for a record object
        there (one request a package saved); ``authoritative`` lookups (verify) always do."""
        copy = meta.records.get(version) if meta is not None else None
        if copy is not None:
            return copy
        if meta is not None and not meta.marked and not authoritative:
            return None
        try:
            data, _ = await self.engine.get_bytes(record_key(package, version))
        except NotFound:
            return None
        return Record.load(package, version, data)

    async def record(self, package: str, version: str, meta: PackageMeta | None, *,
                     authoritative: bool = False) -> Expected | None:
        """What the pushed bytes were, by the record (None: no record). A record of a push
        or deletion cut short raises IncompleteVersion: it is never trusted."""
        record = await self.raw_record(package, version, meta, authoritative=authoritative)
        return None if record is None else record.expected(package, version)

    async def alive(self, package: str, version: str, record: Record | None,
                    etag: str | None) -> bool:
        """Whether ``record`` (read with ``etag``; None when that ETag is not known) is
        the pending record of a push that is still alive."""
        return record is not None and record.pending and not await self.abandoned(
            package, version, record, etag)

    async def observe(self, package: str, version: str, pkg: ObjectInfo | None,
                      record: Record | None, etag: str | None,
                      copy: Record | None = None) -> VersionState:
        """The version's state from what was looked up, a pending record's push probed
        (``abandoned``) to tell a live push from a dead one."""
        alive = None
        if record is not None and record.pending:
            alive = not await self.abandoned(package, version, record, etag)
        return _observed(pkg, record, copy, alive)

    async def abandoned(self, package: str, version: str, record: Record,
                        etag: str | None) -> bool:
        """Whether a pending record (read with ``etag``) belongs to a push that is gone:
        its process on this machine no longer exists, or it has not been renewed for
        ``liveness.bound`` seconds by the store's clock (Date against Last-Modified)."""
        alive = processes.alive(holder_of(record.fields))
        if alive is False or not record.pending:
            return abandoned(record.fields, now=0.0, renewed=None, holder_alive=alive,
                             liveness=self.liveness)
        info = await self.engine.head(record_key(package, version))
        if info is None or (etag is not None and info.etag != etag):
            return False  # renewed or replaced since it was read: someone holds it
        now_, renewed = info.server_time, info.modified
        if now_ is None or renewed is None:  # a store that tells no time: the record's
            now_, renewed = self.clock(), written_at(record.fields)  # own stamp, our clock
        return abandoned(record.fields, now=now_, renewed=renewed, holder_alive=alive,
                         liveness=self.liveness)

    # -- listings and lost copies -------------------------------------------------------

    async def pushed(self, package: str) -> list[retention.Pushed]:
        """Every version of a package as the listing shows it (time of push, size)."""
        return list((await self.listing(package))[0].values())

    async def listing(self, package: str) -> tuple[dict[str, retention.Pushed], set[str]]:
        """One listing of the package's keys: its versions' objects (``.pkg``, as
        tycho-station lists them) and the versions that have a record object."""
        pushed, recorded, _ = await self.scan(package)
        return pushed, recorded

    async def scan(self, package: str
                   ) -> tuple[dict[str, retention.Pushed], set[str], set[str]]:
        """``listing``, and the versions that have a signature file (``.sig``)."""
        head = f"{package}/tycho_"
        pushed: dict[str, retention.Pushed] = {}
        recorded: set[str] = set()
        signed: set[str] = set()
        for info in await self.engine.list_keys(head):
            name = info.key[len(head):]
            if name.endswith(".pkg") and is_valid_segment(version := name[:-len(".pkg")]):
                pushed[version] = retention.Pushed(version, info.modified or 0.0, info.size)
            elif name.endswith(".meta.json") and \
                    is_valid_segment(version := name[:-len(".meta.json")]):
                recorded.add(version)
            elif name.endswith(".sig") and is_valid_segment(version := name[:-len(".sig")]):
                signed.add(version)
        return pushed, recorded, signed

    async def lost_copies(
        self, package: str, meta: PackageMeta, *exclude: str,
        listing: tuple[dict[str, retention.Pushed], set[str]] | None = None,
    ) -> dict[str, Record]:
        """Complete records of versions whose object is there but whose copy is missing
        from ``meta`` (one listing, unless given; a record read per such version, rarely
        any)."""
        if not meta.marked:
            return {}
        pushed, recorded = listing or await self.listing(package)
        wanted = sorted(v for v in recorded & set(pushed)
                        if v not in meta.records and v not in exclude)
        found: dict[str, Record] = {}

        async def read(version: str) -> None:
            with contextlib.suppress(TychoError):
                data, _ = await self.engine.get_bytes(record_key(package, version))
                record = Record.load(package, version, data)
                record.expected(package, version)  # complete and well formed only
                found[version] = record

        async with task_group() as tg:
            for version in wanted:
                tg.start_soon(read, version)
        return found

    async def restore_copies(self, package: str, records: dict[str, Record]) -> None:
        """Copy complete records into tycho.json where it has none for their version."""
        def restore(meta: PackageMeta) -> None:
            for version, record in records.items():
                meta.records.setdefault(version, record)

        if records:
            await self.update_meta(package, restore)

    # -- the bytes ----------------------------------------------------------------------

    async def download(
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

    async def stream(self, package: str, version: str, record: ExpectedSource | None,
                     sink: Callable[[bytes], None]) -> ObjectInfo:
        try:
            info, _ = await self.engine.download_stream(
                version_key(package, version), sink, label=f"{package} {version}",
                expected=expects(record))
        except NotFound:
            raise NotFound(f"{package} {version} does not exist") from None
        return info

    async def check(self, fs: LocalFS, package: str, version: str, record: Expected | None,
                    repaired: str | None = None) -> VerifyResult:
        """Download a version into a scratch directory to check it (by the record, else
        as layout's policy says), and delete it."""
        used: list[Expected] = []

        async def expected(info: ObjectInfo) -> Expected:
            used.append(expectation(record, info))  # asked again if another answer came
            return used[-1]

        scratch = await anyio.to_thread.run_sync(fs.make_scratch_dir, "tychoreg-verify-")
        try:
            info, sha256 = await self.download(package, version, scratch / "o",
                                               known=None, expected=expected)
        finally:
            await anyio.to_thread.run_sync(fs.drop_scratch_dir, scratch)
        return VerifyResult(package, version, info.size, sha256, checked(used[-1]), repaired)


def _observed(pkg: ObjectInfo | None, record: Record | None, copy: Record | None,
              alive: bool | None = None) -> VersionState:
    """``lifecycle.observe`` of the typed records (it reads their JSON, as stored)."""
    return observe(pkg, None if record is None else record.fields,
                   None if copy is None else copy.to_json(), alive=alive)


def expects(record: ExpectedSource | None) -> ExpectedSource:
    """What a pull checks: the record itself when there is one (its size known before
    the first request, so a small object is asked with a plain GET), or a lock file's
    own check of the first answer; else layout's policy, asked on its headers."""
    if record is not None:
        return record

    async def expected(info: ObjectInfo) -> Expected:
        return expectation(None, info)

    return expected


class Context:
    """What every operation shares: the engine that moves the bytes, the catalog, the
    local file system, tychoreg's own file names (no localname may name them), and the
    registry's identity as a lock file names it (``s3://BUCKET/PREFIX`` or the path),
    the key pushes sign with (``signer``, None: unsigned) and the policy pulls apply
    (``signers``, the allowed signers; None: none, and no ``.sig`` is ever read).
    ``clock`` is the catalog's: the one wall clock of the registry's decisions (a push
    gone, a version's age), injected so tests can drive it. (A plain class: a dataclass
    costs about a millisecond at import, on every command's start-up.)"""

    __slots__ = ("catalog", "engine", "fs", "identity", "reserved", "signer", "signers")

    def __init__(self, engine: Engine, catalog: Catalog, fs: LocalFS,
                 reserved: frozenset[str], identity: str, *, signer: Signer | None = None,
                 signers: AllowedSigners | None = None) -> None:
        self.engine = engine
        self.catalog = catalog
        self.fs = fs
        self.reserved = reserved
        self.identity = identity
        self.signer = signer
        self.signers = signers

    @property
    def clock(self) -> Callable[[], float]:
        return self.catalog.clock


class MetaWave:
    """The tycho.json of every package of a pull-list, each read once (however many
    items name it), by readers that run ahead of the items as fast as the budget lets
    them: one wave for a list of up to ``ahead`` packages, a wave sliding that far ahead
    of the items beyond, so memory stays flat for any length. A package's slot ahead is
    given back when its first item takes its tycho.json (items are taken in list order,
    packages are read in order of first appearance, so the oldest package read is
    always one an item is about to take: no deadlock), and the parsed tycho.json is
    dropped once its last item has ended. A failed read is each item's failure, as if
    the item had read tycho.json itself."""

    def __init__(self, catalog: Catalog, packages: Sequence[str], ahead: int) -> None:
        self._catalog = catalog
        self._order = iter(dict.fromkeys(packages))
        self._uses: dict[str, int] = {}
        for package in packages:
            self._uses[package] = self._uses.get(package, 0) + 1
        self._ahead = anyio.Semaphore(max(1, ahead))
        self._read: dict[str, anyio.Event] = {}
        self._found: dict[str, PackageMeta | TychoError] = {}
        self._taken: set[str] = set()

    def start(self, tg: TaskGroup, readers: int) -> None:
        for _ in range(min(len(self._uses), max(1, readers))):
            tg.start_soon(self._reader)

    async def _reader(self) -> None:
        for package in self._order:
            await self._ahead.acquire()
            try:
                check_package(package)
                found: PackageMeta | TychoError = \
                    (await self._catalog.read_meta(package))[0]
            except TychoError as exc:
                found = exc
            self._found[package] = found
            self._read.setdefault(package, anyio.Event()).set()

    async def meta(self, package: str) -> PackageMeta:
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
