"""The public values of the API and the CLI: what each operation returns
(``PushResult`` ... ``ShowResult``, ``VersionInfo``, the lock commands' ``LockResult``,
``LockCheck``) and what a pull or a push of a list asks for (``PullRequest``,
``PushRequest``).

Plain frozen dataclasses, built by the registry and read by the API, the CLI and the JSON
report; they import none of the registry, so that a caller can name them without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .layout import FILE, LATEST
from .names import check_localname_arg, check_package, check_version

PUSH_LINE = "PKG VERSION PATH [--localname NAME]"

if TYPE_CHECKING:  # a lock's type only: a plain pull does not load the lock file code
    from .lockfile import Lock


@dataclass(frozen=True)
class PackageSummary:
    name: str
    latest: str | None
    localname: str | None
    problem: str | None = None  # why tycho.json could not be used, if it could not


@dataclass(frozen=True)
class VersionInfo:
    """A version as the listing and tycho.json's copies of the records show it."""

    version: str
    size: int
    sha256: str | None = None  # None: no record (pushed by tycho-station)
    pushed_at: str | None = None
    format: str = FILE
    latest: bool = False
    state: str = "ok"  # "pending" or "deleting" while a push or deletion is cut short
    modified: float | None = None  # the object's Last-Modified, seconds since the epoch
    signed: bool = False  # a .sig is beside it (listed; checked by verify, show, pull)
    signed_by: str | None = None  # under allowed signers: the principal that signed


@dataclass(frozen=True)
class DeleteResult:
    package: str
    versions: list[str]  # deleted (or, with dry_run, that would be)
    latest_cleared: bool  # --force deleted the latest version: latest is null now
    dry_run: bool
    package_removed: bool = False  # --all: tycho.json too, the package is gone


@dataclass(frozen=True)
class PruneResult:
    package: str
    deleted: list[str]  # (or, with dry_run, would be)
    kept: list[str]
    finished: list[str]  # interrupted pushes and deletions completed or cleared
    aborted_uploads: int  # multipart uploads older than a day, aborted
    dry_run: bool


@dataclass(frozen=True)
class ShowResult:
    """What is known of a package, and of one version when one was asked for."""

    package: str
    localname: str | None
    latest: str | None
    versions: int
    size: int  # of every version together
    version: VersionInfo | None = None
    tool: str | None = None  # what pushed the version
    tree_sha256: str | None = None
    signatures: tuple[SignatureInfo, ...] = ()  # the version's, checked (show PKG VERSION)


@dataclass(frozen=True)
class PushResult:
    package: str
    version: str
    size: int
    sha256: str
    initialized: bool
    promoted: bool
    created_registry: str | None = None  # the new local registry this push created
    skipped: bool = False  # --skip-existing or --skip-identical: nothing was uploaded
    format: str = FILE  # "file", or "tar+zstd" for a directory
    tree_sha256: str | None = None  # a directory's: the SHA-256 of its canonical tar
    # Skipped: whether the version there holds the source's content (None: not known, a
    # stream or a push of it still under way); None when not skipped.
    same_content: bool | None = None
    warnings: tuple[str, ...] = ()  # what went wrong without failing the push
    signed_by: str | None = None  # the signature's principal hint (--sign-key), if signed


@dataclass(frozen=True)
class PullResult:
    package: str
    version: str
    path: Path  # the file, the directory (a directory package), or "-" (standard output)
    size: int
    skipped: bool
    exact: bool = True  # False: a --fallback prefix chose the version
    format: str = FILE
    warnings: tuple[str, ...] = ()  # e.g. local edits of a tree this pull replaced
    signed_by: str | None = None  # under allowed signers: the principal that signed


@dataclass(frozen=True)
class VerifyResult:
    package: str
    version: str
    size: int
    sha256: str
    checked: str  # what the bytes were checked against
    repaired: str | None = None  # what --repair did, if anything
    signatures: tuple[SignatureInfo, ...] = ()  # every signature of the version, checked
    signed_by: str | None = None  # under allowed signers: the principal that signed


@dataclass(frozen=True)
class SignatureInfo:
    """One signature of a version, as ``verify`` and ``show`` report it: who it says
    signed (a hint), the key that made it, whether it verifies for this version, and,
    under allowed signers, the principal the file gives that key (None: not allowed)."""

    principal_hint: str
    fingerprint: str | None  # None: the signature could not be read
    valid: bool  # it verifies (namespace tychoreg) over this version's statement
    principal: str | None = None
    problem: str | None = None  # why it does not count, in words


