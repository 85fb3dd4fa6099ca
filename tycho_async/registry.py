"""The registry rules: packages, versions, tycho.json, latest, and what to move where.

Layout (shared with tycho-station, which must keep working on the same bucket)::

    PKG/tycho.json                {"localname": ..., "latest": ...,
                                   "tychoreg": {"records": {VERSION: {"sha256", "size"}}}}
                                  written with indent=2; tycho-station keeps unknown keys
    PKG/tycho_VERSION.pkg         the bytes, exactly as pushed
    PKG/tycho_VERSION.meta.json   ours: the authoritative record {"sha256", "size",
                                  "pushed_at", "tool"}; it does not end in .pkg, so
                                  tycho-station never sees it

Published versions are immutable: they are created with If-None-Match. tycho.json is
rewritten with If-Match on the ETag read, and re-read and retried when another client
won the race, so no update is lost and every key we do not own survives. The copy of the
record in tycho.json saves every pull a request.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from . import __version__
from .errors import (
    AlreadyExists,
    NotFound,
    NothingToPull,
    PartialFailure,
    PreconditionFailed,
    TransferError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
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
from .transfer.engine import plain_md5
from .transfer.groups import task_group

META_ATTEMPTS = 20
RECORDS_KEY = "tychoreg"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def meta_key(package: str) -> str:
    return f"{package}/tycho.json"


def version_key(package: str, version: str) -> str:
    return f"{package}/tycho_{version}.pkg"


def record_key(package: str, version: str) -> str:
    return f"{package}/tycho_{version}.meta.json"


def etag_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".etag")


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


@dataclass(frozen=True)
class PullRequest:
    package: str
    version: str | None = None  # None: latest

    @classmethod
    def parse(cls, item: str) -> PullRequest:
        """``PKG`` or ``PKG==VERSION``."""
        package, sep, version = item.strip().partition("==")
        check_package(package)
        if sep:
            check_version(version)
            return cls(package, version)
        return cls(package)

    def __str__(self) -> str:
        return f"{self.package}=={self.version}" if self.version else self.package


def _parse_meta(package: str, data: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json is not valid JSON") from None
    if not isinstance(meta, dict):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json is not a JSON object")
    latest = meta.get("latest")
    if latest is not None and not isinstance(latest, str):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json 'latest' is not a string")
    if "localname" in meta and not isinstance(meta["localname"], str):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json 'localname' is not a string")
    return meta


def _records_in(meta: dict[str, Any], *, create: bool = False) -> dict[str, Any]:
    """tycho.json's copy of the checksum records: {"tychoreg": {"records": {VERSION: ...}}}.
    A value of the wrong type reads as no records (and is replaced when writing)."""
    section = meta.get(RECORDS_KEY)
    if not isinstance(section, dict):
        section = {}
        if create:
            meta[RECORDS_KEY] = section
    records = section.get("records")
    if not isinstance(records, dict):
        records = {}
        if create:
            section["records"] = records
    return records


def _parse_record(package: str, version: str, record: object) -> Expected:
    sha256 = record.get("sha256") if isinstance(record, dict) else None
    size = record.get("size") if isinstance(record, dict) else None
    if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256) and isinstance(size, int)
            and not isinstance(size, bool)):
        raise UnsafeRemoteData(f"{package} {version}: its checksum record is malformed")
    return Expected(size, sha256=sha256)


def _dump_meta(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, indent=2).encode("utf-8")


def _write_sidecar(path: Path, etag: str) -> None:
    """Write FILE.etag atomically, in tycho-station's format (the ETag, no newline)."""
    sidecar = etag_sidecar(path)
    temp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    temp.write_text(etag, encoding="utf-8")
    os.replace(temp, sidecar)


def _is_current(path: Path, info: ObjectInfo) -> bool:
    """tycho-station's rule: the sidecar holds the remote ETag and the size matches."""
    try:
        return (etag_sidecar(path).read_text(encoding="utf-8") == info.etag
                and path.stat().st_size == info.size)
    except (OSError, UnicodeDecodeError):
        return False


