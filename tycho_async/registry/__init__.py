"""Registry: the composition of the operation modules (catalog, publish, pull, verify,
delete, queries), one short method per operation; the format is layout's, the publish
protocol publish's. In short:

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

The package holds one module per operation, each a class whose steps are methods,
sharing a ``catalog.Context`` (engine, catalog, local file system, reserved names):
``catalog`` (the bucket as operations see it), ``publish`` (init, push, promote, and
finishing a push a crash cut short; ``skips`` is its part for pushes that upload
nothing), ``pull`` (resolve, the destination chain, pull_many; ``trees`` installs a
directory package; ``locked`` pulls a lock file through them), ``verify``,
``delete`` (delete, prune), ``queries`` and ``lock`` (lock files made, checked and
updated); ``signing`` (a version's signatures, read, checked and written) serves
them all. Operation modules import ``catalog``, ``publish`` and ``signing`` at most from one another
(pull its ``trees``; ``locked`` imports ``pull``); ``Registry`` here composes them,
loading each on first use.

``batch`` (push_many) runs a list of pushes, each through ``Registry.push``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..layout import reserved_names
from ..lifecycle import Liveness
from ..transfer import Engine
from .catalog import Catalog, Context

if TYPE_CHECKING:
    from ..layout import PackageMeta
    from ..localfs import LocalFS
    from ..lockfile import Lock
    from ..results import (
        DeleteResult,
        LockChange,
        LockCheck,
        PackageSummary,
        ProbeResult,
        PruneResult,
        PullRequest,
        PullResult,
        PushRequest,
        PushResult,
        ShowResult,
        SignResult,
        VerifyResult,
        VersionInfo,
    )
    from ..sshsig import AllowedSigners
    from .pull import Claim
    from .signing import Signer


class Registry:
    """One registry's operations, composed: the engine that moves bytes, the catalog
    that reads and writes the bucket's metadata, and one object per operation (each
    module loaded on first use, so a pull of a file loads no code of trees, verify,
    delete or queries). ``outdir`` is the download folder a pull uses when it names
    none; ``own_files``: tychoreg's own files (the config, the dotenv file it names),
    which no localname may name at push or at pull; ``missing_root_ok``: the default
    local registry, simply empty before its first push (any other registry that does
    not exist is a typo, exit 2); ``liveness``: when a silent push counts as gone;
    ``clock``: the wall clock of every decision on time (a push gone, prune's ages);
    ``identity``: the registry as a lock file names it (``s3://BUCKET/PREFIX`` or the
    configured path; by default the store's location); ``signer``: the key every push
    signs with (None: unsigned); ``signers``: the allowed signers every pull, verify
    and lock requires a signature from (None: no policy, and no ``.sig`` is read)."""

    def __init__(self, engine: Engine, outdir: Path, *, missing_root_ok: bool = False,
                 fs: LocalFS | None = None, own_files: Sequence[str] = (),
                 liveness: Liveness | None = None,
                 clock: Callable[[], float] = time.time,
                 identity: str | None = None, signer: Signer | None = None,
                 signers: AllowedSigners | None = None) -> None:
        self.engine = engine
        self.outdir = outdir
        self.catalog = Catalog(engine, liveness or Liveness(),
                               missing_root_ok=missing_root_ok, clock=clock)
        self.ctx = Context(engine, self.catalog, fs or engine.fs, reserved_names(own_files),
                           identity or engine.store.location, signer=signer,
                           signers=signers)

    async def init(self, package: str, filename: str) -> None:
        from .publish import init

        await init(self.ctx, package, filename)

    async def push(self, package: str, version: str, source: Path | BinaryIO, *,
                   promote: bool, localname: str | None = None, level: int | None = None,
                   skip_existing: bool = False, skip_identical: bool = False) -> PushResult:
        """See ``publish.Push.run``."""
        from .publish import Push

        return await Push(self.ctx).run(package, version, source, promote=promote,
                                        localname=localname, level=level,
                                        skip_existing=skip_existing,
                                        skip_identical=skip_identical)

    async def push_many(self, requests: Sequence[PushRequest], *, promote: bool,
                        skip_existing: bool = False, skip_identical: bool = False,
                        level: int | None = None) -> list[PushResult]:
        """See ``batch.PushMany.run``. Each item goes through ``push`` here, the one
        entry point of a push."""
        from .batch import PushMany

        return await PushMany(self.ctx, self.push).run(
            requests, promote=promote, skip_existing=skip_existing,
            skip_identical=skip_identical, level=level)

    async def promote(self, package: str, version: str) -> None:
        from .publish import promote

        await promote(self.ctx, package, version)

    async def pull(
        self, request: PullRequest, *, outdir: Path | None = None, force: bool = False,
        outfile: Path | BinaryIO | None = None, raw: bool = False,
        fallback: Sequence[str] = (), claim: Claim | None = None,
        max_unpacked: int | None = None, meta: PackageMeta | None = None,
    ) -> PullResult:
        """See ``pull.Pull.pull``; ``outdir`` None: the registry's download folder."""
        from .pull import Pull

        return await Pull(self.ctx).pull(
            request, outdir=self.outdir if outdir is None else outdir, force=force,
            outfile=outfile, raw=raw, fallback=fallback, claim=claim,
            max_unpacked=max_unpacked, meta=meta)

    async def pull_many(self, requests: Sequence[PullRequest], *,
                        outdir: Path | None = None, force: bool = False,
                        max_unpacked: int | None = None) -> list[PullResult]:
        """See ``pull.Pull.pull_many``; ``outdir`` as for ``pull``. Each item goes
        through ``pull`` here, the one entry point of a pull."""
        from .pull import Pull

        return await Pull(self.ctx).pull_many(
            requests, outdir=self.outdir if outdir is None else outdir, force=force,
            max_unpacked=max_unpacked, each=self.pull)

    async def pull_locked(self, lock: Lock, *, outdir: Path | None = None,
                          force: bool = False, other_registry: bool = False,
                          max_unpacked: int | None = None) -> list[PullResult]:
        """See ``locked.LockedPull.run``; ``outdir`` as for ``pull``."""
        from .locked import LockedPull

        return await LockedPull(self.ctx).run(
            lock, outdir=self.outdir if outdir is None else outdir, force=force,
            other_registry=other_registry, max_unpacked=max_unpacked)

    async def verify(self, request: PullRequest, *, repair: bool = False) -> VerifyResult:
        """See ``verify.Verify.run``."""
        from .verify import Verify

        return await Verify(self.ctx).run(request, repair=repair)

    async def sign(self, package: str, version: str) -> SignResult:
        """See ``signing.sign_version``."""
        from .signing import sign_version

        return await sign_version(self.ctx, package, version)

    async def delete(self, package: str, versions: Sequence[str], *, force: bool = False,
                     dry_run: bool = False, everything: bool = False) -> DeleteResult:
        """See ``delete.Delete.run``."""
        from .delete import Delete

        return await Delete(self.ctx).run(package, versions, force=force, dry_run=dry_run,
                                          everything=everything)

    async def prune(self, package: str, *, keep: int, older_than: float | None = None,
                    dry_run: bool = False) -> PruneResult:
        """See ``delete.Prune.run``."""
        from .delete import Prune

        return await Prune(self.ctx).run(package, keep=keep, older_than=older_than,
                                         dry_run=dry_run)

    async def exists(self, package: str, version: str) -> bool:
        from .queries import Queries

        return await Queries(self.ctx).exists(package, version)

    async def list_packages(self) -> list[PackageSummary]:
        from .queries import Queries

        return await Queries(self.ctx).list_packages()

    async def list_versions(self, package: str) -> list[VersionInfo]:
        from .queries import Queries

        return await Queries(self.ctx).list_versions(package)

    async def show(self, package: str, version: str | None = None) -> ShowResult:
        from .queries import Queries

        return await Queries(self.ctx).show(package, version)

    async def lock(self, requests: Sequence[PullRequest], *,
                   require_sha256: bool = False) -> Lock:
        """See ``lock.Locking.lock``."""
        from .lock import Locking

        return await Locking(self.ctx).lock(requests, require_sha256=require_sha256)

    async def lock_check(self, lock: Lock, *, latest: bool = False,
                         other_registry: bool = False) -> LockCheck:
        """See ``lock.Locking.check``."""
        from .lock import Locking

        return await Locking(self.ctx).check(lock, latest=latest,
                                             other_registry=other_registry)

    async def lock_update(self, lock: Lock, packages: Sequence[str] = (), *,
                          require_sha256: bool = False) -> tuple[Lock, list[LockChange]]:
        """See ``lock.Locking.update``."""
        from .lock import Locking

        return await Locking(self.ctx).update(lock, packages, require_sha256=require_sha256)

    async def write_lock(self, path: Path, lock: Lock) -> bool:
        """Write ``lock`` to ``path`` atomically (temp file beside it, renamed); a file
        that holds these bytes already is left as it is. Whether it was written."""
        from .lock import write

        return await write(self.ctx, path, lock)

    async def probe(self) -> ProbeResult:
        from .queries import Queries

        return await Queries(self.ctx).probe()
