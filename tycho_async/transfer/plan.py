"""Part planning: a pure function from a size to the parts that move it, with S3's limits."""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import Part

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MIN_PART = 5 * MiB  # S3: every part but the last
MAX_PART = 5 * GiB
MAX_PARTS = 10_000


@dataclass(frozen=True)
class TransferSettings:
    """Engine tunables. Part bytes held in memory are at most
    ``part_size * parts_in_memory()`` for an upload (40 MiB at the defaults) and, for
    downloads, ``concurrency * chunk_size`` of bodies being written plus
    ``2 * concurrency * small_object`` of small objects held whole (a pull-list works on
    at most twice the budget of items; 64 MiB at the defaults, reached only when every
    item is a 1 MiB object waiting on its record), whatever the size or number of
    files."""

    concurrency: int = 32
    max_ranges: int = 8  # ranged GETs of one object at once; the rest of the budget serves others
    part_size: int = 8 * MiB
    multipart_threshold: int = 8 * MiB
    chunk_size: int = 256 * KiB
    small_object: int = 1 * MiB  # fetched whole into memory: one write, no temp-file hops
    upload_buffer: int = 40 * MiB
    max_attempts: int = 5
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    min_part_size: int = MIN_PART  # lowered only by tests, to keep them small


def plan_parts(size: int, part_size: int, *, min_part: int = MIN_PART) -> list[Part]:
    """Split ``size`` bytes into parts of ``part_size``, grown where needed so that
    there are at most 10,000 of them and none is below ``min_part`` (the last aside)."""
    if size < 0:
        raise ValueError("size must not be negative")
    if size == 0:
        return [Part(1, 0, 0)]
    part_size = max(part_size, min_part, -(-size // MAX_PARTS))
    if part_size > MAX_PART:
        raise ValueError(f"{size} bytes cannot be split into {MAX_PARTS} parts of at most 5 GiB")
    return [
        Part(number, offset, min(part_size, size - offset))
        for number, offset in enumerate(range(0, size, part_size), start=1)
    ]


GROW_EVERY = 1000  # parts of a stream between two doublings of its part size


def stream_part_size(number: int, base: int) -> int:
    """The size of part ``number`` of a stream of unknown length: ``base`` for the first
    1,000 parts, doubling every 1,000 after (capped at 5 GiB), so 10,000 parts hold
    about 1,000 times what 10,000 parts of ``base`` would (8 TiB at 8 MiB) while a short
    stream keeps small parts."""
    return min(MAX_PART, base << ((number - 1) // GROW_EVERY))


MIN_PARTS_IN_FLIGHT = 4


def parts_in_memory(settings: TransferSettings, part_size: int) -> int:
    """How many parts of an upload may be read ahead of their sending: as many as fit in
    ``upload_buffer``, but never fewer than 4 (files over ~80 GB have parts over 8 MiB,
    and two parts in flight would starve the link) nor more than ``concurrency``."""
    return min(settings.concurrency,
               max(MIN_PARTS_IN_FLIGHT, settings.upload_buffer // part_size))


def plan_ranges(size: int, settings: TransferSettings, *, head: int = 0) -> list[Part]:
    """Ranges for a download: one GET below the threshold, else at most
    ``min(concurrency, max_ranges)`` ranges of at least ``part_size`` (at most 1 GiB
    each). Fewer, larger ranges cost fewer requests, and lose nothing on failure since an
    interrupted range resumes. ``head``: bytes at the start that a first GET (sent before
    the size was known) asked for; they are the first range, the rest is split after."""
    if size <= settings.multipart_threshold:
        return [Part(1, 0, size)]
    head = min(head, size - 1)
    rest = size - head
    ranges = min(settings.concurrency, settings.max_ranges)
    per_range = min(max(settings.part_size, -(-rest // ranges)), GiB)
    parts = [Part(1, 0, head)] if head else []
    return parts + [Part(len(parts) + p.number, head + p.offset, p.size)
                    for p in plan_parts(rest, per_range, min_part=1)]
