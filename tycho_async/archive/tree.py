"""The tree a directory package holds, as both directions see it: the value types
(``Entry``, ``Tree``, the entry kinds), the tar framing the writer and the extractor
agree on, and :func:`scan`, which walks a directory into a ``Tree`` (:func:`walk` is
shared with the proof's manifest, which walks a pulled tree the same way)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..layout import PROOF
from ..localio import failure
from ..units import plural

BLOCK = 512  # a tar block: every header and every file's padded data
RECORD = 20 * BLOCK  # a tar ends with zeros to a whole record
_LISTED = 20  # offending paths named in a refusal

DIR, FILE, HARDLINK, SYMLINK = "dir", "file", "hardlink", "symlink"

@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the canonical tar. ``kind`` is "dir", "file", "hardlink" or
    "symlink"; ``path`` is relative, POSIX, surrogate-escaped; ``link`` is a symlink's
    target or, for a hard link, the path of the first link."""

    path: str
    kind: str
    mode: int
    mtime: int
    size: int = 0
    link: str = ""
    dev: int = 0  # with ``ino``: which file was scanned, to notice it being replaced
    ino: int = 0


@dataclass(frozen=True)
class Tree:
    """A scanned directory: ``files`` counts regular-file paths (hard links included),
    ``bytes`` the content stored once per file."""

    root: Path
    entries: tuple[Entry, ...]
    files: int
    bytes: int
    dirs: int
    symlinks: int


def scan(root: Path) -> Tree:
    """Walk ``root`` (following it if it is a symlink, and no symlink inside) and refuse,
    all in one message, whatever a pull could never restore as it was. The proof a pull
    wrote at the root (a regular file) is not part of the tree."""
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise UsageError(f"{root} is not a directory")
    except FileNotFoundError:
        raise UsageError(f"{root} does not exist") from None
    except OSError as exc:
        raise failure(exc, f"read {root}") from exc
    found = [(os.fsencode(rel), rel, st) for rel, _, st in walk(root, lenient=False)]
    found.sort(key=lambda item: item[0])
    return _tree(root, found)


def walk(root: Path, *, lenient: bool) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every entry below ``root`` (in no order) as its relative path, its path and its
    lstat; no symlink inside is followed, and the proof a pull wrote at the root (a
    regular file) is left out. ``lenient``, for a pulled tree its user may be editing
    (:func:`manifest`): an entry that vanished meanwhile is skipped, and a directory
    without read and search permission is listed but not entered; otherwise (a tree to
    pack) both are errors."""
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        directory = os.path.join(root, rel_dir) if rel_dir else os.fspath(root)
        try:
            with os.scandir(directory) as listing:
                items = list(listing)
        except OSError as exc:
            if lenient and isinstance(exc, FileNotFoundError):
                continue
            raise failure(exc, f"read {directory}") from exc
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as exc:
                if lenient and isinstance(exc, FileNotFoundError):
                    continue
                raise failure(exc, f"read {item.path if lenient else directory}") from exc
            if rel == PROOF and stat.S_ISREG(st.st_mode):
                continue
            yield rel, item.path, st
            searchable = st.st_mode & stat.S_IRUSR and st.st_mode & stat.S_IXUSR
            if stat.S_ISDIR(st.st_mode) and (searchable or not lenient):
                pending.append(rel)


def _tree(root: Path, found: list[tuple[bytes, str, os.stat_result]]) -> Tree:
    """The entries of ``found`` (sorted). A file with several links is stored once, at
    its first path inside the tree; its other paths inside are hard-link entries to that
    one. Links outside the tree (a uv or conda cache) are not part of it, as for tar: a
    file linked from outside only once is a plain file, so the tar, and ``tree_sha256``,
    are those of a copy of the tree."""
    first_link: dict[tuple[int, int], str] = {}
    entries: list[Entry] = []
    refused: list[str] = []
    files = size = dirs = symlinks = 0
    for _, rel, st in found:
        mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000
        if rel == PROOF:
            refused.append(f"{rel} (the name of the proof a pull writes, and not a file)")
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, DIR, mode, mtime))
            dirs += 1
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(os.path.join(root, rel))
            except OSError as exc:
                raise failure(exc, f"read {root / rel}") from exc
            entries.append(Entry(rel, SYMLINK, mode, mtime, link=target))
            symlinks += 1
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            files += 1
            if key in first_link:
                entries.append(Entry(rel, HARDLINK, mode, mtime, link=first_link[key]))
                continue
            if st.st_nlink > 1:
                first_link[key] = rel
            entries.append(Entry(rel, FILE, mode, mtime, st.st_size, dev=st.st_dev,
                                 ino=st.st_ino))
            size += st.st_size
        else:
            refused.append(f"{rel} ({_kind_name(st.st_mode)})")
    if refused:
        listed = "\n  ".join(refused[:_LISTED])
        more = f"\n  and {len(refused) - _LISTED} more" if len(refused) > _LISTED else ""
        raise UsageError(f"cannot pack {root}: {plural(len(refused), 'entry', 'entries')} "
                         f"could never be restored as they are:\n  {listed}{more}")
    return Tree(root, tuple(entries), files, size, dirs, symlinks)


def _kind_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    return "not a file, directory or symlink"
