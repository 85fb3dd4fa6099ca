"""Publishing, and the one owner of a version's way from pending to recorded: init,
push, promote; a push's steps (reserve: a pending record; the hold that renews it while
the bytes upload; the object, If-None-Match; the full record and its copy in tycho.json,
shielded from signals; the pending record released when nothing was published); and
what a crash left of a push: ``complete`` (the object is there: its bytes measured and
recorded) and ``clear`` (it is not: the pending record removed), which prune calls
directly and ``repair`` (for ``verify --repair``) by the step the state names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio

from .. import __version__, processes
from ..errors import (
    AlreadyExists,
    IncompleteVersion,
    NotFound,
    PreconditionFailed,
    TransferError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
from ..layout import (
    FILE,
    LATEST,
    TAR_ZSTD,
    TAR_ZSTD_SUFFIX,
    PackageMeta,
    Record,
    being_deleted,
    cut_short,
    dir_name,
    localname_clash,
    meta_key,
    now,
    record_key,
    version_key,
)
from ..lifecycle import Step, VersionState, next_step
from ..names import check_localname_arg, check_package, check_remote_localname, check_version
from ..results import PushResult, VerifyResult
from ..transfer import Engine
from ..transfer.engine import UploadResult
from ..transfer.groups import task_group
from .catalog import Busy, Contended, Context
from .skips import Skips, Source, read_stream, skip, source_of

if TYPE_CHECKING:
    from ..archive.pack import Packer
    from .signing import Signer

# A pending record (a push under way) is taken over by a later push, or cleared by
# verify --repair or prune, only once lifecycle.abandoned says its push is gone.
CLEANUP_SECONDS = 15  # the longest an interrupted push spends removing its pending record
SHIELD_SECONDS = 120  # the longest a signal waits for a deletion's steps to finish


async def _own_record(get_bytes: Callable[[str], Awaitable[tuple[bytes, str]]], rkey: str,
                      push_id: str) -> str | None:
    """The record's ETag if it is the pending record our push wrote, None if it is gone
    or another's; a failed read raises (it tells nothing)."""
    with contextlib.suppress(NotFound, UnsafeRemoteData):
        data, etag = await get_bytes(rkey)
        if Record.load("", "", data).push_id == push_id:
            return etag
    return None


