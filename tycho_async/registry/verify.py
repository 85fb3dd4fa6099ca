"""verify: a version downloaded into a scratch directory, checked against its record
(else as layout's policy says), and deleted; with ``repair``, what a crash left of it
finished by publish's ``repair`` (through its ``complete`` and ``clear``).
"""

from __future__ import annotations

from ..names import check_package
from ..results import PullRequest, VerifyResult
from .catalog import Context, resolve
from .publish import repair as finish


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
        record = await catalog.record(package, version, meta, authoritative=True)
        return await catalog.check(self.ctx.fs, package, version, record)
