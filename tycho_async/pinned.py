"""A lock file's entries as they stand locally, before any store is opened: the checks
a lock must pass before any request (``check_lock``: the registry it names, the local
names it would write), and whether every entry's local copy is already current
(``offline``), so that a warm ``pull-list --locked`` opens no connection and resolves
no credentials. No store, no event loop: only the local files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TychoError, UsageError
from .layout import (
    TAR_ZSTD,
    dir_name,
    etag_sidecar,
    holds,
    localname_clash,
    reserved_names,
)
from .localfs import LocalFS, dir_target, fits
from .lockfile import Lock, Locked, LockfileError

if TYPE_CHECKING:
    from .config import Settings


def check_lock(lock: Lock, identity: str, reserved: frozenset[str], *,
               other_registry: bool) -> None:
    """Everything a lock must satisfy before any request (UsageError, exit 2): the
    registry it was resolved against is this one, ``identity`` (unless
    ``other_registry``), and no entry's localname (or a directory's NAME) passes for
    one of tychoreg's own files (``reserved``)."""
    if lock.registry != identity and not other_registry:
        raise UsageError(f"the lock file was resolved against {lock.registry}, not "
                         f"{identity} (the registry in use); pass --registry on the "
                         "command line to pull it from this one anyway")
    for entry in lock.packages:
        if entry.station and entry.format == TAR_ZSTD:
            raise LockfileError(f"package {entry}: a directory package is locked by its "
                                "sha256, and this entry has none")
        names = [entry.localname]
        if entry.format == TAR_ZSTD:
            names.append(dir_name(entry.localname) or entry.localname)
        for name in names:
            problem = localname_clash(name, reserved)
            if problem:
                raise LockfileError(f"package {entry}: the lock names the local file "
                                    f"{name!r}, and {problem}")


def current(lock: Lock, settings: Settings, *, other_registry: bool
            ) -> list[tuple[Locked, Path]] | None:
    """A pull of ``lock`` by ``settings`` that needs no store: ``check_lock`` by the
    settings' registry and own files, then ``offline`` into their download folder."""
    check_lock(lock, settings.location, reserved_names(settings.own_files),
               other_registry=other_registry)
    return offline(lock, LocalFS(), settings.outdir)


def offline(lock: Lock, fs: LocalFS, outdir: Path) -> list[tuple[Locked, Path]] | None:
    """Each entry and where its current copy is, when every entry is current, told
    from the local files alone (so a warm run needs no store at all: no connection, no
    credentials); None as soon as one entry needs the store, or a destination needs
    the full pull's checks and messages. ``check_lock`` comes first. Plain pairs, no
    results: the warm path of ``entry.py`` renders them without loading ``results``."""
    found: list[tuple[Locked, Path]] = []
    seen: set[Path] = set()
    for entry in lock.packages:
        try:
            dest = _current(entry, fs, outdir)
        except TychoError:
            return None
        if dest is None or dest.absolute() in seen:
            return None
        seen.add(dest.absolute())
        found.append((entry, dest))
    return found


def _current(entry: Locked, fs: LocalFS, outdir: Path) -> Path | None:
    """Where a current entry's copy is, as the destination chain would find it."""
    if entry.format == TAR_ZSTD:
        from .archive.proof import local_edits, read_proof

        dest = outdir / (dir_name(entry.localname) or entry.localname)
        if not dir_target(dest, keep=(outdir,)):
            return None
        proof = read_proof(dest)
        if proof is None or (proof.get("package"), proof.get("version"), proof.get("etag")) \
                != (entry.name, entry.version, entry.etag) or local_edits(dest, proof):
            return None
    else:
        target = fs.target(outdir / entry.localname, within=outdir)
        dest = target.named
        if target.is_stream or not target.sidecar or not fits(etag_sidecar(dest)) or \
                not holds(dest, entry.etag, entry.size):
            return None
    return dest