class Registry:
    def __init__(self, engine: Engine, outdir: Path) -> None:
        self.engine = engine
        self.outdir = outdir

    # -- tycho.json ---------------------------------------------------------------------------

    async def read_meta(self, package: str) -> tuple[dict[str, Any], str]:
        try:
            data, etag = await self.engine.get_bytes(meta_key(package))
        except NotFound:
            raise NotFound(f"package {package!r} does not exist (no tycho.json)") from None
        return _parse_meta(package, data), etag

    async def _update_meta(
        self, package: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Apply ``change`` to tycho.json with optimistic concurrency, keeping foreign keys."""
        for attempt in range(META_ATTEMPTS):
            meta, etag = await self.read_meta(package)
            change(meta)
            try:
                await self.engine.put_bytes(meta_key(package), _dump_meta(meta), if_match=etag)
                return meta
            except (PreconditionFailed, NotFound):
                await anyio.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))
        raise TychoError(f"package {package!r}: tycho.json kept changing; try again")

    async def _create_meta(self, package: str, meta: dict[str, Any]) -> bool:
        """Create tycho.json; False when it exists already."""
        try:
            await self.engine.put_bytes(meta_key(package), _dump_meta(meta), if_none_match=True)
        except PreconditionFailed:
            return False
        return True

    # -- commands -------------------------------------------------------------------------------

    async def init(self, package: str, filename: str) -> None:
        check_package(package)
        check_localname_arg(filename)
        if not await self._create_meta(package, {"localname": filename, "latest": None}):
            raise AlreadyExists(f"package {package!r} already exists")

    async def exists(self, package: str, version: str) -> bool:
        check_package(package)
        check_version(version)
        return await self.engine.head(version_key(package, version)) is not None

    async def push(self, package: str, version: str, path: Path, *, promote: bool) -> PushResult:
        check_package(package)
        check_version(version)
        if not await anyio.Path(path).is_file():
            raise UsageError(f"{path} is not a readable file")
        check_localname_arg(path.name)
        key = version_key(package, version)
        if await self.engine.head(key) is not None:
            raise AlreadyExists(f"{package} {version} already exists; published versions "
                                "are immutable, push a new version")
        try:
            await self.read_meta(package)
            has_meta = True
        except NotFound:
            has_meta = False
        try:
            result = await self.engine.upload_file(path, key, label=f"{package} {version}")
        except PreconditionFailed:
            raise AlreadyExists(f"{package} {version} already exists (pushed by another "
                                "client meanwhile)") from None
        entry = {"sha256": result.sha256, "size": result.size}
        record = {**entry, "tool": f"tychoreg {__version__}",
                  "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        await self.engine.put_bytes(record_key(package, version),
                                    json.dumps(record, indent=2).encode())

        def publish(meta: dict[str, Any]) -> None:
            """Copy the record where every pull reads anyway; promote if asked."""
            _records_in(meta, create=True)[version] = entry
            if promote:
                meta["latest"] = version

        initialized = False
        if not has_meta:
            fresh: dict[str, Any] = {"localname": path.name, "latest": None}
            publish(fresh)
            initialized = await self._create_meta(package, fresh)
        if not initialized:
            await self._update_meta(package, publish)
        return PushResult(package, version, result.size, result.sha256, initialized, promote)

    async def promote(self, package: str, version: str) -> None:
        check_package(package)
        check_version(version)
        if await self.engine.head(version_key(package, version)) is None:
            raise NotFound(f"{package} {version} does not exist; nothing to promote")

        def set_latest(meta: dict[str, Any]) -> None:
            meta["latest"] = version

        await self._update_meta(package, set_latest)

    async def list_packages(self) -> list[PackageSummary]:
        names = [n for n in await self.engine.list_dirs("") if is_valid_segment(n)]
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

    async def _record(self, package: str, version: str, meta: dict[str, Any], *,
                      authoritative: bool = False) -> Expected | None:
        """What the pushed bytes were: the copy of the record in tycho.json (no request),
        else the record object, else None (a version pushed by tycho-station).

        A package whose tycho.json has no section of ours was never pushed to by tychoreg,
        so a pull does not look for a record object (one request a package saved); only
        ``authoritative`` lookups (verify) always do."""
        copy = _records_in(meta).get(version)
        if copy is not None:
            return _parse_record(package, version, copy)
        if RECORDS_KEY not in meta and not authoritative:
            return None
        try:
            data, _ = await self.engine.get_bytes(record_key(package, version))
        except NotFound:
            return None
        try:
            record = json.loads(data)
        except ValueError:
            raise UnsafeRemoteData(f"{package} {version}: its checksum record is unreadable") \
                from None
        return _parse_record(package, version, record)

    async def _version(self, request: PullRequest) -> tuple[str, dict[str, Any]]:
        """The version a request names (its latest when it names none) and tycho.json."""
        package = check_package(request.package)
        meta, _ = await self.read_meta(package)
        version = request.version or meta.get("latest")
        if version is None:
            raise NothingToPull(f"package {package!r} has no latest version; promote one "
                                "or pass --version")
        if not is_valid_segment(version):
            raise UnsafeRemoteData(f"package {package!r}: tycho.json names an invalid latest "
                                   f"version {version!r}")
        return version, meta

    async def verify(self, request: PullRequest) -> VerifyResult:
        """Download a version into a scratch directory, check it, and delete it."""
        version, meta = await self._version(request)
        expected = await self._record(request.package, version, meta, authoritative=True)
        scratch = await anyio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix="tychoreg-verify-"))
        try:
            info, sha256 = await self._download(request.package, version, Path(scratch) / "o",
                                                known=None, expected=expected)
        finally:
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)
        checked = ("sha256" if expected else
                   "size and md5" if plain_md5(info.etag) else "size")
        return VerifyResult(request.package, version, info.size, sha256, checked)

    async def _download(
        self, package: str, version: str, dest: Path, *, known: ObjectInfo | None,
        expected: Expected | Callable[[], Awaitable[Expected | None]] | None,
    ) -> tuple[ObjectInfo, str]:
        try:
            return await self.engine.download(version_key(package, version), dest,
                                              known=known, expected=expected,
                                              label=f"{package} {version}")
        except NotFound:
            raise NotFound(f"{package} {version} does not exist") from None

    async def pull(
        self, request: PullRequest, *, force: bool = False, outfile: Path | None = None,
        claim: Callable[[Path], None] | None = None,
    ) -> PullResult:
        """Download one version; ``claim`` lets a batch refuse two items with one target.

        Only where a local copy with its sidecar may already be current is the object
        asked for with a HEAD first; otherwise its first GET tells size and ETag."""
        package = request.package
        version, meta = await self._version(request)
        dest = outfile if outfile is not None else \
            self.outdir / check_remote_localname(package, meta.get("localname"))
        if claim is not None:
            claim(dest)
        known = None
        if not force and await anyio.Path(etag_sidecar(dest)).exists():
            known = await self.engine.head(version_key(package, version))
            if known is None:
                raise NotFound(f"{package} {version} does not exist")
            if _is_current(dest, known):
                return PullResult(package, version, dest, known.size, skipped=True)
        try:
            await anyio.to_thread.run_sync(self._prepare_destination, dest)
        except OSError as exc:
            raise TransferError(f"cannot write {dest}: {exc.strerror or exc}") from exc
        info, _ = await self._download(package, version, dest, known=known,
                                       expected=lambda: self._record(package, version, meta))
        try:
            await anyio.to_thread.run_sync(_write_sidecar, dest, info.etag)
        except OSError as exc:
            raise TransferError(f"cannot write {etag_sidecar(dest)}: {exc.strerror or exc}") \
                from exc
        return PullResult(package, version, dest, info.size, skipped=False)

    @staticmethod
    def _prepare_destination(dest: Path) -> None:
        """Drop the old sidecar first: a file whose sidecar is gone is never taken as current,
        whatever happens to this process before the new one is written."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():
            raise IsADirectoryError(21, "it is a directory", str(dest))
        etag_sidecar(dest).unlink(missing_ok=True)

    async def pull_many(
        self, requests: Sequence[PullRequest], *, force: bool = False
    ) -> list[PullResult]:
        """Pull every item concurrently (an item listed twice, once); report every failure
        together at the end."""
        requests = list(dict.fromkeys(requests))
        results: dict[int, PullResult] = {}
        failures: list[tuple[str, TychoError]] = []
        claimed: dict[Path, str] = {}

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

        async with task_group() as tg:
            for index, request in enumerate(requests):
                tg.start_soon(one, index, request)
        if failures:
            done = len(results)
            raise PartialFailure(
                f"{len(failures)} of {len(requests)} packages failed ({done} pulled)", failures
            )
        return [results[i] for i in range(len(requests))]

