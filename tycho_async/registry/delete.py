"""Deletion and retention: delete (versions, all or none, or a whole package) and prune
(keep the newest and latest, delete the rest), each deletion in steps a crash can cut
anywhere without leaving anything a pull would trust; and finishing what crashes left
(deletions finished, dead pushes finished by publish's ``repair``, lost copies
restored, stale multipart uploads aborted).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from .. import __version__, retention
from ..errors import NotFound, PartialFailure, Refused, TransferError, TychoError, UsageError
from ..layout import (
    DELETING,
    LATEST,
    dump,
    is_pending,
    load_record,
    meta_key,
    now,
    record_key,
    records_in,
    state_of,
    version_key,
)
from ..names import check_package, check_version, is_valid_segment
from ..names import version_key as natural
from ..results import DeleteResult, PruneResult
from ..storage import ObjectInfo
from ..transfer.groups import task_group
from ..units import plural
from .catalog import Busy, Context
from .publish import SHIELD_SECONDS, repair

STALE_UPLOAD_SECONDS = 86400  # prune aborts multipart uploads older than this


async def _deleting(ctx: Context, package: str, version: str, meta: dict[str, Any]
                    ) -> tuple[ObjectInfo | None, dict[str, Any] | None, bool]:
    """The version's object, its record object, and whether a deletion of it was
    started (its copy in tycho.json or its record says so)."""
    pkg, found = await ctx.catalog.look(package, version)
    record = load_record(package, version, found[0]) if found is not None else None
    started = DELETING in (state_of(records_in(meta).get(version)), state_of(record))
    return pkg, record, started


async def delete_versions(ctx: Context, package: str, versions: Sequence[str], *,
                          force: bool, marks: bool = True) -> None:
    """1. mark every version as being deleted in tycho.json, in one conditional
    write that re-checks latest (from here no pull trusts any of them, and the same
    command run again knows them: a mark is "deleted by a run cut short", not a
    typo); then, version by version, 2. mark its record object too (for a reader
    whose tycho.json lost our copy), 3. delete the object, 4. delete the record
    object; only once the last object is gone, 5. drop the marks from tycho.json.
    A crash anywhere leaves the marks, which the next delete or prune finishes.
    ``marks`` False: the package has no tycho.json (steps 1 and 5 are skipped)."""
    engine = ctx.engine
    olds: dict[str, dict[str, Any] | None] = {}

    async def read(version: str) -> None:
        olds[version] = None
        with contextlib.suppress(NotFound):
            olds[version] = load_record(package, version, (await engine.get_bytes(
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
        await ctx.catalog.update_meta(package, start)
    try:
        for version in versions:
            with anyio.CancelScope(shield=True), anyio.fail_after(SHIELD_SECONDS):
                rkey = record_key(package, version)
                if olds[version] is not None:
                    await engine.put_bytes(rkey, dump(marked[version]))
                await engine.delete(version_key(package, version))
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
        looked: dict[str, tuple[ObjectInfo | None, dict[str, Any] | None, bool]] = {}

        async def look(version: str) -> None:
            looked[version] = await _deleting(self.ctx, package, version, meta)

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
        copies = records_in(meta or {})
        versions = sorted((v for v in set(pushed) | recorded | set(copies)
                           if is_valid_segment(v)), key=natural)
        for version in sorted(recorded - {v for v, c in copies.items() if state_of(c) == "ok"},
                              key=natural):
            _, record, started = await _deleting(self.ctx, package, version, meta or {})
            if not started and await self.catalog.alive(package, version, record, None):
                raise Busy(f"{package} {version} is being pushed by another client right "
                            "now; nothing deleted (try again once it is done)")
        latest = (meta or {}).get("latest")
        cleared = isinstance(latest, str)
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
                                    keep=keep, latest=meta.get("latest"),
                                    older_than=older_than, now=time.time())
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
            _, record, started = await _deleting(self.ctx, package, version, meta)
            if started:
                todo[version] = functools.partial(delete_versions, self.ctx, package,
                                                  [version], force=True)
            elif is_pending(record) and record is not None \
                    and await self.catalog.abandoned(package, version, record, None):
                todo[version] = functools.partial(
                    self._repair_quietly, package, version)
        lost = await self.catalog.lost_copies(package, meta, *todo, listing=(pushed, recorded))
        if lost:  # recorded, but tycho.json lost the copy: restored in one write
            restore = functools.partial(self.catalog.restore_copies, package, lost)
            todo.update(dict.fromkeys(lost, restore))
        return todo

    async def _repair_quietly(self, package: str, version: str) -> None:
        """A push that died, finished as ``verify --repair`` would (tycho.json read
        afresh); NotFound: its pending record was cleared, as asked."""
        with contextlib.suppress(NotFound):
            await repair(self.ctx, package, version,
                         await self.catalog.read_meta_or_none(package))

    async def _stale_uploads(self, package: str) -> list[tuple[str, str]]:
        """Multipart uploads of the package's versions started over a day ago, whatever
        became of the version (one listing)."""
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        return [(u.key, u.upload_id)
                for u in await self.ctx.engine.list_uploads(f"{package}/tycho_")
                if u.key.endswith(".pkg") and u.initiated < cutoff]
