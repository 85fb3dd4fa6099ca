"""Pulling a lock file (``pull-list --locked``): every locked version to the download
folder, in one batch, with no tycho.json request at all. The lock says the object, the
localname and the bytes, so each entry becomes pull's own ``Wanted`` (a record made
from the entry, the object pinned to the locked size and ETag) and goes down pull's
destination chain and pull_many's batch: a current local copy costs no request, a stale
one one GET, checked against the lock before it appears. Under allowed signers the lock
must vouch for every entry first (``pinned.check_signed``, no request), and an entry
that is downloaded has its ``.sig`` read (one GET) and checked before its object is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, SignatureError, TychoError
from ..layout import TAR_ZSTD, PackageMeta, Record, version_key
from ..lockfile import Lock, Locked
from ..pinned import check_lock, current_copy
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
        check_lock(lock, self.ctx.identity, self.ctx.reserved, other_registry=other_registry,
                   signers=self.ctx.signers)
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
        """One locked entry, down the destination chain (a FIFO, a tree, a file); under
        allowed signers, one to download is checked by its ``.sig`` first."""
        signed = self.ctx.signers is not None
        if signed and (force or not self._current(entry, outdir)):
            await self._require(entry)
        pinned = ObjectInfo(version_key(entry.name, entry.version), entry.size, entry.etag)
        want = Wanted(entry.name, entry.version, True, _record(entry), _expected(entry),
                      entry.localname, None, outdir, force, False, claim, max_unpacked,
                      pinned=pinned)
        kind = next(kind for kind in DESTINATIONS if kind.fits(want, self.ctx))
        result = await kind(self.op, want).write()
        return dataclasses.replace(result, signed_by=entry.signed_by) if signed else result

    def _current(self, entry: Locked, outdir: Path) -> bool:
        """Whether the entry's local copy is current, as the destination chain will find
        it: then the lock's signer vouches for it, and no ``.sig`` is read."""
        try:
            return current_copy(entry, self.ctx.fs, outdir) is not None
        except TychoError:
            return False

    async def _require(self, entry: Locked) -> None:
        """The entry's ``.sig`` (one GET): an allowed signer's signature of the very
        statement the lock recorded (SignatureError, exit 3, before a byte moves)."""
        from .signing import check, read  # loaded only under a policy

        assert self.ctx.signers is not None
        found = await read(self.ctx, entry.name, entry.version)
        signed = check(self.ctx.signers, entry.name, entry.version,
                       None if found is None else found[0], entry.statement())
        if signed.statement_sha256 != entry.statement_sha256:
            raise SignatureError(f"{entry}: the signed statement is not the one the lock "
                                 "recorded")
