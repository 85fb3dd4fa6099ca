"""Trees on disk as the directory tests compare them (fixed mtimes, a snapshot of all that
an extraction promises to keep), and tar archives written by hand, as an attacker would."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

from tycho_async.layout import PROOF

T0 = 1_600_000_000  # a fixed mtime base


def set_mtimes(root: Path, base: int = T0) -> None:
    """Give every entry below ``root`` a fixed mtime derived from its path (deepest first,
    so setting a child does not move its directory's mtime afterwards)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            mtime = base + int.from_bytes(hashlib.sha256(os.fsencode(rel)).digest()[:3], "big")
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def snapshot(root: Path, *, link_mtimes: bool = True) -> dict[str, tuple[Any, ...]]:
    """Everything extraction promises to keep: kind, mode, mtime (of links too, unless
    ``link_mtimes`` is off), bytes, link targets, and which paths share an inode (the
    root itself and the proof a pull writes at the root excluded)."""
    found: dict[str, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == PROOF:
                continue
            st = os.lstat(path)
            mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", os.readlink(path), *([mtime] if link_mtimes else []))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", mode, mtime)
            else:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[rel] = ("file", mode, mtime, digest)
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    for group in inodes.values():
        for rel in group:
            found[rel] = (*found[rel], tuple(sorted(group)))
    return found


def pulled_snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """A pulled tree's snapshot (no symlink mtimes) without tychoreg's own files at its
    top: the proof a directory pull keeps inside the tree it made is no part of the
    package."""
    return {rel: entry for rel, entry in snapshot(root, link_mtimes=False).items()
            if not rel.startswith(".tychoreg")}


Member = tuple[tarfile.TarInfo, bytes]


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *, link: str = "",
           mode: int = 0o644, mtime: int = T0) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, mtime
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info, data


def hand_tar(members: list[Member]) -> bytes:
    """A tar written by tarfile, as an attacker would: whatever names and types."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()
