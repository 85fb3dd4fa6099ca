"""verify: a version downloaded into a scratch directory, checked against its record
(else as layout's policy says), and deleted; with ``repair``, what a crash left of it
finished by publish's ``repair`` (through its ``complete`` and ``clear``). Its
signatures are reported always, and required under the allowed signers.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..names import check_package, check_remote_localname
from ..results import PullRequest, VerifyResult
from .catalog import Context, resolve
from .publish import repair as finish

if TYPE_CHECKING:
    from ..layout import PackageMeta, Record
    from ..results import SignatureInfo


class Verify:
    """One verify (or repair) of one version."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self, request: PullRequest, *, repair: bool = False) -> VerifyResult:
        """Download a version into a scratch directory, check it, and delete it. With
        ``repair``, an interrupted push is completed (its object is there: its SHA-256
        is recorded) or cleared (it is not), and a lost copy in tycho.json restored."""
        catalog = self.ctx.catalog
        package = check_package(request.package)
        meta = await catalog.read_meta_or_none(package) if repair and request.version \
            else (await catalog.read_meta(package))[0]
        version = request.version if meta is None and request.version else \
            resolve(request, meta)
        if repair:
            return await finish(self.ctx, package, version, meta)
        record = await catalog.raw_record(package, version, meta, authoritative=True)
        expected = None if record is None else record.expected(package, version)
        signatures, signed_by = await self.signatures(package, version, meta, record)
        result = await catalog.check(self.ctx.fs, package, version, expected)
        return dataclasses.replace(result, signatures=signatures, signed_by=signed_by)

    async def signatures(self, package: str, version: str, meta: PackageMeta | None,
                         record: Record | None
                         ) -> tuple[tuple[SignatureInfo, ...], str | None]:
        """The version's signatures, each checked over its statement (one GET of its
        ``.sig``; the crypto is loaded only when there is one), and under the allowed
        signers the principal that vouches for it, or SignatureError before any byte
        is downloaded."""
        from ..statement import Statement
        from .signing import check, describe, read, require

        signers = self.ctx.signers
        localname = meta.localname if meta is not None else None
        if record is None or localname is None:
            if signers is not None:  # says why: no record (tycho-station's) to sign
                await require(self.ctx, signers, package, version, record, "")
            return (), None
        statement = Statement.of(package, version, check_remote_localname(package, localname),
                                 record)
        found = await read(self.ctx, package, version)
        sig = None if found is None else found[0]
        signed_by = None if signers is None else \
            check(signers, package, version, sig, statement).principal
        return describe(signers, package, version, sig, statement), signed_by