class Hold:
    """A push's hold on its version: its pending record, renewed every ``interval``
    seconds (If-Match its own ETag) while the push runs, however slow its input, so no
    rival judges it abandoned; stopped before the full record replaces it. Renewals go to
    the store directly, outside the engine's budget, so parts saturating a slow link never
    delay them (the pool keeps connections beyond the budget). A renewal that fails for a
    moment is retried at the next beat (the bound allows several); one that finds another
    push's record lets the upload go on: If-None-Match on the object still decides who
    publishes."""

    def __init__(self, engine: Engine, key: str, body: Record, etag: str,
                 interval: float) -> None:
        self.engine = engine
        self.key = key
        self.body = body
        self.etag = etag
        self.interval = interval
        self.push_id = str(body.push_id)
        self._lock = anyio.Lock()
        self._done = False

    async def keep(self) -> None:
        while not self._done:
            await anyio.sleep(self.interval)
            async with self._lock:
                if not self._done:
                    await self._renew()

    async def _renew(self) -> None:
        self.body = self.body.renewed(now())
        store = self.engine.store
        try:
            # bounded, so that a store that stops answering never holds up the push's end
            # (a renewal that landed unanswered is recognised as ours by the next one)
            with anyio.move_on_after(max(self.interval, 1.0)):
                try:
                    self.etag = await store.put_bytes(self.key, self.body.dump(),
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


def check_new_localname(ctx: Context, name: str) -> None:
    """A new package's localname: a plain file name that will not pass for a
    sidecar, a proof or tychoreg's own files (nor will the directory a directory
    package extracts to)."""
    check_localname_arg(name)
    for what in {name, dir_name(name) or name}:
        problem = localname_clash(what, ctx.reserved)
        if problem:
            raise UsageError(f"invalid file name {name!r}: {problem}; pass --localname "
                             "NAME to name the package's file")


async def init(ctx: Context, package: str, filename: str) -> None:
    check_package(package)
    check_new_localname(ctx, filename)
    if await ctx.catalog.create(meta_key(package), PackageMeta.new(filename).dump()) is None:
        raise AlreadyExists(f"package {package!r} already exists")


async def promote(ctx: Context, package: str, version: str) -> None:
    check_package(package)
    check_version(version)
    state, pkg = await ctx.catalog.state(package, version)
    if pkg is None:
        raise NotFound(f"{package} {version} does not exist; nothing to promote")
    if state in (VersionState.RECORDING, VersionState.UPLOADED):
        raise cut_short(package, version)
    if state is VersionState.DELETING:
        raise being_deleted(package, version)

    def set_latest(meta: PackageMeta) -> None:
        copy = meta.records.get(version)
        if copy is not None and copy.deleting:  # in the same write
            raise being_deleted(package, version)
        meta.latest = version

    await ctx.catalog.update_meta(package, set_latest)


async def record_version(ctx: Context, package: str, version: str, result: UploadResult,
                         localname: str, *, promote: bool, record: Record | None = None,
                         extra: Mapping[str, object] | None = None,
                         lost: Mapping[str, Record] | None = None,
                         signer: Signer | None = None) -> bool:
    """Write the full record (unless ``record`` is the one already written) and its
    copy in tycho.json (creating tycho.json for a new package); True when tycho.json
    was created. ``lost``: complete records of other versions whose copy is missing
    (left so by a push that lost every race for tycho.json), copied in the same write.
    ``signer``: the version's ``.sig`` is written before the full record, so a version
    is never complete without the signature its push was asked for (a crash between
    the two leaves it pending)."""
    lost = lost or {}
    written = record
    if written is None:
        written = Record.complete(result.sha256, result.size, pushed_at=now(),
                                  tool=f"tychoreg {__version__}", localname=localname,
                                  extra=extra)
        if signer is not None:
            from .signing import sign_record

            await sign_record(ctx, signer, package, version, localname, written)
        await ctx.engine.put_bytes(record_key(package, version), written.dump())

    def publish(meta: PackageMeta) -> None:
        meta.records[version] = written
        for other, copy in lost.items():
            meta.records.setdefault(other, copy)
        if promote:
            meta.latest = version

    try:
        await ctx.catalog.update_meta(package, publish)
        return False
    except NotFound:
        fresh = PackageMeta.new(localname)
        publish(fresh)
        if await ctx.catalog.create(meta_key(package), fresh.dump()) is not None:
            return True
    await ctx.catalog.update_meta(package, publish)
    return False


async def complete(ctx: Context, package: str, version: str, pending: Record
                   ) -> VerifyResult:
    """A push cut short after its upload: the stored bytes are measured (a checked
    download) and recorded, keeping the pushed format (not a directory's tree hash).
    With the context's signer it is signed before its record, as a push signs it;
    a version left unsigned that its push (or this repair) wanted signed is completed
    all the same, and the answer says so and why."""
    fmt = pending.format
    signer = ctx.signer
    if signer is not None:
        signer.key()  # a bad key or passphrase: refused before anything is written
    from .signing import signed_as_recorded

    result = await ctx.catalog.check(ctx.fs, package, version, None)
    localname = check_remote_localname(package, pending.localname)
    await record_version(ctx, package, version, UploadResult(result.size, result.sha256, "", 0),
                         localname, promote=False,
                         extra={} if fmt == FILE else {"format": fmt}, signer=signer)
    if signer is not None:
        note = f", signed by {signer.hint})"
    elif pending.asks_signature and not await signed_as_recorded(ctx, package, version,
                                                                 localname):
        note = (f"); its push asked for a signature: it is unsigned, run 'tychoreg sign "
                f"{package} {version} --sign-key PATH'")
    else:
        note = ")"
    return dataclasses.replace(result, repaired="completed a push that was cut short "
                               "after its upload (recorded the SHA-256 of the stored "
                               "bytes" + note)


async def clear(ctx: Context, package: str, version: str) -> NotFound:
    """A push cut short before its upload finished: its pending record removed; the
    answer is that the version does not exist."""
    await ctx.engine.delete(record_key(package, version))
    return NotFound(f"{package} {version} does not exist: cleared the record of a "
                    "push that was cut short before its upload finished")


async def repair(ctx: Context, package: str, version: str,
                 meta: PackageMeta | None) -> VerifyResult:
    """Finish what a crash left of one version, for ``verify --repair``, by the step its
    state names: a push gone after its upload is
    completed, one gone before it cleared (NotFound), a live one refused; a complete
    version is verified, and the copy of its record restored in tycho.json if a push
    lost it. A version that is not pending (by its record object) is verified as it
    is: a copy that says pending, or a deletion's mark, is refused by its record."""
    pkg, record, etag = await ctx.catalog.lookup(package, version)  # one round trip
    if record is None or not record.pending:
        copy = meta.records.get(version) if meta is not None else None
        source = copy if copy is not None else record  # what verify would read
        expected = source.expected(package, version) if source is not None else None
        result = await ctx.catalog.check(ctx.fs, package, version, expected)
        if record is not None and copy is None:
            # a push cut short after its record: copy it where pulls look (and create
            # tycho.json for a new package, named by the record's localname)
            await record_version(ctx, package, version,
                                 UploadResult(result.size, result.sha256, "", 0),
                                 check_remote_localname(package, record.localname),
                                 promote=False, record=record)
            result = dataclasses.replace(
                result, repaired="restored the copy of its record in tycho.json")
        return result
    step = next_step(await ctx.catalog.observe(package, version, pkg, record, etag))
    if step is Step.WAIT:
        raise AlreadyExists(f"{package} {version} is being pushed right now (started "
                            f"{record.fields.get('started_at')}); try again later")
    if step is Step.CLEAR:
        raise await clear(ctx, package, version)
    return await complete(ctx, package, version, record)


def localname_for(ctx: Context, package: str, meta: PackageMeta | None, source: Source,
                  given: str | None) -> str:
    """The package's localname: tycho.json's for an existing package (``given`` must
    agree), else ``given``, else the file's name, or ``NAME.tar.zst`` for a directory
    (NAME: its resolved base name, so ``.`` works)."""
    current = meta.localname if meta is not None else None
    if current is not None:
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
    if current is None:
        check_new_localname(ctx, name)
    if source.tree is None and meta is not None and any(
            copy.format == TAR_ZSTD for copy in meta.records.values()):
        raise UsageError(f"package {package!r} holds directories (tar+zstd): push a "
                         "directory to it, or the file to a package of files")
    if source.tree is not None and dir_name(name) is None:
        raise UsageError(f"package {package!r} names its file {name!r}, not NAME"
                         f"{TAR_ZSTD_SUFFIX}: a directory can only be pushed to a package "
                         "of directories")
    return name


class Push:
    """One push, as one object whose steps are methods (as rclone's copy): ``run`` checks
    the request and reads tycho.json, ``_claim`` skips the push or reserves the version,
    ``_upload`` sends the bytes with the hold kept alive beside it, ``_record`` writes
    the full record and its copy, shielded, and ``_release`` frees the version when
    nothing was published. One instance serves one push."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.skips = Skips(ctx)
        self.package = self.version = self.name = ""
        self.fmt = FILE
        self.meta: PackageMeta | None = None
        self.packer: Packer | None = None
        self.published: list[UploadResult] = []
        self.initialized = False
        self.warnings: list[str] = []
        self.lost: dict[str, Record] = {}
        self.looked = anyio.Event()

    async def run(self, package: str, version: str, source: Path | BinaryIO, *,
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
        if self.ctx.signer is not None:
            self.ctx.signer.key()  # a bad key or passphrase: refused before any write
        source_ = await source_of(source)
        if level is not None and source_.tree is None:
            raise UsageError("--level applies to a directory (files and streams are "
                             "uploaded as they are)")
        if source_.tree is not None:
            from ..archive import pack  # loaded only for directories: pulls of files start faster

            self.packer = pack.Packer(source_.tree, level if level is not None
                                      else pack.DEFAULT_LEVEL)
        self.package, self.version = package, version
        try:  # not read_meta: a push may create the (local) registry itself
            data, _ = await self.ctx.engine.get_bytes(meta_key(package))
            self.meta = PackageMeta.parse(package, data)
        except NotFound:
            self.meta = None
        self.name = localname_for(self.ctx, package, self.meta, source_, localname)
        store = self.ctx.engine.store
        created_registry = None
        if store.creates_root and not await self.ctx.engine.root_exists():
            created_registry = store.location
        self.fmt = TAR_ZSTD if source_.tree else FILE
        claimed = await self._claim(source_, skip_existing=skip_existing,
                                    skip_identical=skip_identical)
        if isinstance(claimed, PushResult):
            return await self._promote_skipped(claimed, promote)
        await self._upload(claimed, source_, promote=promote)
        result = self.published[0]
        return PushResult(package, version, result.size, result.sha256, self.initialized,
                          promote, created_registry, format=self.fmt,
                          tree_sha256=self.packer.tree_sha256 if self.packer else None,
                          warnings=tuple(self.warnings),
                          signed_by=None if self.ctx.signer is None else self.ctx.signer.hint)

    async def _claim(self, source: Source, *, skip_existing: bool, skip_identical: bool
                     ) -> Hold | PushResult:
        """The hold on the version (its pending record), or the result of a push that
        uploads nothing (skipped: the version is there, or a rival holds it)."""
        package, version = self.package, self.version
        for attempt in range(2):  # a second time only after a rival push died meanwhile
            there = None
            if skip_existing:
                there = await self.skips.skipped(package, version, self.meta, source,
                                                 self.fmt)
            elif skip_identical:
                there = await self.skips.when_settled(package, version, self.meta, source)
            if there is not None:
                return there
            try:
                return await self._reserve()
            except AlreadyExists:
                if skip_existing:  # a rival got there between the look and the reservation
                    return skip(package, version, self.fmt, None, None, None)
                if not skip_identical or attempt:
                    raise
                self.meta = await self.catalog.read_meta_or_none(package)
        raise AssertionError("unreachable")

    async def _upload(self, hold: Hold, source: Source, *, promote: bool) -> None:
        """The object (If-None-Match), the hold renewed and the lost copies looked for
        beside it; once the bytes are in, ``_record``. A push that published nothing
        releases the version."""
        package, version = self.package, self.version

        async def record(result: UploadResult) -> None:
            await self._record(hold, result, promote=promote)

        key, label = version_key(package, version), f"{package} {version}"
        try:
            async with task_group() as tg:
                tg.start_soon(hold.keep)
                tg.start_soon(self._look_for_lost_copies)
                if self.meta is not None and not self.meta.marked:
                    # Mark the package as one tychoreg pushes to: a pull of any of its
                    # versions without a copy of the record then looks for the record object.
                    await self.catalog.update_meta(package, PackageMeta.mark)
                if source.path is not None and source.tree is None:
                    await self.ctx.engine.upload_file(source.path, key, label=label,
                                                      then=record)
                else:
                    chunks = iter(self.packer) if self.packer is not None else \
                        read_stream(source.stream)
                    await self.ctx.engine.upload_stream(chunks, key, label=label, then=record)
                tg.cancel_scope.cancel()
        except BaseException as exc:
            if not self.published:  # nothing was published: the version is free again
                with anyio.CancelScope(shield=True):
                    await self._release(hold)
            if isinstance(exc, PreconditionFailed):
                raise AlreadyExists(f"{package} {version} already exists (pushed by another "
                                    "client meanwhile)") from None
            raise

    async def _look_for_lost_copies(self) -> None:
        """While the bytes upload: versions whose copy in tycho.json a push that lost
        every race for it left missing; the publication writes them too."""
        try:
            with contextlib.suppress(TychoError):  # a repair on the side: never a failure
                if self.meta is not None:
                    self.lost.update(await self.catalog.lost_copies(
                        self.package, self.meta, self.version))
        finally:  # cancelled too: the shielded recording must not wait for it
            self.looked.set()

    async def _record(self, hold: Hold, result: UploadResult, *, promote: bool) -> None:
        """The object is published: the full record and its copy in tycho.json (run by
        the engine shielded from signals)."""
        package, version = self.package, self.version
        self.published.append(result)
        await hold.stop()
        with anyio.move_on_after(SHIELD_SECONDS / 4):
            await self.looked.wait()
        extra = {} if self.packer is None else {"format": TAR_ZSTD,
                                                "tree_sha256": self.packer.tree_sha256,
                                                "tree_size": self.packer.tar_size}
        try:
            self.initialized = await record_version(
                self.ctx, package, version, result, self.name, promote=promote, extra=extra,
                lost=self.lost, signer=self.ctx.signer)
        except Contended as exc:
            if promote:
                raise TransferError(
                    f"{package} {version} was published, but it could not be promoted: "
                    f"{exc.message.removesuffix('; try again')}; run 'tychoreg promote "
                    f"{package} {version}'") from exc
            self.warnings.append(
                f"{package} {version} is published, but tycho.json kept changing, so "
                "the copy of its record there is missing for now; the next push, pull "
                f"or prune of {package} writes it")
        except TychoError as exc:
            sign = "" if self.ctx.signer is None else " --sign-key PATH"
            raise TransferError(
                f"{package} {version} was uploaded, but recording it failed ({exc}); "
                f"run 'tychoreg verify {package} --version {version} --repair{sign}'"
            ) from exc

    async def _promote_skipped(self, result: PushResult, asked: bool) -> PushResult:
        """A skipped push still promotes the version there, if asked; one that is not
        complete yet (a rival still pushing it) is not promoted, with a warning."""
        if not asked:
            return result
        try:
            await promote(self.ctx, result.package, result.version)
        except (NotFound, IncompleteVersion) as exc:
            return dataclasses.replace(result, warnings=(
                *result.warnings, f"not promoted: {exc.message}"))
        return dataclasses.replace(result, promoted=True)

    async def _reserve(self) -> Hold:
        """Create the version's pending record and hold it, as the version's state
        allows: refused while the version exists or another push of it is alive. Only a
        pending record with no object beside it is ever taken over, and only once its
        push is gone (ABANDONED)."""
        package, version = self.package, self.version
        rkey = record_key(package, version)
        pkg, old, etag = await self.catalog.lookup(package, version)
        state = await self.catalog.observe(package, version, pkg, old, etag)
        if state is VersionState.RECORDING:
            raise Busy(f"{package} {version} is being recorded by another push right now; "
                        "published versions are immutable, push a new version")
        if state is VersionState.UPLOADED:
            raise AlreadyExists(
                f"{package} {version} exists, but the push that uploaded it was cut "
                f"short; run 'tychoreg verify {package} --version {version} --repair'")
        if pkg is not None or state is VersionState.ORPHANED:
            # (ORPHANED: a complete record whose object appeared after our HEAD, the
            # HEAD and the read of the record running at once; never taken over)
            raise AlreadyExists(f"{package} {version} already exists; published versions "
                                "are immutable, push a new version")
        if state is VersionState.DELETING:
            raise AlreadyExists(f"{package} {version} is being deleted (a deletion was "
                                f"cut short); 'tychoreg delete {package} {version}' "
                                "finishes it")
        busy = Busy(f"{package} {version} is being pushed by another client right "
                     "now; published versions are immutable, push a new version")
        if state is VersionState.PENDING:
            raise busy
        takeover = state is VersionState.ABANDONED and etag is not None
        if takeover and await self.ctx.engine.head(version_key(package, version)) is not None:
            raise busy  # looked again after reading: its push was alive after all, and uploaded
        holder = processes.this_process()
        push_id = uuid.uuid4().hex
        body = Record.reservation(tool=f"tychoreg {__version__}", started_at=now(),
                                  localname=self.name, push_id=push_id, fmt=self.fmt,
                                  holder=None if holder is None else holder.to_json(),
                                  sign=self.ctx.signer is not None)
        try:
            if takeover:
                written = await self.ctx.engine.put_bytes(rkey, body.dump(), if_match=etag)
            else:
                written = await self.ctx.engine.put_bytes(rkey, body.dump(),
                                                          if_none_match=True)
        except PreconditionFailed:
            # A retried write whose first answer was lost finds its own record: ours if
            # it carries our push id.
            mine = await _own_record(self.ctx.engine.get_bytes, rkey, push_id)
            if mine is None:
                raise busy from None
            written = mine
        if takeover:  # the dead push's upload goes too
            key = version_key(package, version)
            with contextlib.suppress(TychoError):
                for upload in await self.ctx.engine.list_uploads(key):
                    if upload.key == key:
                        await self.ctx.engine.abort_upload(key, upload.upload_id)
        return Hold(self.ctx.engine, rkey, body, written, self.catalog.liveness.interval)

    async def _release(self, hold: Hold) -> None:
        """Remove our pending record after a push that published nothing, unless another
        push took it over meanwhile, or the object is there after all (an answer lost to
        a signal or a timeout): then the record stays pending, so no pull trusts the
        object until ``verify --repair`` records it. Bounded: it runs while a signal
        waits."""
        package, version = self.package, self.version
        with anyio.move_on_after(CLEANUP_SECONDS):
            try:
                pkg, found = await self.catalog.look(package, version)
                if pkg is None and found is not None and (
                        found[1] == hold.etag or
                        Record.load(package, version, found[0]).push_id == hold.push_id):
                    await self.ctx.engine.delete(record_key(package, version))
            except TychoError:
                return  # a pending record left behind is taken over later, never trusted
