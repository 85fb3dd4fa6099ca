"""The public Python API: ``open_registry`` (async) and ``Client`` (sync), the one
composition of settings -> store -> engine -> registry that the CLI uses too.

The API reads no config file and no ``TYCHOREG_*`` variable unless asked: ``config=PATH``
reads that file, ``from_environment=True`` (``Client.from_environment()``) resolves
exactly as the CLI does. The AWS credential chain applies in every case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from .config import Settings, load_settings

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from .lifecycle import Liveness
    from .lockfile import Lock
    from .registry import Registry
    from .results import (
        DeleteResult,
        LockCheck,
        LockResult,
        PackageSummary,
        ProbeResult,
        PruneResult,
        PullResult,
        PushRequest,
        PushResult,
        ShowResult,
        SignResult,
        VerifyResult,
        VersionInfo,
    )
    from .transfer.sink import ProgressSink


def resolve_settings(*, registry: str | None = None, config: str | None = None,
                     endpoint_url: str | None = None, outdir: str | Path | None = None,
                     concurrency: int | None = None, part_size: int | str | None = None,
                     signing_key: str | Path | None = None,
                     allowed_signers: str | Path | None = None,
                     from_environment: bool = False) -> Settings:
    """Settings from keyword arguments, with the CLI's precedence when
    ``from_environment``: arguments, ``TYCHOREG_*`` variables, the config file
    (``./.tychoreg.json`` if none is named), the defaults."""
    from .storage import S3Options

    overrides = {k: v for k, v in (("outdir", None if outdir is None else str(outdir)),
                                   ("concurrency", concurrency), ("part_size", part_size),
                                   ("signing_key", signing_key),
                                   ("allowed_signers", allowed_signers))
                 if v is not None}
    settings = load_settings(config, registry, overrides, environment=from_environment)
    if endpoint_url is not None and isinstance(settings.store, S3Options):
        store = dataclasses.replace(settings.store, client_kwargs={
            **settings.store.client_kwargs, "endpoint_url": endpoint_url})
        settings = dataclasses.replace(settings, store=store)
    return settings


@asynccontextmanager
async def open_settings(settings: Settings, progress: ProgressSink | None = None, *,
                        liveness: Liveness | None = None,
                        ask_passphrase: Callable[[Path], bytes] | None = None,
                        ) -> AsyncIterator[AsyncRegistry]:
    """What ``open_registry`` yields, for settings already resolved (the CLI resolves its
    own, with its options and warnings): the registry the settings name, with its store
    open for the block's lifetime. ``liveness``: when a silent push counts as gone (the
    default: 60 s). The allowed signers are read here (a malformed file is refused
    before anything moves); the signing key on the first signature, with the
    passphrase in TYCHOREG_SIGNING_KEY_PASSPHRASE, else ``ask_passphrase``'s."""
    from .registry import Registry
    from .storage import open_store
    from .transfer.engine import Engine

    signers = signer = None
    if settings.allowed_signers is not None:
        from .sshsig import AllowedSigners

        signers = AllowedSigners.load(settings.allowed_signers)
    if settings.signing_key is not None:
        import os

        from .config import PASSPHRASE_ENV
        from .registry.signing import Signer

        passphrase = os.environ.get(PASSPHRASE_ENV)
        signer = Signer(settings.signing_key,
                        None if passphrase is None else passphrase.encode(), ask_passphrase)
    async with open_store(settings.store) as store:
        yield AsyncRegistry(Registry(
            Engine(store, settings.transfer, progress), settings.outdir,
            missing_root_ok=settings.default_registry, own_files=settings.own_files,
            liveness=liveness, identity=settings.location, signer=signer,
            signers=signers))


def locked_current(settings: Settings, lock: Lock, *,
                   other_registry: bool = False) -> list[PullResult] | None:
    """A pull of ``lock`` that needs no store: the lock checked as ``pull_locked``
    checks it first (UsageError), then, when every entry's local copy is current, their
    results; None when any entry needs the store (then ``pull_locked`` it). Nothing is
    opened: no connection, no credentials resolved (a CI run with everything in place)."""
    from .pinned import current
    from .results import PullResult

    found = current(lock, settings, other_registry=other_registry)
    signed = settings.allowed_signers is not None  # then the lock's signer was checked
    return None if found is None else [
        PullResult(entry.name, entry.version, dest, entry.size, skipped=True, exact=True,
                   format=entry.format, signed_by=entry.signed_by if signed else None)
        for entry, dest in found]


