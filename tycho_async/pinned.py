"""A lock file's entries as they stand locally, before any store is opened: the checks
a lock must pass before any request (``check_lock``: the registry it names, the local
names it would write), and whether every entry's local copy is already current
(``offline``), so that a warm ``pull-list --locked`` opens no connection and resolves
no credentials. No store, no event loop: only the local files. Under allowed signers,
every entry must carry an allowed ``signed_by`` and the ``statement_sha256`` of its own
fields (``check_signed``): the lock vouches for a current copy with zero requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SignatureError, TychoError, UsageError
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
    from .sshsig import AllowedSigners


def check_lock(lock: Lock, identity: str, reserved: frozenset[str], *,
               other_registry: bool, signers: AllowedSigners | None = None) -> None:
    """Everything a lock must satisfy before any request (UsageError, exit 2): the
    registry it was resolved against is this one, ``identity`` (unless
    ``other_registry``), and no entry's localname (or a directory's NAME) passes for
    one of tychoreg's own files (``reserved``); then, under ``signers``,
    ``check_signed`` (SignatureError, exit 3)."""
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
    if signers is not None:
        for entry in lock.packages:
            check_signed(entry, signers)


def check_signed(entry: Locked, signers: AllowedSigners) -> None:
    """A lock entry the policy accepts without asking the store: locked with a signer
    that ``signers`` allow now, and a ``statement_sha256`` that is the digest of the
    statement the entry's own fields make (else the lock was edited: SignatureError)."""
    if entry.station:
        raise SignatureError(f"package {entry}: pushed by tycho-station (no sha256), it "
                             "cannot be signed, and the allowed signers require a signature")
    if entry.signed_by is None or entry.statement_sha256 is None:
        raise SignatureError(f"package {entry}: the lock records no signer, and the "
                             "allowed signers require one (tychoreg lock --update under "
                             "the policy records it)")
    if entry.statement_sha256 != entry.statement().digest():
        raise SignatureError(f"package {entry}: its statement_sha256 is not the digest of "
                             "what the entry locks: the lock was changed after it was made")
    if not signers.allows(entry.signed_by):
        raise SignatureError(f"package {entry}: locked as signed by {entry.signed_by!r}, "
                             "whom the allowed signers do not allow (now)")


def current(lock: Lock, settings: Settings, *, other_registry: bool
            ) -> list[tuple[Locked, Path]] | None:
    """A pull of ``lock`` by ``settings`` that needs no store: ``check_lock`` by the
    settings' registry, own files and allowed signers (read here: a malformed file is
    exit 2), then ``offline`` into their download folder."""
    signers = None
    if settings.allowed_signers is not None:
        from .sshsig import AllowedSigners

        signers = AllowedSigners.load(settings.allowed_signers)
    check_lock(lock, settings.location, reserved_names(settings.own_files),
               other_registry=other_registry, signers=signers)
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
            dest = current_copy(entry, fs, outdir)
        except TychoError:
            return None
        if dest is None or dest.absolute() in seen:
            return None
        seen.add(dest.absolute())
        found.append((entry, dest))
    return found


def current_copy(entry: Locked, fs: LocalFS, outdir: Path) -> Path | None:
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
