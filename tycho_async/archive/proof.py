"""The proof of a pulled directory: the file a pull writes at the root of the tree it
extracted (package, version, ETag and a manifest of what it wrote), read back to tell
whether the tree is still as it was pulled, and which local edits a new pull replaces."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .. import __version__
from ..layout import PROOF
from ..localio import failure
from .tree import walk

Manifest = dict[str, list[object]]
_EDITS_NAMED = 5  # local edits a warning names


def manifest(root: Path) -> Manifest:
    """Every entry below ``root`` by relative path, the proof at the root left out: a
    file's mode, size and mtime (ns), a symlink's target, a directory's mode. Two
    manifests differ when a file was added, removed, rewritten or touched."""
    found: Manifest = {}
    for rel, path, st in walk(root, lenient=True):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            try:
                found[rel] = ["l", os.readlink(path)]
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise failure(exc, f"read {path}") from exc
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ["d", mode]
        elif stat.S_ISREG(st.st_mode):
            found[rel] = ["f", mode, st.st_size, st.st_mtime_ns]
        else:
            found[rel] = ["?", stat.S_IFMT(st.st_mode)]
    return found


def write_proof(root: Path, package: str, version: str, etag: str) -> None:
    """Write the proof into a freshly extracted ``root`` (before it is renamed into place,
    so the tree and its proof appear together): the package, version and ETag a pull
    made it from, and the manifest of what the extraction wrote."""
    data = json.dumps({"package": package, "version": version, "etag": etag,
                       "tool": f"tychoreg {__version__}", "manifest": manifest(root)},
                      separators=(",", ":")).encode()
    path = os.path.join(root, PROOF)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise failure(exc, f"write {path}") from exc


def read_proof(root: Path) -> dict[str, Any] | None:
    """The proof inside ``root``, or None when there is none that can be read (a
    symlink, a directory, a FIFO or anything but a regular file, or not a JSON object is
    no proof). O_NONBLOCK: opening a FIFO of that name must not wait for a writer."""
    try:
        fd = os.open(os.path.join(root, PROOF),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            proof = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return proof if isinstance(proof, dict) else None


def local_edits(root: Path, proof: dict[str, Any]) -> list[str]:
    """What changed in ``root`` since the pull its proof describes, by path, each with
    "(added)", "(deleted)" or "(modified)"; [] when the tree is as it was pulled."""
    recorded = proof.get("manifest")
    if not isinstance(recorded, dict):
        return ["(its proof records no manifest)"]
    now = manifest(root)
    edits = [f"{path} (deleted)" if path not in now else f"{path} (modified)"
             for path, entry in recorded.items() if now.get(path) != entry]
    edits += [f"{path} (added)" for path in now if path not in recorded]
    return sorted(edits)


def describe_edits(edits: list[str]) -> str:
    """A few of the edits in words, and how many more there are."""
    named = ", ".join(edits[:_EDITS_NAMED])
    more = len(edits) - _EDITS_NAMED
    return f"{named} and {more} more" if more > 0 else named
