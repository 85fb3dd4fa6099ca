"""Pulling: a request resolved to what to fetch (the version, by fallback if asked; its
record; the package's localname), then fetched to the destination that fits it. The
destination kind is chosen by one resolver chain, as s3transfer chooses its output
manager: the first of ``DESTINATIONS`` whose ``fits`` says yes takes the pull
(standard output, a directory package's tree, a FIFO or character device, a regular
file). And pull_many: its pool of workers, the tycho.json wave, and the claims that
keep two items from writing one path. ``outdir`` is an argument of each pull.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio
import anyio.to_thread

from .. import retention
from ..errors import (
    IncompleteVersion,
    NotFound,
    OutputClosed,
    PartialFailure,
    SignatureError,
    TransferError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
from ..layout import (
    FILE,
    PROOF,
    TAR_ZSTD,
    PackageMeta,
    Record,
    etag_sidecar,
    is_current,
    version_key,
)
from ..localfs import Target, fits, is_terminal, same_as_stdout
from ..localio import failure
from ..names import check_package, check_remote_localname
from ..results import PullRequest, PullResult
from ..storage import ObjectInfo
from ..transfer import Expected
from ..transfer.engine import ExpectedSource
from ..transfer.groups import task_group
from ..units import plural
from .catalog import (
    WAVE_PER_SLOT,
    Context,
    MetaWave,
    check_localname,
    expects,
    resolve,
    tree_name,
)

STDOUT = 1
OUTFILE_HINT = "; pull it with --outfile PATH"  # what a refused localname leaves open

Claim = Callable[[Path], Awaitable[None]]


class PullOne(Protocol):
    """How pull_many pulls one item: ``Pull.pull``, or the composition's own ``pull``
    (so that whatever wraps the registry's pulls sees every item of a batch too)."""

    async def __call__(self, request: PullRequest, *, outdir: Path, force: bool,
                       claim: Claim | None, max_unpacked: int | None,
                       meta: PackageMeta | None) -> PullResult: ...


def _flush(stream: BinaryIO) -> None:
    try:
        stream.flush()
    except BrokenPipeError:
        raise OutputClosed("the output was closed") from None
    except OSError as exc:
        raise failure(exc, "write the output") from exc


def _binary_to_terminal(package: str, version: str, what: str) -> UsageError:
    return UsageError(f"{package} {version} is {what}, and standard output is a terminal; "
                      "refusing to write it there: redirect it (> FILE, | CMD), or pass "
                      "--raw to write it anyway")


class Wanted:
    """One pull, resolved: the version and its record, the package's localname, and
    where and how it goes. ``target`` looks at a local file destination once.
    ``pinned``: the object as a lock file describes it, so a local copy is found current
    without a HEAD. (A plain class: a dataclass costs about a millisecond at import, on
    every pull's start-up.)"""

    __slots__ = (
        "_target",
        "claim",
        "exact",
        "expected",
        "fmt",
        "force",
        "localname",
        "max_unpacked",
        "outdir",
        "outfile",
        "package",
        "pinned",
        "raw",
        "record",
        "version",
    )

    def __init__(self, package: str, version: str, exact: bool, record: Record | None,
                 expected: ExpectedSource | None, localname: str,
                 outfile: Path | BinaryIO | None, outdir: Path, force: bool, raw: bool,
                 claim: Claim | None, max_unpacked: int | None,
                 pinned: ObjectInfo | None = None) -> None:
        self.package = package
        self.version = version
        self.exact = exact
        self.record = record
        self.expected = expected
        self.localname = localname
        self.outfile = outfile
        self.outdir = outdir
        self.force = force
        self.raw = raw
        self.claim = claim
        self.max_unpacked = max_unpacked
        self.pinned = pinned
        self.fmt = record.format if record is not None else FILE
        self._target: Target | None = None

    def target(self, ctx: Context) -> Target:
        """The file (or FIFO, or device) a file pull writes, looked at before a byte
        moves: ``OUTDIR/localname`` or ``outfile``, refused where a pull must not write."""
        if self._target is None:
            outfile = self.outfile
            assert outfile is None or isinstance(outfile, Path)
            if outfile is None:
                check_localname(self.package, self.localname, ctx.reserved, OUTFILE_HINT)
            if outfile is not None and outfile.is_dir():
                raise UsageError(f"{outfile} is a directory: --outfile names the file to "
                                 f"write; to save {self.localname} into it, pass --outdir "
                                 f"{outfile}")
            named = self.outdir / self.localname if outfile is None else outfile
            if named.name == PROOF:
                raise UsageError(f"{named} is the name of the proof inside a pulled "
                                 "directory; a file pull never writes one")
            self._target = ctx.fs.target(named, within=self.outdir if outfile is None
                                         else None)
        return self._target


class Destination(ABC):
    """A kind of place a pull writes to: ``fits`` says whether it takes a pull (it may
    look at the file system, and refuse the place: UsageError), ``write`` does it."""

    def __init__(self, op: Pull, want: Wanted) -> None:
        self.op = op
        self.ctx = op.ctx
        self.want = want

    @classmethod
    @abstractmethod
    def fits(cls, want: Wanted, ctx: Context) -> bool: ...

    @abstractmethod
    async def write(self) -> PullResult: ...


class ToStdout(Destination):
    """``--outfile -`` (or the file standard output is), or a binary file object: the
    bytes in order, checked after the last one. Onto a terminal, binary bytes (a
    directory's archive, or a file whose first bytes hold a NUL) are refused before any
    is written, unless ``raw`` or ``force``."""

    @classmethod
    def fits(cls, want: Wanted, ctx: Context) -> bool:
        return want.outfile is not None and (not isinstance(want.outfile, Path) or
                                             str(want.outfile) == "-")

    async def write(self) -> PullResult:
        want, fs = self.want, self.ctx.fs
        package, version, fmt = want.package, want.version, want.fmt
        stream = None if isinstance(want.outfile, Path) else want.outfile
        guard = not (want.raw or want.force) and is_terminal(stream, STDOUT)
        if guard and fmt == TAR_ZSTD:
            raise _binary_to_terminal(package, version, "a directory package's archive")
        refused: list[bool] = []  # decided by the first bytes, kept for any retry

        def sink(data: bytes) -> None:
            if guard and data and not refused:
                refused.append(b"\0" in data)
            if refused and refused[0]:
                raise _binary_to_terminal(package, version, "binary data")
            try:
                if stream is not None:
                    stream.write(data)
                else:
                    fs.write(STDOUT, data, "write to standard output")
            except BrokenPipeError:
                raise OutputClosed("the output was closed") from None
            except OSError as exc:
                raise failure(exc, "write the output") from exc
            except TransferError as exc:
                if isinstance(exc.__cause__, BrokenPipeError):
                    raise OutputClosed("the output was closed") from None
                raise

        info = await self.ctx.catalog.stream(package, version, want.expected, sink)
        if stream is not None:
            await anyio.to_thread.run_sync(_flush, stream)
        return PullResult(package, version, Path("-"), info.size, skipped=False,
                          exact=want.exact, format=fmt)


class ToTree(Destination):
    """A directory package (unless ``raw``): extracted to ``OUTDIR/NAME`` (or
    ``outfile``) by trees.py."""

    @classmethod
    def fits(cls, want: Wanted, ctx: Context) -> bool:
        return want.fmt == TAR_ZSTD and not want.raw

    async def write(self) -> PullResult:
        want = self.want
        package, localname, outfile = want.package, want.localname, want.outfile
        assert outfile is None or isinstance(outfile, Path)
        try:
            if outfile is None:
                check_localname(package, localname, self.ctx.reserved, OUTFILE_HINT)
            name = tree_name(package, localname, " (--raw keeps the archive)")
            if outfile is None:
                check_localname(package, name, self.ctx.reserved, OUTFILE_HINT)
            dest = outfile if outfile is not None else want.outdir / name
            if want.claim is not None:
                await want.claim(dest.absolute())
            from .trees import TreeInstall  # loaded only for directories

            expected = want.expected  # a callable only for tycho-station's files
            assert expected is None or isinstance(expected, Expected)
            return await TreeInstall(self.ctx, want.outdir).run(
                package, want.version, expected, want.record or Record({}), dest,
                force=want.force, exact=want.exact, max_unpacked=want.max_unpacked,
                pinned=want.pinned)
        except (UsageError, UnsafeRemoteData):
            await self.op.must_exist(want)
            raise


class ToLocalFile(Destination):
    """A local path: its folders created (taken back on failure), the path claimed."""

    async def write(self) -> PullResult:
        want, fs = self.want, self.ctx.fs
        target = want.target(self.ctx)
        # A few stats and mkdirs: faster on the event loop than through a worker thread
        # (measured: a thread hop per file cost more CPU in GIL hand-offs than it saved).
        try:
            created = fs.make_dirs(target.real.parent)
            sidecar = etag_sidecar(target.named)
            has_sidecar = target.sidecar and fits(sidecar) and sidecar.exists()
        except (UsageError, UnsafeRemoteData):
            await self.op.must_exist(want)
            raise
        try:
            if want.claim is not None:
                try:
                    await want.claim(target.real)
                except UsageError:
                    await self.op.must_exist(want)
                    raise
            result = await self.transfer(target, has_sidecar)
        except BaseException:
            fs.remove_empty_dirs(created)
            raise
        return dataclasses.replace(result, exact=want.exact, format=want.fmt)

    @abstractmethod
    async def transfer(self, target: Target, has_sidecar: bool) -> PullResult: ...


class ToDevice(ToLocalFile):
    """A FIFO or a character device (or a descriptor's file in /proc): written in
    place, in order, with no sidecar."""

    @classmethod
    def fits(cls, want: Wanted, ctx: Context) -> bool:
        return want.target(ctx).is_stream

    async def transfer(self, target: Target, has_sidecar: bool) -> PullResult:
        want, fs = self.want, self.ctx.fs
        fd = await anyio.to_thread.run_sync(fs.open_stream, target.real,
                                            abandon_on_cancel=True)

        def sink(data: bytes) -> None:
            fs.write(fd, data, "write the download")

        try:
            info = await self.ctx.catalog.stream(want.package, want.version, want.expected,
                                                 sink)
        finally:
            fs.close(fd)
        return PullResult(want.package, want.version, target.named, info.size,
                          skipped=False)


class ToFile(ToLocalFile):
    """A regular file: skipped while its ETag sidecar says it is current (unless
    ``force``), else downloaded to a temp file beside it and renamed into place, the
    sidecar written after."""

    @classmethod
    def fits(cls, want: Wanted, ctx: Context) -> bool:
        return True

    async def transfer(self, target: Target, has_sidecar: bool) -> PullResult:
        want, fs, engine = self.want, self.ctx.fs, self.ctx.engine
        package, version = want.package, want.version
        known = None
        sidecar = etag_sidecar(target.named)
        if has_sidecar:
            if not want.force:
                current = want.pinned  # a lock's object: no HEAD, and one GET if stale
                if current is None:
                    current = known = await engine.head(version_key(package, version))
                if current is None:
                    raise NotFound(f"{package} {version} does not exist")
                if is_current(target.named, current):
                    return PullResult(package, version, target.named, current.size,
                                      skipped=True)
            # Drop the old sidecar first: a file whose sidecar is gone is never taken as
            # current, whatever happens to this process before the new one is written.
            await anyio.to_thread.run_sync(fs.unlink, sidecar)

        def write_sidecar(info: ObjectInfo) -> None:
            if fits(sidecar):  # else (a 251-byte localname or more) never taken as current
                fs.write_in_place(sidecar, info.etag.encode())

        info, _ = await self.ctx.catalog.download(
            package, version, target.real, known=known, expected=expects(want.expected),
            finish=write_sidecar if target.sidecar else None)
        return PullResult(package, version, target.named, info.size, skipped=False)


DESTINATIONS: tuple[type[Destination], ...] = (ToStdout, ToTree, ToDevice, ToFile)


class Pull:
    """Pulls of one registry: resolve a request to what to fetch, then hand it to the
    first destination that fits; pull_many runs many through one pool."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog

    async def pull(
        self, request: PullRequest, *, outdir: Path, force: bool = False,
        outfile: Path | BinaryIO | None = None, raw: bool = False,
        fallback: Sequence[str] = (), claim: Claim | None = None,
        max_unpacked: int | None = None, meta: PackageMeta | None = None,
    ) -> PullResult:
        """Download one version; ``claim`` lets a batch refuse two items with one target,
        ``meta`` hands over the package's tycho.json when the batch has read it already.

        A directory package is extracted to ``outdir/NAME`` (or ``outfile``) unless
        ``raw``, never expanding past its recorded ``tree_size`` (without one: past
        ``max_unpacked``, by default ``default_max_unpacked`` of its size); ``outfile``
        ``-`` (or any path that is the file standard output is) is standard output, and
        a binary file object gets the bytes in order (both checked after the last byte);
        binary bytes are not written to a terminal unless ``raw`` or ``force``.
        ``fallback``: prefixes tried in order, each for its most recently
        pushed version, when the requested version does not exist.

        Only where a local copy may already be current is the object asked for with a
        HEAD first; otherwise its first GET tells size and ETag. A FIFO or character
        device is written in place, in order; anything else that is not a regular file
        is refused before a byte moves, unless the version does not exist (that answer
        comes first: exit 1, whatever the destination)."""
        package = check_package(request.package)
        if meta is None:
            meta, _ = await self.catalog.read_meta(package)
        version, exact = await self._pick(request, meta, fallback)
        record = await self.catalog.raw_record(package, version, meta)
        expected = None if record is None else record.expected(package, version)
        if record is not None and meta.marked and \
                version not in meta.records:  # a push lost every race for tycho.json
            with contextlib.suppress(TychoError):  # best effort: a pull may not write
                await self.catalog.restore_copies(package, {version: record})
        localname = check_remote_localname(package, meta.localname)
        if isinstance(outfile, Path) and same_as_stdout(outfile):
            outfile = Path("-")
        want = Wanted(package, version, exact, record, expected, localname, outfile, outdir,
                      force, raw, claim, max_unpacked)
        signed = None
        if self.ctx.signers is not None:  # before any destination is looked at
            signed = await self.signed(want)
        try:
            kind = next(kind for kind in DESTINATIONS if kind.fits(want, self.ctx))
        except (UsageError, UnsafeRemoteData):
            await self.must_exist(want)
            raise
        result = await kind(self, want).write()
        return result if signed is None else dataclasses.replace(result, signed_by=signed)

    async def signed(self, want: Wanted) -> str:
        """The policy (the allowed signers) applied to a pull: the principal whose
        signature vouches for the version's statement, or SignatureError (a version that
        does not exist is NotFound first)."""
        from .signing import require

        assert self.ctx.signers is not None
        if want.record is None:
            await self.must_exist(want)
        found = await require(self.ctx, self.ctx.signers, want.package, want.version,
                              want.record, want.localname)
        return found.principal

    async def must_exist(self, want: Wanted) -> None:
        """Before refusing a destination, make sure the version exists: a missing version
        is the answer (exit 1), whatever is in the way. A record says it does (no
        request); otherwise one HEAD tells."""
        if want.record is None and \
                await self.ctx.engine.head(version_key(want.package, want.version)) is None:
            await self.catalog.require_root()
            raise NotFound(f"{want.package} {want.version} does not exist") from None

    async def _pick(self, request: PullRequest, meta: PackageMeta,
                    fallback: Sequence[str]) -> tuple[str, bool]:
        """The version to pull and whether it is the one asked for (not a fallback)."""
        if fallback and request.version is None:
            raise UsageError("--fallback needs --version: the exact key to try first")
        if any(not prefix for prefix in fallback):
            raise UsageError("--fallback needs a non-empty prefix")
        version = resolve(request, meta)
        if not fallback or ((await self.catalog.state(request.package, version,
                                                      meta))[0].trusted and
                            await self._allowed(request.package, version, meta)):
            return version, True
        pushed = await self.catalog.pushed(request.package)
        for candidate, _ in retention.fallback_order(
                [p for p in pushed if p.version != version], fallback):
            copy = meta.records.get(candidate)
            if copy is not None:
                trusted = not (copy.pending or copy.deleting)
            else:  # (a cut-short push or deletion is passed over)
                trusted = not meta.marked or \
                    (await self.catalog.state(request.package, candidate, meta))[0].trusted
            if trusted and await self._allowed(request.package, candidate, meta):
                return candidate, False
        raise NotFound(f"{request.package} {version} does not exist, and no complete version "
                       f"starts with {', '.join(repr(p) for p in fallback)}")

    async def _allowed(self, package: str, version: str, meta: PackageMeta) -> bool:
        """Whether a fallback may take the version: always, without a policy; under one,
        only with a valid signature from an allowed signer."""
        if self.ctx.signers is None:
            return True
        from .signing import require

        try:
            await require(self.ctx, self.ctx.signers, package, version,
                          await self.catalog.raw_record(package, version, meta),
                          check_remote_localname(package, meta.localname))
        except (SignatureError, IncompleteVersion, UnsafeRemoteData):
            return False
        return True

    async def pull_many(
        self, requests: Sequence[PullRequest], *, outdir: Path, force: bool = False,
        max_unpacked: int | None = None, each: PullOne | None = None,
        tycho_json: bool = True,
    ) -> list[PullResult]:
        """Pull every item concurrently (an item listed twice, once); report every failure
        together at the end. Two items that would write one path collide only if both
        exist: an item meeting a path claimed by another waits for that one to end, and
        takes the path over if it failed (``tool==1.0 tool==7``, 7 missing: 1.0 is
        pulled, 7 is "does not exist"). ``max_unpacked`` as for ``pull``.

        Every package's tycho.json is read once, however many items name it, in one wave
        ahead of the objects (``MetaWave``): the reads go out at once, at the head of the
        budget's queue, and an item whose tycho.json is in starts its object's GET without
        a round trip of its own. ``each`` pulls one item (by default ``pull``);
        ``tycho_json`` False: no wave, each item gets ``meta`` None (a lock file's items
        need no tycho.json)."""
        with self.ctx.fs.batch():  # the folders written to are looked at once, not per file
            return await self._pull_many(list(dict.fromkeys(requests)), outdir=outdir,
                                         force=force, max_unpacked=max_unpacked,
                                         each=each or self.pull, tycho_json=tycho_json)

    async def _pull_many(self, requests: list[PullRequest], *, outdir: Path, force: bool,
                         max_unpacked: int | None, each: PullOne,
                         tycho_json: bool) -> list[PullResult]:
        results: dict[int, PullResult] = {}
        failures: list[tuple[str, TychoError]] = []
        claimed: dict[Path, tuple[str, anyio.Event]] = {}
        fs = self.ctx.fs
        created = await anyio.to_thread.run_sync(fs.make_dirs, outdir)
        concurrency = self.ctx.engine.settings.concurrency
        wave = MetaWave(self.catalog, [r.package for r in requests],
                        WAVE_PER_SLOT * concurrency) if tycho_json else None

        async def one(index: int, request: PullRequest) -> None:
            ended = anyio.Event()
            mine: list[Path] = []

            async def claim(key: Path) -> None:  # an absolute path
                while key in claimed:  # bounded: each claimer ends once
                    other, other_ended = claimed[key]
                    await other_ended.wait()
                    if key in claimed:  # it succeeded: a real collision
                        raise UsageError(f"{request} and {other} both write {key}")
                claimed[key] = (str(request), ended)
                mine.append(key)

            try:
                meta = await wave.meta(request.package) if wave is not None else None
                results[index] = await each(request, outdir=outdir, force=force,
                                            claim=claim, max_unpacked=max_unpacked,
                                            meta=meta)
            except TychoError as exc:
                failures.append((str(request), exc))
                for key in mine:  # a failed item writes nothing: its paths are free
                    del claimed[key]
            finally:
                if wave is not None:
                    wave.done(request.package)
                ended.set()

        # A fixed pool of workers, not a task per item: memory stays flat in the length of
        # the list, and twice the request budget keeps every slot busy (an item waits on
        # tycho.json before its object).
        queue = iter(enumerate(requests))

        async def worker() -> None:
            for index, request in queue:
                await one(index, request)

        try:
            async with task_group() as tg:
                if wave is not None:
                    wave.start(tg, concurrency)
                for _ in range(min(len(requests), 2 * concurrency)):
                    tg.start_soon(worker)
        finally:
            if not results:
                fs.remove_empty_dirs(created)
        if failures:
            done = len(results)
            raise PartialFailure(
                f"{len(failures)} of {plural(len(requests), 'package')} failed ({done} "
                "pulled)", failures,
                [results[i] for i in sorted(results)])
        return [results[i] for i in range(len(requests))]
