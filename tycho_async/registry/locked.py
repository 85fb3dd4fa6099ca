"""Pulling a lock file (``pull-list --locked``): every locked version to the download
folder, in one batch, with no tycho.json request at all. The lock says the object, the
localname and the bytes, so each entry becomes pull's own ``Wanted`` (a record made
from the entry, the object pinned to the locked size and ETag) and goes down pull's
destination chain and pull_many's batch: a current local copy costs no request, a stale
one one GET, checked against the lock before it appears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import IntegrityError, TychoError, UsageError
from ..layout import (
    TAR_ZSTD,
    PackageMeta,
    Record,
    dir_name,
    etag_sidecar,
    is_current,
    localname_clash,
    version_key,
)
from ..localfs import LocalFS, dir_target, fits
from ..lockfile import Lock, Locked, LockfileError
from ..results import PullRequest, PullResult
from ..storage import ObjectInfo
from ..transfer import Expected
from ..transfer.engine import ExpectedSource
from .catalog import Context
from .pull import DESTINATIONS, Claim, Pull, Wanted


def _record(entry: Locked) -> Record:
    """The record a locked entry stands for: what a tychoreg push recorded (a
    tycho-station version has no SHA-256 to record)."""
    fields: dict[str, Any] = {"size": entry.size, "localname": entry.localname}
    for key in ("sha256", "tree_sha256", "tree_size"):
        value = getattr(entry, key)
        if value is not None:
            fields[key] = value
    if entry.format == TAR_ZSTD:
        fields["format"] = TAR_ZSTD
    return Record(fields)


def _expected(entry: Locked) -> ExpectedSource:
    """The locked SHA-256 and size; for a tycho-station version, the first answer's
    size and ETag must be the locked ones, and its bytes the MD5 where the ETag is one."""
    if not entry.station:
        return entry.expected()

    async def station(info: ObjectInfo) -> Expected:
        if info.etag != entry.etag or info.size != entry.size:
            raise IntegrityError(
                f"{entry}: the stored object is not the locked one (locked: {entry.size} "
                f"bytes, ETag {entry.etag}; stored: {info.size} bytes, ETag {info.etag})")
        return Expected(entry.size, md5=info.md5)

    return station


def check_lock(lock: Lock, identity: str, reserved: frozenset[str], *,
               other_registry: bool) -> None:
    """Everything a lock must satisfy before any request (UsageError, exit 2): the
    registry it was resolved against is this one, ``identity`` (unless
    ``other_registry``), and no entry's localname (or a directory's NAME) passes for
    one of tychoreg's own files (``reserved``)."""
    if lock.registry != identity and not other_registry:
        raise UsageError(f"the lock file was resolved against {lock.registry}, not "
                         f"{identity} (the registry in use); pass --registry on the "
                         "command line to pull it from this one anyway")
    for entry in lock.packages:
        if entry.station and entry.format == TAR_ZSTD:
            raise LockfileError(f"package {entry}: a directory package is locked by its "
                                "sha256, and this entry has none")
        names = [entry.localname]
        if entry.format == TAR_ZSTD:
            names.append(dir_name(entry.localname) or entry.localname)
        for name in names:
            problem = localname_clash(name, reserved)
            if problem:
                raise LockfileError(f"package {entry}: the lock names the local file "
                                    f"{name!r}, and {problem}")


def offline(lock: Lock, fs: LocalFS, outdir: Path) -> list[PullResult] | None:
    """What a pull of ``lock`` into ``outdir`` finds when every entry is current, told
    from the local files alone (so a warm run needs no store at all: no connection, no
    credentials); None as soon as one entry needs the store, or a destination needs
    the full pull's checks and messages. ``check_lock`` comes first."""
    results: list[PullResult] = []
    seen: set[Path] = set()
    for entry in lock.packages:
        try:
            result = _current(entry, fs, outdir)
        except TychoError:
            return None
        if result is None or result.path.absolute() in seen:
            return None
        seen.add(result.path.absolute())
        results.append(result)
    return results


def _current(entry: Locked, fs: LocalFS, outdir: Path) -> PullResult | None:
    """The skipped result of a current entry, as the destination chain would give it."""
    if entry.format == TAR_ZSTD:
        from ..archive.proof import local_edits, read_proof

        dest = outdir / (dir_name(entry.localname) or entry.localname)
        if not dir_target(dest, keep=(outdir,)):
            return None
        proof = read_proof(dest)
        if proof is None or (proof.get("package"), proof.get("version"), proof.get("etag")) \
                != (entry.name, entry.version, entry.etag) or local_edits(dest, proof):
            return None
    else:
        target = fs.target(outdir / entry.localname, within=outdir)
        dest = target.named
        pinned = ObjectInfo(version_key(entry.name, entry.version), entry.size, entry.etag)
        if target.is_stream or not target.sidecar or not fits(etag_sidecar(dest)) or \
                not is_current(dest, pinned):
            return None
    return PullResult(entry.name, entry.version, dest, entry.size, skipped=True, exact=True,
                      format=entry.format)


class LockedPull:
    """The pulls of one lock file, through pull's machinery."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.op = Pull(ctx)

    async def run(self, lock: Lock, *, outdir: Path, force: bool = False,
                  other_registry: bool = False,
                  max_unpacked: int | None = None) -> list[PullResult]:
        """Pull every locked version into ``outdir`` as pull_many does (claims, every
        failure at the end in PartialFailure, the worst exit code), with no tycho.json
        read: checked by ``check_lock`` first, then each entry by the lock's bytes (a
        mismatch is IntegrityError, exit 3, the destination untouched; a version
        deleted since is NotFound, exit 1)."""
        check_lock(lock, self.ctx.identity, self.ctx.reserved, other_registry=other_registry)
        entries = {entry.name: entry for entry in lock.packages}

        async def each(request: PullRequest, *, outdir: Path, force: bool,
                       claim: Claim | None, max_unpacked: int | None,
                       meta: PackageMeta | None) -> PullResult:
            return await self.pull(entries[request.package], outdir=outdir, force=force,
                                   claim=claim, max_unpacked=max_unpacked)

        requests = [PullRequest(entry.name, entry.version) for entry in lock.packages]
        return await self.op.pull_many(requests, outdir=outdir, force=force,
                                       max_unpacked=max_unpacked, each=each,
                                       tycho_json=False)

    async def pull(self, entry: Locked, *, outdir: Path, force: bool, claim: Claim | None,
                   max_unpacked: int | None) -> PullResult:
        """One locked entry, down the destination chain (a FIFO, a tree, a file)."""
        pinned = ObjectInfo(version_key(entry.name, entry.version), entry.size, entry.etag)
        want = Wanted(entry.name, entry.version, True, _record(entry), _expected(entry),
                      entry.localname, None, outdir, force, False, claim, max_unpacked,
                      pinned=pinned)
        kind = next(kind for kind in DESTINATIONS if kind.fits(want, self.ctx))
        return await kind(self.op, want).write()
