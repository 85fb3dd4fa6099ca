"""What is there, without moving a byte of any version: exists, list, list-versions,
show, and the probe of whether the store honours conditional writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from typing import Any

import anyio

from .. import retention
from ..errors import NotFound, PreconditionFailed, SignatureError, StoreError, UnsafeRemoteData
from ..layout import LATEST, PackageMeta, Record
from ..names import (
    check_package,
    check_remote_localname,
    check_version,
    is_valid_segment,
    sort_versions,
)
from ..results import (
    PackageSummary,
    ProbeResult,
    PullRequest,
    ShowResult,
    SignatureInfo,
    VersionInfo,
)
from ..transfer.groups import task_group
from .catalog import Context, resolve


def _version_info(pushed: retention.Pushed, record: Record | None, latest: str | None,
                  signed: bool = False) -> VersionInfo:
    """One version as list-versions shows it, by its record (none: tycho-station's,
    read as an empty record is: complete, a file); its state is the record's; ``signed``:
    a ``.sig`` is beside it in the listing."""
    record = record if record is not None else Record({})
    return VersionInfo(pushed.version, pushed.size, record.sha256, record.pushed_at,
                       record.format, latest == pushed.version, record.state,
                       pushed.modified, signed)


class Queries:
    """The read-only questions a user asks of a registry."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog

    async def exists(self, package: str, version: str) -> bool:
        """Whether the version exists and is complete; ``latest`` means the latest, as
        for a pull (no latest set: no)."""
        check_package(package)
        check_version(version)
        if version == LATEST:
            meta = await self.catalog.read_meta_or_none(package)
            if meta is None or meta.latest is None:
                return False
            version = resolve(PullRequest(package, version), meta)
            return (await self.catalog.state(package, version, meta))[0].trusted
        return (await self.catalog.state(package, version))[0].trusted

    async def list_packages(self) -> list[PackageSummary]:
        names = [n for n in await self.ctx.engine.list_dirs("") if is_valid_segment(n)]
        if not names:
            await self.catalog.require_root()
        summaries: dict[str, PackageSummary] = {}

        async def summarize(name: str) -> None:
            try:
                meta, _ = await self.catalog.read_meta(name)
            except NotFound:
                # an emptied folder (SeaweedFS and the local backend keep them) is no package
                if await self.ctx.engine.list_keys(f"{name}/"):
                    summaries[name] = PackageSummary(name, None, None, "no tycho.json")
                return
            except UnsafeRemoteData as exc:
                summaries[name] = PackageSummary(name, None, None, exc.message)
                return
            summaries[name] = PackageSummary(name, meta.latest, meta.localname)

        async with task_group() as tg:
            for name in names:
                tg.start_soon(summarize, name)
        return [summaries[name] for name in sorted(names) if name in summaries]

    async def list_versions(self, package: str) -> list[VersionInfo]:
        """Every version, in natural order, with what tycho.json's copies of the records
        say of it (asked beside the listing: one round trip, no request per version;
        under allowed signers, one GET per signed version names its signer)."""
        infos, meta = await self._versions(package)
        if self.ctx.signers is not None and meta is not None:
            infos = await self._signers_of(package, infos, meta)
        return infos

    async def _versions(self, package: str
                        ) -> tuple[list[VersionInfo], PackageMeta | None]:
        """The versions (as ``list_versions``) and tycho.json (None if there is none)."""
        check_package(package)
        metas: list[PackageMeta] = []
        pushed: list[retention.Pushed] = []
        signed: set[str] = set()

        async def meta() -> None:
            with contextlib.suppress(NotFound):
                metas.append((await self.catalog.read_meta(package))[0])

        async def listing() -> None:
            objects, _, sigs = await self.catalog.scan(package)
            pushed.extend(objects.values())
            signed.update(sigs)

        async with task_group() as tg:
            tg.start_soon(meta)
            tg.start_soon(listing)
        if not metas and not pushed:
            raise NotFound(f"package {package!r} does not exist (no tycho.json)")
        meta_ = metas[0] if metas else None
        copies = meta_.records if meta_ is not None else {}
        latest = meta_.latest if meta_ is not None else None
        by_version = {p.version: p for p in pushed}
        return [_version_info(by_version[v], copies.get(v), latest, v in signed)
                for v in sort_versions(list(by_version))], meta_

    async def _signers_of(self, package: str, infos: list[VersionInfo], meta: PackageMeta
                          ) -> list[VersionInfo]:
        """Under the allowed signers, whom each signed version is signed by (one GET of
        each ``.sig``, concurrently; checked over tycho.json's copy of its record): None
        where no allowed signer vouches for it."""
        from ..statement import Statement
        from .signing import check, read

        signers = self.ctx.signers
        assert signers is not None
        by: dict[str, str] = {}

        async def one(info: VersionInfo) -> None:
            record = meta.records.get(info.version)
            if meta.localname is None or record is None or record.state != "ok":
                return
            found = await read(self.ctx, package, info.version)
            with contextlib.suppress(SignatureError, UnsafeRemoteData):
                statement = Statement.of(package, info.version,
                                         check_remote_localname(package, meta.localname),
                                         record)
                by[info.version] = check(signers, package, info.version,
                                         None if found is None else found[0],
                                         statement).principal

        async with task_group() as tg:
            for info in infos:
                if info.signed:
                    tg.start_soon(one, info)
        return [dataclasses.replace(i, signed_by=by.get(i.version)) for i in infos]

    async def show(self, package: str, version: str | None = None) -> ShowResult:
        """What is known of a package (and of one version): no byte is downloaded."""
        check_package(package)
        if version is not None and version != LATEST:
            check_version(version)
        versions, meta = await self._versions(package)
        latest = meta.latest if meta is not None else None
        result = ShowResult(package, meta.localname if meta is not None else None, latest,
                            len(versions), sum(v.size for v in versions))
        if version is None:
            return result
        name = resolve(PullRequest(package, version), meta)
        info = next((v for v in versions if v.version == name), None)
        record = await self.catalog.raw_record(package, name, meta, authoritative=True)
        if info is None:
            raise NotFound(f"{package} {name} does not exist")
        if info.sha256 is None and record is not None:  # the record object, not a copy
            info = _version_info(retention.Pushed(name, info.modified or 0.0, info.size),
                                 record, latest, info.signed)
        if record is None:
            return dataclasses.replace(result, version=info, tool="tycho-station")
        signatures = await self._signatures(package, name, meta, record) if info.signed \
            else ()
        principal = next((s.principal for s in signatures if s.principal), None)
        return dataclasses.replace(result, version=dataclasses.replace(
            info, signed_by=principal), tool=record.tool, tree_sha256=record.tree_sha256,
            signatures=signatures)

    async def _signatures(self, package: str, version: str, meta: PackageMeta | None,
                          record: Record) -> tuple[SignatureInfo, ...]:
        """A signed version's signatures as ``show`` reports them (one GET): each
        checked over the statement its record makes; none for a version that is not
        complete (its record says what it is)."""
        from ..statement import Statement
        from .signing import describe, read

        localname = meta.localname if meta is not None else None
        if localname is None or record.state != "ok":
            return ()
        found = await read(self.ctx, package, version)
        return describe(self.ctx.signers, package, version,
                        None if found is None else found[0],
                        Statement.of(package, version,
                                     check_remote_localname(package, localname), record))

    async def probe(self) -> ProbeResult:
        """Whether the store honours conditional writes: write a probe object under the
        registry root, try to overwrite it against If-None-Match and a wrong If-Match,
        and remove it whatever happens."""
        key = f".tychoreg-probe-{uuid.uuid4().hex}"
        await self.catalog.require_root()
        await self.ctx.engine.put_bytes(key, b"probe", if_none_match=True)
        try:
            outcomes = []
            kwargs: dict[str, Any]
            for kwargs in ({"if_none_match": True}, {"if_match": '"0000"'}):
                try:
                    await self.ctx.engine.put_bytes(key, b"probe again", **kwargs)
                    outcomes.append(False)
                except PreconditionFailed:
                    outcomes.append(True)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self.ctx.engine.delete(key)
        return ProbeResult(*outcomes)
