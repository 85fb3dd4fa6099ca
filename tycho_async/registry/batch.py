"""Pushing a list in one process: the packages concurrently, the items of one package one
after another in list order, every failure reported together at the end."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio

from ..errors import PartialFailure, TychoError, UsageError
from ..results import PushRequest, PushResult
from ..transfer.groups import task_group
from ..units import plural
from .catalog import Context


class PushOne(Protocol):
    """How push_many pushes one item: the composition's ``push`` (so that whatever wraps
    the registry's pushes sees every item of a list too)."""

    async def __call__(self, package: str, version: str, source: Path | BinaryIO, *,
                       promote: bool, localname: str | None = None, level: int | None = None,
                       skip_existing: bool = False,
                       skip_identical: bool = False) -> PushResult: ...


def by_package(requests: Sequence[PushRequest]) -> list[list[int]]:
    """The items' indexes grouped by package, packages in order of first appearance and
    items in list order; UsageError for a version listed twice (before any push)."""
    groups: dict[str, list[int]] = {}
    seen: set[tuple[str, str]] = set()
    for index, request in enumerate(requests):
        if (request.package, request.version) in seen:
            raise UsageError(f"{request.package} {request.version} is listed twice")
        seen.add((request.package, request.version))
        groups.setdefault(request.package, []).append(index)
    return list(groups.values())


class PushMany:
    """One list of pushes through one engine and its one request budget."""

    def __init__(self, ctx: Context, each: PushOne) -> None:
        self.ctx = ctx
        self.each = each

    async def run(self, requests: Sequence[PushRequest], *, promote: bool = False,
                  skip_existing: bool = False, skip_identical: bool = False,
                  level: int | None = None) -> list[PushResult]:
        """Push every item; a failing item never stops the others, and every failure is
        raised together at the end (``PartialFailure``: its ``results`` hold what was
        pushed, the exit code is the worst). Items of one package go one after another,
        so its tycho.json is not fought over and, with ``promote``, the last item of a
        package that was pushed is its latest, whatever the timing. At most the engine's
        concurrency of packages are pushed at once. ``level`` applies to directories
        (files are uploaded as they are). The signing key, if any, is loaded first: a bad
        key or passphrase fails the list before anything is pushed, not item by item."""
        if skip_existing and skip_identical:
            raise UsageError("--skip-existing and --skip-identical exclude each other")
        groups = by_package(requests)
        if self.ctx.signer is not None:
            self.ctx.signer.key()
        results: dict[int, PushResult] = {}
        failures: dict[int, TychoError] = {}

        async def package(indexes: list[int]) -> None:
            for index in indexes:
                request = requests[index]
                try:
                    tree = level is not None and await anyio.Path(request.source).is_dir()
                    results[index] = await self.each(
                        request.package, request.version, request.source, promote=promote,
                        localname=request.localname, level=level if tree else None,
                        skip_existing=skip_existing, skip_identical=skip_identical)
                except TychoError as exc:
                    failures[index] = exc

        queue = iter(groups)

        async def worker() -> None:
            for indexes in queue:
                await package(indexes)

        async with task_group() as tg:
            for _ in range(min(len(groups), self.ctx.engine.settings.concurrency)):
                tg.start_soon(worker)
        if failures:
            raise PartialFailure(
                f"{len(failures)} of {plural(len(requests), 'item')} failed "
                f"({len(results)} pushed)",
                [(str(requests[i]), failures[i]) for i in sorted(failures)],
                [results[i] for i in sorted(results)])
        return [results[i] for i in range(len(requests))]
