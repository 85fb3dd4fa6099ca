"""Which versions a fallback restores and a prune keeps: pure rules over a listing.

"Most recently pushed" is the object's Last-Modified from the listing (the file's mtime on
the local backend), ties broken by natural version order (the higher version is the
newer); ``pull --fallback`` and ``prune`` share that one order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from .errors import UsageError
from .names import version_key

_AGE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Pushed:
    """A version as a listing shows it."""

    version: str
    modified: float  # seconds since the epoch
    size: int


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` (or a sum: ``1d12h``) -> seconds."""
    cleaned = text.strip().lower()
    parts = _AGE.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned.replace(" ", ""):
        raise UsageError(f"--older-than {text!r}: write an age such as 30d, 12h or 2w "
                         "(s, m, h, d, w)")
    return float(sum(int(number) * _UNITS[unit] for number, unit in parts))


def newest_first(versions: Iterable[Pushed]) -> list[Pushed]:
    """Most recently pushed first; the same second: the higher version first."""
    return sorted(versions, key=lambda p: (p.modified, version_key(p.version)), reverse=True)


def fallback_order(versions: Iterable[Pushed], prefixes: Sequence[str]
                   ) -> Iterator[tuple[str, str]]:
    """Candidates in the order a fallback tries them: for each prefix in turn, its
    versions newest first, as (version, prefix)."""
    ordered = newest_first(versions)
    for prefix in prefixes:
        for pushed in ordered:
            if pushed.version.startswith(prefix):
                yield pushed.version, prefix


def pick_fallback(versions: Iterable[Pushed], prefixes: Sequence[str]) -> tuple[str, str] | None:
    """The newest version starting with the first prefix that has one: (version, prefix)."""
    return next(fallback_order(versions, prefixes), None)


@dataclass(frozen=True)
class PrunePlan:
    keep: list[Pushed]
    delete: list[Pushed]


def plan_prune(versions: Iterable[Pushed], *, keep: int, latest: str | None,
               older_than: float | None, now: float) -> PrunePlan:
    """Keep the ``keep`` newest and ``latest``; of the rest, delete those older than
    ``older_than`` seconds (all of them when it is None)."""
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    ordered = newest_first(versions)
    kept: list[Pushed] = []
    deleted: list[Pushed] = []
    for index, pushed in enumerate(ordered):
        young = older_than is not None and now - pushed.modified < older_than
        if index < keep or pushed.version == latest or young:
            kept.append(pushed)
        else:
            deleted.append(pushed)
    return PrunePlan(kept, deleted)
