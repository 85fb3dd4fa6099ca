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
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from . import __version__
from .errors import (
    AlreadyExists,
    MissingRegistry,
    NotFound,
    NothingToPull,
    PartialFailure,
    PreconditionFailed,
    StoreError,
    TransferError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
from .layout import (
    LATEST,
    PENDING,
    RECORDS_KEY,
    cut_short,
    dump,
    etag_sidecar,
    is_current,
    is_pending,
    load_record,
    mark,
    meta_key,
    now,
    parse_meta,
    parse_record,
    pending_age,
    record_key,
    records_in,
    version_key,
)
from .localfs import LocalFS, Target
from .names import (
    check_localname_arg,
    check_package,
    check_remote_localname,
    check_version,
    is_valid_segment,
    sort_versions,
)
from .storage import ObjectInfo
from .transfer import Engine, Expected
from .transfer.engine import UploadResult
from .transfer.groups import task_group

META_ATTEMPTS = 20
# A pending record (a push under way) is taken over by a later push, or cleared by
# verify --repair, once it is older than QUIET_SECONDS with no multipart upload of the
# version in flight, or older than STALE_SECONDS whatever is in flight.
QUIET_SECONDS = 60
STALE_SECONDS = 600
CLEANUP_SECONDS = 15  # the longest an interrupted push spends removing its pending record


@dataclass(frozen=True)
class PackageSummary:
    name: str
    latest: str | None
    localname: str | None
    problem: str | None = None  # why tycho.json could not be used, if it could not


@dataclass(frozen=True)
class VersionInfo:
    version: str
    size: int


@dataclass(frozen=True)
class PushResult:
    package: str
    version: str
    size: int
    sha256: str
    initialized: bool
    promoted: bool
    created_registry: str | None = None  # the new local registry this push created


@dataclass(frozen=True)
class PullResult:
    package: str
    version: str
    path: Path
    size: int
    skipped: bool


@dataclass(frozen=True)
class VerifyResult:
    package: str
    version: str
    size: int
    sha256: str
    checked: str  # what the bytes were checked against
    repaired: str | None = None  # what --repair did, if anything


@dataclass(frozen=True)
class ProbeResult:
    if_none_match: bool
    if_match: bool


@dataclass(frozen=True)
class PullRequest:
    package: str
    version: str | None = None  # None: latest

    @classmethod
    def parse(cls, item: str) -> PullRequest:
        """``PKG`` or ``PKG==VERSION`` (``PKG==latest``: its latest, as tycho-station)."""
        package, sep, version = item.strip().partition("==")
        check_package(package)
        if sep and version != LATEST:
            check_version(version)
            return cls(package, version)
        return cls(package)

    def __str__(self) -> str:
        return f"{self.package}=={self.version}" if self.version else self.package


def _checked(expected: Expected | None, info: ObjectInfo) -> str:
    """What verify checked the bytes against: the record, else size and MD5 (or size)."""
    return "sha256" if expected else "size and md5" if info.md5 else "size"


class Registry:
    def __init__(self, engine: Engine, outdir: Path, *, missing_root_ok: bool = False,
                 fs: LocalFS | None = None) -> None:
        self.engine = engine
        self.outdir = outdir
        self.fs = fs or engine.fs
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
                await self.engine.backoff(attempt, exc, base=0.01, cap=0.5)
        raise TransferError(f"package {package!r}: tycho.json kept changing under "
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
        check_localname_arg(filename)
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

    async def _state(self, package: str, version: str) -> str:
        """"missing", "pending" (a push cut short) or "ok"."""
        pkg, record = await self._look(package, version)
        if pkg is None:
            await self._require_root()
            return "missing"
        if record is not None and is_pending(load_record(package, version, record[0])):
            return "pending"
        return "ok"

    async def exists(self, package: str, version: str) -> bool:
        check_package(package)
        check_version(version)
        return await self._state(package, version) == "ok"

    async def push(self, package: str, version: str, path: Path, *, promote: bool) -> PushResult:
        """Publish a version in steps that a crash can interrupt anywhere without leaving
        anything a pull would trust: a pending record (created only if absent, so a
        second pusher is refused right there), the object (If-None-Match), then the full
        record and tycho.json, shielded from signals once the object is published."""
        check_package(package)
        check_version(version)
        if version == LATEST:
            raise UsageError(f"{LATEST!r} means the latest version to tycho-station; it "
                             "cannot name a version")
        if not await anyio.Path(path).is_file():
            raise UsageError(f"{path} is not a readable file")
        check_localname_arg(path.name)
        store = self.engine.store
        created_registry = None
        if store.creates_root and not await self.engine.root_exists():
            created_registry = store.location
        pending_etag = await self._reserve(package, version, path.name)
        published: list[UploadResult] = []
        initialized: list[bool] = []

        async def record(result: UploadResult) -> None:
            published.append(result)
            try:
                initialized.append(await self._publish(package, version, result, path.name,
                                                       promote=promote))
            except TychoError as exc:
                raise TransferError(
                    f"{package} {version} was uploaded, but recording it failed ({exc}); "
                    f"run 'tychoreg verify {package} --version {version} --repair'") from exc

        try:
            meta = await self._read_meta_or_none(package)
            if meta is not None and RECORDS_KEY not in meta:
                # Mark the package as one tychoreg pushes to: a pull of any of its versions
                # without a copy of the record then looks for the record object.
                await self._update_meta(package, mark)
            await self.engine.upload_file(path, version_key(package, version),
                                          label=f"{package} {version}", then=record)
        except BaseException as exc:
            if not published:  # nothing was published: the version is free again
                with anyio.CancelScope(shield=True):
                    await self._release(package, version, pending_etag)
            if isinstance(exc, PreconditionFailed):
                raise AlreadyExists(f"{package} {version} already exists (pushed by another "
                                    "client meanwhile)") from None
            raise
        result = published[0]
        return PushResult(package, version, result.size, result.sha256, initialized[0],
                          promote, created_registry)

    async def _reserve(self, package: str, version: str, localname: str) -> str:
        """Create the version's pending record; return its ETag. Refused while the
        version exists or another push of it is alive; a dead push's record is taken
        over (see QUIET_SECONDS)."""
        rkey = record_key(package, version)
        pkg, old = await self._look(package, version)
        if pkg is not None:
            if old is not None and is_pending(load_record(package, version, old[0])):
                raise AlreadyExists(
                    f"{package} {version} exists, but the push that uploaded it was cut "
                    f"short; run 'tychoreg verify {package} --version {version} --repair'")
            raise AlreadyExists(f"{package} {version} already exists; published versions "
                                "are immutable, push a new version")
        push_id = uuid.uuid4().hex
        pending = dump({"state": PENDING, "tool": f"tychoreg {__version__}",
                         "started_at": now(), "localname": localname, "push_id": push_id})
        busy = AlreadyExists(f"{package} {version} is being pushed by another client right "
                             "now; published versions are immutable, push a new version")
        conditions: dict[str, Any] = {"if_none_match": True} if old is None else \
            {"if_match": old[1]}
        if old is not None and not await self._abandoned(
                package, version, load_record(package, version, old[0])):
            raise busy
        try:
            return await self.engine.put_bytes(rkey, pending, **conditions)
        except PreconditionFailed:
            # A retried write whose first answer was lost finds its own record: ours if
            # it carries our push id.
            with contextlib.suppress(NotFound, UnsafeRemoteData):
                data, etag = await self.engine.get_bytes(rkey)
                if load_record(package, version, data).get("push_id") == push_id:
                    return etag
            raise busy from None

    async def _abandoned(self, package: str, version: str, record: dict[str, Any]) -> bool:
        """Whether a record without its object belongs to a push that died."""
        elapsed = pending_age(record)
        if elapsed > STALE_SECONDS:
            return True
        if elapsed < QUIET_SECONDS:
            return False
        return not await self.engine.list_uploads(version_key(package, version))

    async def _release(self, package: str, version: str, etag: str) -> None:
        """Remove our pending record after a push that published nothing, unless another
        push took it over meanwhile, or the object is there after all (an answer lost to
        a signal or a timeout): then the record stays pending, so no pull trusts the
        object until ``verify --repair`` records it. Bounded: it runs while a signal
        waits."""
        rkey = record_key(package, version)
        with anyio.move_on_after(CLEANUP_SECONDS):
            try:
                pkg, record = await self._look(package, version)
                if pkg is None and record is not None and record[1] == etag:
                    await self.engine.delete(rkey)
            except TychoError:
                return  # a pending record left behind is taken over later, never trusted

    async def _publish(self, package: str, version: str, result: UploadResult,
                       localname: str, *, promote: bool,
                       record: dict[str, Any] | None = None) -> bool:
        """Write the full record (unless ``record`` is the one already written) and its
        copy in tycho.json (creating tycho.json for a new package); True when tycho.json
        was created."""
        if record is None:
            record = {"sha256": result.sha256, "size": result.size, "pushed_at": now(),
                      "tool": f"tychoreg {__version__}", "localname": localname}
            await self.engine.put_bytes(record_key(package, version), dump(record))

        def publish(meta: dict[str, Any]) -> None:
            records_in(meta, create=True)[version] = record
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

    async def promote(self, package: str, version: str) -> None:
        check_package(package)
        check_version(version)
        state = await self._state(package, version)
        if state == "missing":
            raise NotFound(f"{package} {version} does not exist; nothing to promote")
        if state == "pending":
            raise cut_short(package, version)

        def set_latest(meta: dict[str, Any]) -> None:
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
                summaries[name] = PackageSummary(name, None, None, "no tycho.json")
                return
            except UnsafeRemoteData as exc:
                summaries[name] = PackageSummary(name, None, None, exc.message)
                return
            summaries[name] = PackageSummary(name, meta.get("latest"), meta.get("localname"))

        async with task_group() as tg:
            for name in names:
                tg.start_soon(summarize, name)
        return [summaries[name] for name in sorted(names)]

    async def list_versions(self, package: str) -> list[VersionInfo]:
        check_package(package)
        head = f"{package}/tycho_"
        found: dict[str, int] = {}
        for info in await self.engine.list_keys(head):
            if info.key.endswith(".pkg"):
                version = info.key[len(head):-len(".pkg")]
                if is_valid_segment(version):
                    found[version] = info.size
        if not found:
            await self.read_meta(package)  # NotFound for an unknown package
        return [VersionInfo(v, found[v]) for v in sort_versions(list(found))]

    async def _record(self, package: str, version: str, meta: dict[str, Any] | None, *,
                      authoritative: bool = False) -> Expected | None:
        """What the pushed bytes were: the copy of the record in tycho.json (no request),
        else the record object, else None (a version pushed by tycho-station). A pending
        record (a push cut short) raises IncompleteVersion: it is never trusted.

        A package whose tycho.json has no section of ours was never pushed to by tychoreg
        (a push marks it before it uploads), so a pull does not look for a record object
        there (one request a package saved); ``authoritative`` lookups (verify) always do."""
        copy = records_in(meta).get(version) if meta is not None else None
        if copy is not None:
            return parse_record(package, version, copy)
        if meta is not None and RECORDS_KEY not in meta and not authoritative:
            return None
        try:
            data, _ = await self.engine.get_bytes(record_key(package, version))
        except NotFound:
            return None
        return parse_record(package, version, load_record(package, version, data))

    async def _version(self, request: PullRequest) -> tuple[str, dict[str, Any]]:
        """The version a request names (its latest when it names none) and tycho.json."""
        package = check_package(request.package)
        meta, _ = await self.read_meta(package)
        return self._resolve(request, meta), meta

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
        expected = await self._record(package, version, meta, authoritative=True)
        info, sha256 = await self._scratch_download(package, version, expected)
        return VerifyResult(package, version, info.size, sha256, _checked(expected, info))

    async def _scratch_download(self, package: str, version: str,
                                expected: Expected | None) -> tuple[ObjectInfo, str]:
        scratch = await anyio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix="tychoreg-verify-"))
        try:
            return await self._download(package, version, Path(scratch) / "o", known=None,
                                        expected=expected)
        finally:
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)

    async def _repair(self, package: str, version: str,
                      meta: dict[str, Any] | None) -> VerifyResult:
        rkey = record_key(package, version)
        pkg, found = await self._look(package, version)  # one round trip for both
        record = load_record(package, version, found[0]) if found is not None else None
        if record is None or not is_pending(record):
            copy = records_in(meta).get(version) if meta is not None else None
            source = copy if copy is not None else record  # what verify would read
            expected = parse_record(package, version, source) if source is not None else None
            info, sha256 = await self._scratch_download(package, version, expected)
            repaired = None
            if record is not None and copy is None:
                # a push cut short after its record: copy it where pulls look (and create
                # tycho.json for a new package, named by the record's localname)
                result = UploadResult(info.size, sha256, info.etag, 0)
                await self._publish(package, version, result,
                                    check_remote_localname(package, record.get("localname")),
                                    promote=False, record=record)
                repaired = "restored the copy of its record in tycho.json"
            return VerifyResult(package, version, info.size, sha256,
                                _checked(expected, info), repaired)
        if not await self._abandoned(package, version, record):
            raise AlreadyExists(f"{package} {version} is being pushed right now (started "
                                f"{record.get('started_at')}); try again later")
        if pkg is None:
            await self.engine.delete(rkey)
            raise NotFound(f"{package} {version} does not exist: cleared the record of a "
                           "push that was cut short before its upload finished")
        info, sha256 = await self._scratch_download(package, version, None)
        localname = record.get("localname")
        result = UploadResult(info.size, sha256, info.etag, 0)
        await self._publish(package, version, result,
                            check_remote_localname(package, localname), promote=False)
        return VerifyResult(package, version, info.size, sha256, _checked(None, info),
                            "completed a push that was cut short after its upload "
                            "(recorded the SHA-256 of the stored bytes)")

    async def _download(
        self, package: str, version: str, dest: Path, *, known: ObjectInfo | None,
        expected: Expected | Callable[[], Awaitable[Expected | None]] | None,
        finish: Callable[[ObjectInfo], None] | None = None,
    ) -> tuple[ObjectInfo, str]:
        try:
            return await self.engine.download(version_key(package, version), dest,
                                              known=known, expected=expected,
                                              label=f"{package} {version}", finish=finish)
        except NotFound:
            raise NotFound(f"{package} {version} does not exist") from None

    async def pull(
        self, request: PullRequest, *, force: bool = False, outfile: Path | None = None,
        claim: Callable[[Path], None] | None = None,
    ) -> PullResult:
        """Download one version; ``claim`` lets a batch refuse two items with one target.

        Only where a local copy with its sidecar may already be current is the object
        asked for with a HEAD first; otherwise its first GET tells size and ETag. A FIFO
        or character device is written in place, in order; anything else that is not a
        regular file is refused before a byte moves."""
        package = request.package
        if outfile is not None and str(outfile) == "-":
            raise UsageError("--outfile - (standard output) is not supported yet; name a file")
        version, meta = await self._version(request)
        if outfile is None:
            named = self.outdir / check_remote_localname(package, meta.get("localname"))
        # A few stats and mkdirs: faster on the event loop than through a worker thread
        # (measured: a thread hop per file cost more CPU in GIL hand-offs than it saved).
        target, created, has_sidecar = self._prepare(
            named if outfile is None else outfile,
            self.outdir if outfile is None else None)
        try:
            if claim is not None:
                claim(target.real)
            return await self._pull_to(package, version, meta, target, force=force,
                                       has_sidecar=has_sidecar)
        except BaseException:
            self.fs.remove_empty_dirs(created)
            raise

    def _prepare(self, named: Path, within: Path | None) -> tuple[Target, list[Path], bool]:
        """Everything a pull looks at on disk before it moves a byte: what the
        destination is, the folders it needs (created, to be taken back on failure),
        whether a sidecar may make it current."""
        target = self.fs.target(named, within=within)
        created = self.fs.make_dirs(target.real.parent)
        return target, created, etag_sidecar(target.named).exists()

    async def _pull_to(self, package: str, version: str, meta: dict[str, Any],
                       target: Target, *, force: bool, has_sidecar: bool) -> PullResult:
        def expected() -> Awaitable[Expected | None]:
            return self._record(package, version, meta)

        if target.is_stream:
            fd = await anyio.to_thread.run_sync(self.fs.open_stream, target.real,
                                                abandon_on_cancel=True)
            try:
                info, _ = await self.engine.download_stream(
                    version_key(package, version), fd, label=f"{package} {version}",
                    expected=expected)
            except NotFound:
                raise NotFound(f"{package} {version} does not exist") from None
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
                    await self._record(package, version, meta)  # never skip to a pending one
                    return PullResult(package, version, target.named, known.size,
                                      skipped=True)
            # Drop the old sidecar first: a file whose sidecar is gone is never taken as
            # current, whatever happens to this process before the new one is written.
            await anyio.to_thread.run_sync(self.fs.unlink, sidecar)

        def write_sidecar(info: ObjectInfo) -> None:
            self.fs.write_in_place(sidecar, info.etag.encode())

        info, _ = await self._download(package, version, target.real, known=known,
                                       expected=expected, finish=write_sidecar)
        return PullResult(package, version, target.named, info.size, skipped=False)

    async def pull_many(
        self, requests: Sequence[PullRequest], *, force: bool = False
    ) -> list[PullResult]:
        """Pull every item concurrently (an item listed twice, once); report every failure
        together at the end."""
        requests = list(dict.fromkeys(requests))
        results: dict[int, PullResult] = {}
        failures: list[tuple[str, TychoError]] = []
        claimed: dict[Path, str] = {}
        created = await anyio.to_thread.run_sync(self.fs.make_dirs, self.outdir)

        async def one(index: int, request: PullRequest) -> None:
            def claim(dest: Path) -> None:
                key = dest.absolute()
                if key in claimed:
                    raise UsageError(f"{request} and {claimed[key]} both write {dest}")
                claimed[key] = str(request)

            try:
                results[index] = await self.pull(request, force=force, claim=claim)
            except TychoError as exc:
                failures.append((str(request), exc))

        # A fixed pool of workers, not a task per item: memory stays flat in the length of
        # the list, and twice the request budget keeps every slot busy (an item waits on
        # tycho.json before its object).
        queue = iter(enumerate(requests))

        async def worker() -> None:
            for index, request in queue:
                await one(index, request)

        try:
            async with task_group() as tg:
                for _ in range(min(len(requests), 2 * self.engine.settings.concurrency)):
                    tg.start_soon(worker)
        finally:
            if not results:
                self.fs.remove_empty_dirs(created)
        if failures:
            done = len(results)
            raise PartialFailure(
                f"{len(failures)} of {len(requests)} packages failed ({done} pulled)", failures,
                [results[i] for i in sorted(results)])
        return [results[i] for i in range(len(requests))]

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