def _lock_path(lockfile: str | Path | None) -> Path:
    from .lockfile import DEFAULT_LOCKFILE

    return Path(DEFAULT_LOCKFILE if lockfile is None else lockfile)


def _size_or_none(value: int | str | None) -> int | None:
    from .config import parse_size

    return None if value is None else parse_size(value, "max_unpacked")


class AsyncRegistry:
    """What ``open_registry`` yields: every operation, awaitable. One event loop; the
    requests of concurrent calls share one budget and one connection pool."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def init(self, package: str, filename: str) -> None:
        """A new package whose pulls save as ``filename``, with no latest version yet
        (AlreadyExists if the package exists)."""
        await self._registry.init(package, filename)

    async def push(self, package: str, version: str, source: str | Path | BinaryIO, *,
                   promote: bool = False, localname: str | None = None,
                   level: int | None = None, skip_existing: bool = False,
                   skip_identical: bool = False) -> PushResult:
        """``source``: a file, a directory (packed as tar+zstd at ``level``), or a binary
        file object read to its end (a new package then needs ``localname``).
        ``skip_existing`` (a cache's rule): a version that exists, or that another push
        is uploading, is left as it is at once (``skipped``; ``same_content`` says whether
        it matched, where that can be told). ``skip_identical``: only a version holding
        the same content is not an error (AlreadyExists otherwise)."""
        return await self._registry.push(
            package, version, source if not isinstance(source, str | Path) else Path(source),
            promote=promote, localname=localname, level=level, skip_existing=skip_existing,
            skip_identical=skip_identical)

    async def push_many(self, items: Iterable[PushRequest], *, promote: bool = False,
                        skip_existing: bool = False, skip_identical: bool = False,
                        level: int | None = None) -> list[PushResult]:
        """Push every item (``PushRequest(package, version, source, localname)``) through
        one budget: packages concurrently, the items of one package in order (with
        ``promote``, the last one pushed is its latest). A version listed twice is
        UsageError before any push; a partial failure raises ``PartialFailure``, whose
        ``results`` hold what was pushed. ``level`` applies to the directories. A
        ``source`` given as a string is a path, as for ``push``."""
        requests = [dataclasses.replace(item, source=Path(item.source)) for item in items]
        return await self._registry.push_many(
            requests, promote=promote, skip_existing=skip_existing,
            skip_identical=skip_identical, level=level)

    async def pull(self, package: str, version: str | None = None, *,
                   outdir: str | Path | None = None,
                   outfile: str | Path | BinaryIO | None = None, force: bool = False,
                   raw: bool = False, fallback: Sequence[str] = (),
                   max_unpacked: int | str | None = None) -> PullResult:
        """``version`` None (or "latest"): the latest. A directory package is extracted
        to ``outdir/NAME`` (or ``outfile``) unless ``raw``, never past its recorded
        tree_size (without one: ``max_unpacked`` bytes, e.g. "20GiB", by default 64
        times its compressed size and at least 8 GiB). ``outfile`` may be a binary
        file object: the bytes are written to it in order and checked after the last one.
        ``fallback``: prefixes whose newest version is pulled when ``version`` does not
        exist (``PullResult.exact`` says which happened). ``PullResult.warnings`` names
        local edits that replacing a pulled tree discarded."""
        from .names import check_version
        from .results import PullRequest

        request = PullRequest(package, None if version is None else check_version(version))
        target = Path(outfile) if isinstance(outfile, str | Path) else outfile
        return await self._registry.pull(
            request, outdir=None if outdir is None else Path(outdir), force=force,
            outfile=target, raw=raw, fallback=tuple(fallback),
            max_unpacked=_size_or_none(max_unpacked))

    async def pull_many(self, items: Iterable[str], *, outdir: str | Path | None = None,
                        force: bool = False,
                        max_unpacked: int | str | None = None) -> list[PullResult]:
        """Items are ``PKG`` or ``PKG==VERSION``. A partial failure raises
        ``PartialFailure``, whose ``results`` hold what was pulled. ``max_unpacked``
        as for ``pull``."""
        from .results import PullRequest

        requests = [PullRequest.parse(item) for item in items]
        return await self._registry.pull_many(
            requests, outdir=None if outdir is None else Path(outdir), force=force,
            max_unpacked=_size_or_none(max_unpacked))

    async def pull_locked(self, lockfile: str | Path | Lock | None = None, *,
                          outdir: str | Path | None = None, force: bool = False,
                          other_registry: bool = False,
                          max_unpacked: int | str | None = None) -> list[PullResult]:
        """Pull exactly what the lock file says (a path, by default ``tychoreg.lock``,
        or a ``lockfile.Lock`` already read), with no tycho.json request: a current
        local copy costs no request, any other one GET, checked against the locked
        SHA-256 (size and ETag for tycho-station versions).
        A lock resolved against another registry is a UsageError unless
        ``other_registry``; a partial failure raises ``PartialFailure`` as pull_many."""
        from .lockfile import DEFAULT_LOCKFILE, Lock, read

        lock = lockfile if isinstance(lockfile, Lock) else \
            read(Path(DEFAULT_LOCKFILE if lockfile is None else lockfile))
        return await self._registry.pull_locked(
            lock, outdir=None if outdir is None else Path(outdir), force=force,
            other_registry=other_registry, max_unpacked=_size_or_none(max_unpacked))

    async def sign(self, package: str, version: str) -> SignResult:
        """Add a signature (the registry's signing key: ``signing_key``) to a complete
        version, its stored bytes checked against its record first; another signer's
        signature is kept beside it. UsageError without a key."""
        return await self._registry.sign(package, version)

    async def delete(self, package: str, *versions: str, force: bool = False,
                     dry_run: bool = False, everything: bool = False) -> DeleteResult:
        """Delete versions, all or none (the latest only with ``force``); with
        ``everything``, the whole package."""
        return await self._registry.delete(package, versions, force=force, dry_run=dry_run,
                                           everything=everything)

    async def prune(self, package: str, *, keep: int, older_than: str | float | None = None,
                    dry_run: bool = False) -> PruneResult:
        """Keep the ``keep`` most recently pushed versions and latest; delete the rest
        older than ``older_than`` (seconds, or an age such as "30d")."""
        from .retention import parse_age

        age = parse_age(older_than) if isinstance(older_than, str) else older_than
        return await self._registry.prune(package, keep=keep, older_than=age,
                                          dry_run=dry_run)

    async def show(self, package: str, version: str | None = None) -> ShowResult:
        return await self._registry.show(package, version)

    async def versions(self, package: str) -> list[VersionInfo]:
        return await self._registry.list_versions(package)

    async def packages(self) -> list[PackageSummary]:
        return await self._registry.list_packages()

    async def exists(self, package: str, version: str) -> bool:
        return await self._registry.exists(package, version)

    async def promote(self, package: str, version: str) -> None:
        await self._registry.promote(package, version)

    async def verify(self, package: str, version: str | None = None, *,
                     repair: bool = False) -> VerifyResult:
        from .results import PullRequest

        request = PullRequest(package, version)
        return await self._registry.verify(request, repair=repair)

    async def probe(self) -> ProbeResult:
        """Whether the store honours conditional writes (If-None-Match, If-Match), found
        by writing and removing a probe object under the registry root."""
        return await self._registry.probe()

    async def lock(self, items: Iterable[str], *, lockfile: str | Path | None = None,
                   require_sha256: bool = False) -> LockResult:
        """Resolve ``items`` (``PKG``: its latest now, or ``PKG==VERSION``) and write the
        lock file (default ``tychoreg.lock`` in the current directory) atomically; a
        failed item raises ``PartialFailure`` and writes nothing. ``require_sha256``:
        refuse versions pushed by tycho-station (locked by size and ETag alone)."""
        from .results import LockResult, PullRequest

        requests = [PullRequest.parse(item) for item in items]
        if not requests:
            from .errors import UsageError

            raise UsageError("name at least one package to lock")
        path = _lock_path(lockfile)
        lock = await self._registry.lock(requests, require_sha256=require_sha256)
        return LockResult(path, lock, await self._registry.write_lock(path, lock))

    async def lock_check(self, lockfile: str | Path | None = None, *, latest: bool = False,
                         other_registry: bool = False) -> LockCheck:
        """Every locked version against the registry (``LockCheck.exit_code`` 1 when one
        is deleted or changed, or with ``latest``, when a package's latest moved on).
        A lock resolved against another registry is ``UsageError`` unless
        ``other_registry``; an unusable lock file is ``LockfileError``."""
        from .lockfile import read

        lock = read(_lock_path(lockfile))
        return await self._registry.lock_check(lock, latest=latest,
                                               other_registry=other_registry)

    async def lock_update(self, lockfile: str | Path | None = None,
                          packages: Iterable[str] = (), *,
                          require_sha256: bool = False) -> LockResult:
        """Re-resolve ``packages`` (all when none) to their latest and rewrite the lock
        file (``LockResult.changes``: old -> new per package)."""
        from .lockfile import read
        from .names import check_package
        from .results import LockResult

        path = _lock_path(lockfile)
        names = [check_package(name) for name in packages]
        lock, changes = await self._registry.lock_update(read(path), names,
                                                         require_sha256=require_sha256)
        return LockResult(path, lock, await self._registry.write_lock(path, lock),
                          tuple(changes))


@asynccontextmanager
async def open_registry(*, registry: str | None = None, config: str | None = None,
                        endpoint_url: str | None = None, outdir: str | Path | None = None,
                        concurrency: int | None = None, part_size: int | str | None = None,
                        progress: bool | ProgressSink = False,
                        signing_key: str | Path | None = None,
                        allowed_signers: str | Path | None = None,
                        from_environment: bool = False) -> AsyncIterator[AsyncRegistry]:
    """``async with open_registry(registry="s3://bucket/prefix") as reg: await reg.push(...)``.
    ``signing_key``: the SSH key every push signs with; ``allowed_signers``: the
    ssh-keygen allowed_signers file every pull and verify requires a signature from.
    Unknown keywords are a TypeError; settings errors are ``ConfigError``."""
    settings = resolve_settings(registry=registry, config=config, endpoint_url=endpoint_url,
                                outdir=outdir, concurrency=concurrency, part_size=part_size,
                                signing_key=signing_key, allowed_signers=allowed_signers,
                                from_environment=from_environment)
    liveness = None
    if from_environment:
        import os

        from .lifecycle import Liveness

        liveness = Liveness.from_environment(os.environ)
    if progress is True:  # bars on stderr (a plain log when it is not a terminal)
        from .progress import make_progress

        with make_progress(None, False, "moved") as sink:
            async with open_settings(settings, sink, liveness=liveness) as reg:
                yield reg
        return
    async with open_settings(settings, None if progress is False else progress,
                             liveness=liveness) as reg:
        yield reg


class Client:
    """The same operations, blocking. It keeps one event loop (on a thread of its own)
    and one connection pool for its lifetime, so many calls reuse connections, and it
    works from code that already runs an event loop (a notebook). A Client may be shared
    between threads: every call runs on its loop, and concurrent calls share its budget.
    Close it (``with Client(...) as client:`` or ``client.close()``)."""

    def __init__(self, *, registry: str | None = None, config: str | None = None,
                 endpoint_url: str | None = None, outdir: str | Path | None = None,
                 concurrency: int | None = None, part_size: int | str | None = None,
                 progress: bool | ProgressSink = False,
                 signing_key: str | Path | None = None,
                 allowed_signers: str | Path | None = None,
                 from_environment: bool = False) -> None:
        from anyio.from_thread import start_blocking_portal

        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            cm = open_registry(registry=registry, config=config, endpoint_url=endpoint_url,
                               outdir=outdir, concurrency=concurrency, part_size=part_size,
                               progress=progress, signing_key=signing_key,
                               allowed_signers=allowed_signers,
                               from_environment=from_environment)
            self._registry_cm = self._portal.wrap_async_context_manager(cm)
            self._registry = self._registry_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._closed = False

    @classmethod
    def from_environment(cls, **settings: Any) -> Client:
        """Resolve as the CLI does: options, ``TYCHOREG_*``, ./.tychoreg.json, defaults."""
        return cls(from_environment=True, **settings)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._registry_cm.__exit__(None, None, None)
            finally:
                self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError("the Client is closed")
        method = getattr(self._registry, name)
        return self._portal.call(lambda: method(*args, **kwargs))

    def init(self, package: str, filename: str) -> None:
        self._call("init", package, filename)

    def push(self, package: str, version: str, source: str | Path | BinaryIO, *,
             promote: bool = False, localname: str | None = None, level: int | None = None,
             skip_existing: bool = False, skip_identical: bool = False) -> PushResult:
        return self._call("push", package, version, source, promote=promote,
                          localname=localname, level=level, skip_existing=skip_existing,
                          skip_identical=skip_identical)

    def push_many(self, items: Iterable[PushRequest], *, promote: bool = False,
                  skip_existing: bool = False, skip_identical: bool = False,
                  level: int | None = None) -> list[PushResult]:
        return self._call("push_many", list(items), promote=promote,
                          skip_existing=skip_existing, skip_identical=skip_identical,
                          level=level)

    def pull(self, package: str, version: str | None = None, *,
             outdir: str | Path | None = None, outfile: str | Path | BinaryIO | None = None,
             force: bool = False, raw: bool = False,
             fallback: Sequence[str] = (),
             max_unpacked: int | str | None = None) -> PullResult:
        return self._call("pull", package, version, outdir=outdir, outfile=outfile,
                          force=force, raw=raw, fallback=fallback, max_unpacked=max_unpacked)

    def pull_many(self, items: Iterable[str], *, outdir: str | Path | None = None,
                  force: bool = False,
                  max_unpacked: int | str | None = None) -> list[PullResult]:
        return self._call("pull_many", list(items), outdir=outdir, force=force,
                          max_unpacked=max_unpacked)

    def pull_locked(self, lockfile: str | Path | Lock | None = None, *,
                    outdir: str | Path | None = None, force: bool = False,
                    other_registry: bool = False,
                    max_unpacked: int | str | None = None) -> list[PullResult]:
        return self._call("pull_locked", lockfile, outdir=outdir, force=force,
                          other_registry=other_registry, max_unpacked=max_unpacked)

    def sign(self, package: str, version: str) -> SignResult:
        return self._call("sign", package, version)

    def delete(self, package: str, *versions: str, force: bool = False,
               dry_run: bool = False, everything: bool = False) -> DeleteResult:
        return self._call("delete", package, *versions, force=force, dry_run=dry_run,
                          everything=everything)

    def prune(self, package: str, *, keep: int, older_than: str | float | None = None,
              dry_run: bool = False) -> PruneResult:
        return self._call("prune", package, keep=keep, older_than=older_than,
                          dry_run=dry_run)

    def show(self, package: str, version: str | None = None) -> ShowResult:
        return self._call("show", package, version)

    def versions(self, package: str) -> list[VersionInfo]:
        return self._call("versions", package)

    def packages(self) -> list[PackageSummary]:
        return self._call("packages")

    def exists(self, package: str, version: str) -> bool:
        return bool(self._call("exists", package, version))

    def promote(self, package: str, version: str) -> None:
        self._call("promote", package, version)

    def verify(self, package: str, version: str | None = None, *,
               repair: bool = False) -> VerifyResult:
        return self._call("verify", package, version, repair=repair)

    def probe(self) -> ProbeResult:
        return self._call("probe")

    def lock(self, items: Iterable[str], *, lockfile: str | Path | None = None,
             require_sha256: bool = False) -> LockResult:
        return self._call("lock", list(items), lockfile=lockfile,
                          require_sha256=require_sha256)

    def lock_check(self, lockfile: str | Path | None = None, *, latest: bool = False,
                   other_registry: bool = False) -> LockCheck:
        return self._call("lock_check", lockfile, latest=latest,
                          other_registry=other_registry)

    def lock_update(self, lockfile: str | Path | None = None, packages: Iterable[str] = (),
                    *, require_sha256: bool = False) -> LockResult:
        return self._call("lock_update", lockfile, list(packages),
                          require_sha256=require_sha256)
