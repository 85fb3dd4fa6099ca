"""Deletion and retention: delete (versions, all or none, or a whole package) and prune
(keep the newest and latest, delete the rest), each deletion in steps a crash can cut
anywhere without leaving anything a pull would trust; and finishing what crashes left
(each version's state, by lifecycle, names the step: deletions finished, dead pushes
completed or cleared by publish's ``complete`` / ``clear``, lost copies restored; a
live push is waited for), and stale multipart uploads aborted.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from .. import __version__, retention
from ..errors import NotFound, PartialFailure, Refused, TransferError, TychoError, UsageError
from ..layout import (
    LATEST,
    PackageMeta,
    Record,
    meta_key,
    now,
    record_key,
    signature_key,
    version_key,
)
from ..lifecycle import Step, VersionState, next_step
from ..names import check_package, check_version, is_valid_segment
from ..names import version_key as natural
from ..results import DeleteResult, PruneResult
from ..storage import ObjectInfo
from ..transfer.groups import task_group
from ..units import plural
from .catalog import Busy, Context
from .publish import SHIELD_SECONDS, clear, complete

STALE_UPLOAD_SECONDS = 86400  # prune aborts multipart uploads older than this


async def _observe(ctx: Context, package: str, version: str, meta: PackageMeta | None
                   ) -> tuple[ObjectInfo | None, VersionState]:
    """The version's object and its state (``lifecycle.observe``, a pending record's
    push probed): DELETING when a deletion of it was started (its copy in tycho.json or
    its record says so), unless a new push holds the version since."""
    pkg, record, etag = await ctx.catalog.lookup(package, version)
    copy = meta.records.get(version) if meta is not None else None
    return pkg, await ctx.catalog.observe(package, version, pkg, record, etag, copy)


async def delete_versions(ctx: Context, package: str, versions: Sequence[str], *,
                          force: bool, marks: bool = True) -> None:
    """1. mark every version as being deleted in tycho.json, in one conditional
    write that re-checks latest (from here no pull trusts any of them, and the same
    command run again knows them: a mark is "deleted by a run cut short", not a
    typo); then, version by version, 2. mark its record object too (for a reader
    whose tycho.json lost our copy), 3. delete the object, 4. its signature file
    (before the record, so the run that finishes a deletion cut short removes it
    too), 5. delete the record object; only once the last object is gone, 6. drop the
    marks from tycho.json.
    A crash anywhere leaves the marks, which the next delete or prune finishes.
    ``marks`` False: the package has no tycho.json (steps 1 and 6 are skipped)."""
    engine = ctx.engine
    olds: dict[str, Record | None] = {}

    async def read(version: str) -> None:
        olds[version] = None
        with contextlib.suppress(NotFound):
            olds[version] = Record.load(package, version, (await engine.get_bytes(
                record_key(package, version)))[0])

    async with task_group() as tg:
        for version in versions:
            tg.start_soon(read, version)
    since = now()
    marked = {v: Record.deletion_mark(old, since=since, by=f"tychoreg {__version__}")
              for v, old in olds.items()}

    def start(meta: PackageMeta) -> None:
        latest = meta.latest
        if latest in marked:
            if not force:
                raise Refused(f"{package} {latest} became the latest version meanwhile; "
                              "nothing deleted")
            meta.latest = None
        meta.mark()
        meta.records.update(marked)

    def finish(meta: PackageMeta) -> None:
        for version in versions:
            copy = meta.records.get(version)
            if copy is not None and copy.deleting:
                del meta.records[version]

    if marks:
        await ctx.catalog.update_meta(package, start)
    try:
        for version in versions:
            with anyio.CancelScope(shield=True), anyio.fail_after(SHIELD_SECONDS):
                rkey = record_key(package, version)
                if olds[version] is not None:
                    await engine.put_bytes(rkey, marked[version].dump())
                await engine.delete(version_key(package, version))
                await engine.delete(signature_key(package, version))
                await engine.delete(rkey)
        if marks:
            with anyio.CancelScope(shield=True), anyio.fail_after(SHIELD_SECONDS):
                await ctx.catalog.update_meta(package, finish)
    except TimeoutError:
        raise TransferError(f"{package}: a deletion got no answer within "
                            f"{SHIELD_SECONDS} s; 'tychoreg delete {package} "
                            f"{' '.join(versions)}' finishes it") from None


class Delete:
    """One delete command: every version checked first, then deleted in order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog

    async def run(self, package: str, versions: Sequence[str], *, force: bool = False,
                  dry_run: bool = False, everything: bool = False) -> DeleteResult:
        """Delete versions, all or none: every one is checked first (a missing version,
        or the latest without ``force``, refuses the whole command). Each deletion is
        ordered so that a crash between its steps leaves nothing a pull would trust
        (``delete_versions``); the same command run again, or a prune, finishes it.
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
        meta, _ = await self.catalog.read_meta(package)
        looked: dict[str, tuple[ObjectInfo | None, VersionState]] = {}
        signed_only: set[str] = set()  # a .sig left without its version: deleted too

        async def look(version: str) -> None:
            looked[version] = pkg, state = await _observe(self.ctx, package, version, meta)
            if pkg is None and state is not VersionState.DELETING and \
                    await self.ctx.engine.head(signature_key(package, version)) is not None:
                signed_only.add(version)

        async with task_group() as tg:
            for version in versions:
                tg.start_soon(look, version)
        problems: list[tuple[str, TychoError]] = []
        for version in versions:
            pkg, state = looked[version]
            copy = meta.records.get(version)
            if next_step(state) is Step.WAIT and copy is not None and copy.deleting:
                # a push began after a deletion cut short had removed object and record
                problems.append((version, Busy(
                    f"{package} {version} is being pushed by another client right now; "
                    "nothing deleted (try again once it is done)")))
            elif pkg is None and state is not VersionState.DELETING and \
                    version not in signed_only:
                problems.append((version, NotFound(f"{package} {version} does not exist")))
            elif meta.latest == version and not force:
                problems.append((version, Refused(
                    f"{package} {version} is the latest version; promote another first, or "
                    "pass --force to delete it and leave latest unset")))
        if problems:
            if len(problems) == 1:
                raise problems[0][1]
            raise PartialFailure(f"nothing deleted: {len(problems)} of "
                                 f"{plural(len(versions), 'version')} refused", problems)
        cleared = meta.latest in versions
        if not dry_run:
            await delete_versions(self.ctx, package, versions, force=force)
        return DeleteResult(package, versions, cleared, dry_run)

    async def _delete_package(self, package: str, *, dry_run: bool) -> DeleteResult:
        """Every version (latest included: removing the package is what was asked), by
        the steps of ``delete_versions``, then the package's multipart uploads, then
        tycho.json last: a crash anywhere leaves a package the same command finishes.
        A push still alive is never cut short: it refuses the whole command."""
        meta = await self.catalog.read_meta_or_none(package)
        pushed, recorded = await self.catalog.listing(package)
        if meta is None and not pushed and not recorded:
            await self.catalog.require_root()
            raise NotFound(f"package {package!r} does not exist")
        copies = meta.records if meta is not None else {}
        versions = sorted((v for v in set(pushed) | recorded | set(copies)
                           if is_valid_segment(v)), key=natural)
        complete = {v for v, c in copies.items() if not (c.pending or c.deleting)}
        for version in sorted(recorded - complete, key=natural):
            _, state = await _observe(self.ctx, package, version, meta)
            if next_step(state) is Step.WAIT:
                raise Busy(f"{package} {version} is being pushed by another client right "
                            "now; nothing deleted (try again once it is done)")
        cleared = meta is not None and meta.latest is not None
        uploads = await self.ctx.engine.list_uploads(f"{package}/tycho_")
        if dry_run:
            return DeleteResult(package, versions, cleared, True, package_removed=True)
        if versions:  # marks only in a tycho.json that exists (none: no pull trusts any)
            await delete_versions(self.ctx, package, versions, force=True,
                                  marks=meta is not None)
        for upload in uploads:
            with contextlib.suppress(NotFound):
                await self.ctx.engine.abort_upload(upload.key, upload.upload_id)
        objects, records = await self.catalog.listing(package)
        if left := sorted(set(objects) | records, key=natural):
            raise TransferError(f"{package}: {', '.join(left)} pushed meanwhile; tycho.json "
                                f"kept (run delete {package} --all again)")
        for info in await self.ctx.engine.list_keys(f"{package}/tycho_"):
            if info.key.endswith(".sig"):  # signatures of versions gone before
                await self.ctx.engine.delete(info.key)
        if meta is not None:
            await self.ctx.engine.delete(meta_key(package))
        return DeleteResult(package, versions, cleared, False, package_removed=True)


class Prune:
    """One prune: what was cut short finished, stale uploads aborted, then the versions
    past the rule deleted."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog

    async def run(self, package: str, *, keep: int, older_than: float | None = None,
                  dry_run: bool = False) -> PruneResult:
        """Keep the ``keep`` most recently pushed versions and latest; delete the rest
        (only those older than ``older_than`` seconds, when given). Also finishes what
        was cut short: deletions, pushes whose object is there (recorded) or is not
        (cleared), and multipart uploads older than a day (aborted)."""
        check_package(package)
        if keep < 0:
            raise UsageError("--keep must be 0 or more")
        meta, _ = await self.catalog.read_meta(package)
        pushed, recorded = await self.catalog.listing(package)
        unfinished = await self._unfinished(package, meta, pushed, recorded)
        plan = retention.plan_prune([p for v, p in pushed.items() if v not in unfinished],
                                    keep=keep, latest=meta.latest,
                                    older_than=older_than, now=self.ctx.clock())
        stale = await self._stale_uploads(package)
        if not dry_run:
            for how in dict.fromkeys(unfinished.values()):  # one restore serves several
                await how()
            for key, upload_id in stale:
                await self.ctx.engine.abort_upload(key, upload_id)
            if plan.delete:
                await delete_versions(self.ctx, package, [p.version for p in plan.delete],
                                      force=False)
        return PruneResult(package, [p.version for p in plan.delete],
                           [p.version for p in plan.keep], sorted(unfinished, key=natural),
                           len(stale), dry_run)

    async def _unfinished(self, package: str, meta: PackageMeta,
                          pushed: dict[str, retention.Pushed], recorded: set[str]
                          ) -> dict[str, Callable[[], Awaitable[Any]]]:
        """Versions left half-way by a crash, each with the step its state names: a
        deletion finished, a push that died completed (its object is there) or cleared
        (it is not), a lost copy restored. A push still alive (WAIT) is left alone."""
        copies = meta.records
        todo: dict[str, Callable[[], Awaitable[Any]]] = {}
        candidates = {v for v, c in copies.items() if c.pending or c.deleting} | \
            (recorded - set(pushed)) | \
            {v for v in recorded & set(pushed) if v not in copies}
        for version in sorted(candidates, key=natural):
            if not is_valid_segment(version):
                continue
            _, state = await _observe(self.ctx, package, version, meta)
            step = next_step(state)
            if step is Step.FINISH_DELETION:
                todo[version] = functools.partial(delete_versions, self.ctx, package,
                                                  [version], force=True)
            elif step in (Step.COMPLETE, Step.CLEAR):
                todo[version] = functools.partial(self._settle_push, package, version)
        lost = await self.catalog.lost_copies(package, meta, *todo, listing=(pushed, recorded))
        if lost:  # recorded, but tycho.json lost the copy: restored in one write
            restore = functools.partial(self.catalog.restore_copies, package, lost)
            todo.update(dict.fromkeys(lost, restore))
        return todo

    async def _settle_push(self, package: str, version: str) -> None:
        """A push that died, settled by publish's ``complete`` or ``clear`` as its state,
        looked at again now, says (a push that took the version over meanwhile is
        alive: left alone)."""
        pkg, record, etag = await self.catalog.lookup(package, version)
        step = next_step(await self.catalog.observe(package, version, pkg, record, etag))
        if step is Step.COMPLETE and record is not None:
            await complete(self.ctx, package, version, record)
        elif step is Step.CLEAR:
            await clear(self.ctx, package, version)

    async def _stale_uploads(self, package: str) -> list[tuple[str, str]]:
        """Multipart uploads of the package's versions started over a day ago, whatever
        became of the version (one listing)."""
        cutoff = self.ctx.clock() - STALE_UPLOAD_SECONDS
        return [(u.key, u.upload_id)
                for u in await self.ctx.engine.list_uploads(f"{package}/tycho_")
                if u.key.endswith(".pkg") and u.initiated < cutoff]