@dataclass(frozen=True)
class SignResult:
    package: str
    version: str
    signed_by: str  # the new signature's principal hint
    fingerprint: str  # the key that signed
    signatures: int  # how many the version's .sig holds now


@dataclass(frozen=True)
class ProbeResult:
    if_none_match: bool
    if_match: bool


@dataclass(frozen=True)
class LockChange:
    """One package of ``lock --update``: the version locked before and now."""

    package: str
    old: str
    new: str
    changed: bool  # False: the lock's entry is the same as before (version, bytes, ETag)


@dataclass(frozen=True)
class LockResult:
    """A lock made or updated, and the file that holds it."""

    path: Path
    lock: Lock
    written: bool  # False: the file already held exactly these bytes (left untouched)
    changes: tuple[LockChange, ...] = ()  # ``lock --update``: per package re-resolved


LOCK_OK, LOCK_DELETED, LOCK_CHANGED, LOCK_MOVED = "ok", "deleted", "changed", "latest moved"


@dataclass(frozen=True)
class LockStatus:
    """One locked version as ``lock --check`` found it: ``state`` is "ok", "deleted",
    "changed" (other bytes: size, ETag or SHA-256) or "latest moved" (still there, as
    locked, but the package's latest is another version now)."""

    package: str
    version: str
    state: str
    latest: str | None  # the package's latest now (None: none, or no tycho.json)
    detail: str | None = None  # what is gone or changed, in words

    def failed(self, latest: bool) -> bool:
        return self.state in (LOCK_DELETED, LOCK_CHANGED) or (latest and
                                                               self.state == LOCK_MOVED)


@dataclass(frozen=True)
class LockCheck:
    """``lock --check``: every locked version's status; ``latest``: whether a moved
    latest counts as drift (``--check --latest``)."""

    registry: str  # the one the lock names
    checked_against: str  # the one it was checked against (another with --registry)
    packages: tuple[LockStatus, ...]
    latest: bool = False

    @property
    def drifted(self) -> list[LockStatus]:
        return [status for status in self.packages if status.failed(self.latest)]

    @property
    def exit_code(self) -> int:
        """0 when the lock still holds, 1 when any locked version drifted."""
        return 1 if self.drifted else 0


@dataclass(frozen=True)
class PullRequest:
    package: str
    version: str | None = None  # None: latest

    @classmethod
    def parse(cls, item: str) -> PullRequest:
        """``PKG`` or ``PKG==VERSION`` (``PKG==latest``: its latest, as tycho-station)."""
        package, sep, version = item.strip().partition("==")
        check_package(package)
        if sep and version != LATEST:
            check_version(version)
            return cls(package, version)
        return cls(package)

    def __str__(self) -> str:
        return f"{self.package}=={self.version}" if self.version else self.package


@dataclass(frozen=True)
class PushRequest:
    """One item of a push of a list: ``source`` a file or a directory, ``localname`` the
    name pulls save a new package as (None: the source's name)."""

    package: str
    version: str
    source: Path
    localname: str | None = None

    @classmethod
    def parse(cls, line: str) -> PushRequest:
        """A line ``PKG VERSION PATH [--localname NAME]``, split as a POSIX shell does
        (quotes, backslashes; ``#`` outside quotes starts a comment), every field checked
        here, so that a bad line is refused before anything is pushed (UsageError)."""
        import shlex  # only push-list parses lines: not loaded by a plain push or pull

        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:  # "No closing quotation", "No escaped character"
            raise UsageError(f"cannot split {line.strip()!r}: {str(exc).lower()}") from None
        fields: list[str] = []
        localname = None
        while words:
            word = words.pop(0)
            if word == "--localname" or word.startswith("--localname="):
                if localname is not None:
                    raise UsageError("--localname given twice")
                name = word.partition("=")[2] if "=" in word else \
                    (words.pop(0) if words else None)
                if name is None:
                    raise UsageError("--localname needs a NAME")
                localname = check_localname_arg(name)
            elif word.startswith("-") and word != "-":
                raise UsageError(f"unknown option {word!r}: a line is {PUSH_LINE}")
            else:
                fields.append(word)
        if len(fields) != 3:
            raise UsageError(f"expected {PUSH_LINE}, got {len(fields)} field(s)")
        package, version, source = fields
        check_package(package)
        check_version(version)
        if version == LATEST:
            raise UsageError(f"{LATEST!r} means the latest version; it cannot name a version")
        if source == "-":
            raise UsageError("PATH - (standard input) cannot be an item of a list")
        return cls(package, version, Path(source), localname)

    def __str__(self) -> str:
        return f"{self.package}=={self.version}"
