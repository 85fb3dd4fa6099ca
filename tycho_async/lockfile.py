"""The lock file (``tychoreg.lock``): what ``tychoreg lock`` resolved, so that a pull of
it gets exactly those bytes, with no tycho.json request. Pure: TOML text in, checked
values out, and back (``read`` the one I/O: a file's bytes); no registry.

Version 1 (TOML, read with tomllib, or tomli on Python 3.10; written with tomli-w)::

    version = 1

    [lock]
    registry = "s3://BUCKET/PREFIX"      # or the local registry's configured path

    [[package]]                          # one table a package, sorted by name
    name = "tool"
    version = "1.2"
    localname = "tool.tar.gz"
    format = "file"                      # or "tar+zstd" (a directory package)
    size = 1234
    sha256 = "<64 hex>"                  # absent: pushed by tycho-station (no record),
                                         # locked by size and ETag alone
    etag = "\"<the object's ETag>\""
    # optional: tree_sha256, tree_size (directories), signed_by, statement_sha256

Any other key, a value of the wrong type, a name that is not a package name, a
localname that could leave the download folder: ``LockfileError`` (exit 2), naming the
entry, before anything is asked of a store. The same lock dumps to the same bytes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .layout import FILE, PROOF, SIDECAR_SUFFIX, TAR_ZSTD, TAR_ZSTD_SUFFIX
from .names import is_valid_segment, localname_problem

if TYPE_CHECKING:  # the engine loads only for a pull that downloads
    from .statement import Statement
    from .transfer.engine import Expected

FORMAT_VERSION = 1
DEFAULT_LOCKFILE = "tychoreg.lock"
MAX_BYTES = 16 << 20  # a lock of 100,000 packages is about 30 MB less than this
MAX_SIZE = 1 << 62  # no object is larger; a bound on what a lock may claim
HEADER = (b"# tychoreg lock file: what `tychoreg lock` resolved; `tychoreg pull-list "
          b"--locked` pulls exactly\n# these bytes. Update it with `tychoreg lock --update`, "
          b"not by hand.\n")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ETAG_MAX = 1024
_TOP = frozenset({"version", "lock", "package"})
_HEAD = frozenset({"registry"})
# Every key of a [[package]] table, in the order a dump writes them.
KEYS = ("name", "version", "localname", "format", "size", "sha256", "etag",
        "tree_sha256", "tree_size", "signed_by", "statement_sha256")
REQUIRED = frozenset({"name", "version", "localname", "format", "size", "etag"})


class LockfileError(UsageError):
    """The lock file cannot be used as it is (exit 2); the message names the entry."""


class Locked:
    """One locked package: the version and everything a pull checks it by. ``sha256``
    None: a version tycho-station pushed (no record), checked by size and ETag alone.
    (A plain class: a dataclass costs about a millisecond at import.)"""

    __slots__ = ("etag", "format", "localname", "name", "sha256", "signed_by", "size",
                 "statement_sha256", "tree_sha256", "tree_size", "version")

    def __init__(self, name: str, version: str, localname: str, size: int, etag: str, *,
                 sha256: str | None, format: str = FILE, tree_sha256: str | None = None,
                 tree_size: int | None = None, signed_by: str | None = None,
                 statement_sha256: str | None = None) -> None:
        self.name = name
        self.version = version
        self.localname = localname
        self.size = size
        self.etag = etag
        self.sha256 = sha256
        self.format = format
        self.tree_sha256 = tree_sha256
        self.tree_size = tree_size
        self.signed_by = signed_by
        self.statement_sha256 = statement_sha256

    @property
    def station(self) -> bool:
        """Pushed by tycho-station: locked by size and ETag, with no SHA-256."""
        return self.sha256 is None

    def expected(self) -> Expected:
        """What the downloaded bytes must be (the ETag is checked by the caller on the
        first answer: a station version's only mark besides its size)."""
        from .transfer.engine import Expected

        return Expected(self.size, sha256=self.sha256)

    def statement(self) -> Statement:
        """The statement this entry's own fields make (as ``Statement.of`` orders them):
        what ``statement_sha256`` must be the digest of, so that a lock edited by hand
        cannot keep a signer's name over other bytes."""
        from .statement import Statement

        return Statement.make(self.name, self.version, self.localname, str(self.sha256),
                              self.size, self.format, self.tree_sha256, self.tree_size)

    def to_table(self) -> dict[str, Any]:
        """The TOML table, keys in the fixed order, absent values left out."""
        table = {key: getattr(self, key) for key in KEYS}
        return {key: value for key, value in table.items() if value is not None}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Locked) and self.to_table() == other.to_table()

    def __repr__(self) -> str:
        return f"Locked({self.to_table()!r})"

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


class Lock:
    """A whole lock file: the registry it was resolved against and its packages, one
    version each, kept sorted by name."""

    __slots__ = ("packages", "registry")

    def __init__(self, registry: str, packages: Iterable[Locked]) -> None:
        self.registry = registry
        self.packages = sorted(packages, key=lambda entry: entry.name)
        seen: set[str] = set()
        for entry in self.packages:
            if entry.name in seen:
                raise LockfileError(f"package {entry.name!r} is locked twice; a lock holds "
                                    "one version of each package")
            seen.add(entry.name)

    def get(self, name: str) -> Locked | None:
        return next((entry for entry in self.packages if entry.name == name), None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lock) and self.registry == other.registry and \
            self.packages == other.packages

    def __repr__(self) -> str:
        return f"Lock({self.registry!r}, {self.packages!r})"


def dump(lock: Lock) -> bytes:
    """The lock file's bytes: a fixed comment, then TOML by tomli-w (so every string is
    escaped by the library, never by us); the same lock gives the same bytes."""
    import tomli_w

    document = {"version": FORMAT_VERSION, "lock": {"registry": lock.registry},
                "package": [entry.to_table() for entry in lock.packages]}
    return HEADER + b"\n" + tomli_w.dumps(document).encode("utf-8")


def read(path: Path) -> Lock:
    """The lock file at ``path``, checked (LockfileError, exit 2, when it cannot be
    read or used); at most ``MAX_BYTES`` are read, whatever the file holds."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise LockfileError(f"cannot read the lock file {path}: {exc.strerror or exc}"
                            " (tychoreg lock writes one)") from None
    return parse(data, str(path))


def parse(data: bytes, source: str = DEFAULT_LOCKFILE) -> Lock:
    """A lock file's bytes, checked whole: LockfileError (naming ``source`` and the
    entry) for anything version 1 does not allow."""
    if len(data) > MAX_BYTES:
        raise LockfileError(f"{source}: {len(data)} bytes is more than a lock file may "
                            f"hold ({MAX_BYTES})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LockfileError(f"{source}: not UTF-8 text") from None
    toml = _toml()
    try:
        document = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise LockfileError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise LockfileError(f"{source}: nested too deeply to read") from None
    return _document(document, source)


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli

    return tomli


def _document(document: Mapping[str, Any], source: str) -> Lock:
    unknown = sorted(set(document) - _TOP)
    if unknown:
        raise LockfileError(f"{source}: unknown key {unknown[0]!r} (lock file version "
                            f"{FORMAT_VERSION} has {', '.join(sorted(_TOP))})")
    version = document.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise LockfileError(f"{source}: lock file version {version!r} is not one this "
                            f"tychoreg reads (it reads version {FORMAT_VERSION}); "
                            "upgrade tychoreg or lock again")
    head = document.get("lock")
    if not isinstance(head, dict):
        raise LockfileError(f"{source}: no [lock] table naming the registry")
    unknown = sorted(set(head) - _HEAD)
    if unknown:
        raise LockfileError(f"{source}: [lock] has an unknown key {unknown[0]!r}")
    registry = head.get("registry")
    if not isinstance(registry, str) or not registry:
        raise LockfileError(f"{source}: [lock] registry must name the registry")
    tables = document.get("package", [])
    if not isinstance(tables, list):
        raise LockfileError(f"{source}: 'package' must be an array of tables "
                            "([[package]])")
    entries = [_entry(table, f"{source}: package #{index}")
               for index, table in enumerate(tables, 1)]
    try:
        return Lock(registry, entries)
    except LockfileError as exc:
        raise LockfileError(f"{source}: {exc}") from None


def _entry(table: object, where: str) -> Locked:
    """One [[package]] table, every key checked (``where`` names it in messages)."""
    if not isinstance(table, dict):
        raise LockfileError(f"{where} is not a table")
    name = table.get("name")
    if isinstance(name, str) and is_valid_segment(name):
        where = f"{where} ({name})"
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise LockfileError(f"{where}: unknown key {unknown[0]!r}")
    for key in ("name", "version"):
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or
                                  not is_valid_segment(value)):
            raise LockfileError(f"{where}: {key} {value!r} is not a valid {key} (letters, "
                                "digits and . _ + -, starting with a letter or digit)")
    missing = sorted(REQUIRED - set(table))
    if missing:
        raise LockfileError(f"{where}: no {missing[0]!r}")
    fmt = table["format"]
    if fmt not in (FILE, TAR_ZSTD):
        raise LockfileError(f"{where}: format {fmt!r} is neither {FILE!r} nor "
                            f"{TAR_ZSTD!r}")
    localname = _localname(table["localname"], fmt, where)
    size = _count(table, "size", where)
    etag = table["etag"]
    if not isinstance(etag, str) or not etag or len(etag) > _ETAG_MAX or \
            any(ord(ch) < 32 or ord(ch) == 127 for ch in etag):
        raise LockfileError(f"{where}: etag {etag!r} is not an ETag")
    sha256 = _hex(table, "sha256", where)
    tree_sha256 = _hex(table, "tree_sha256", where)
    tree_size = _count(table, "tree_size", where) if "tree_size" in table else None
    if fmt == FILE and (tree_sha256 is not None or tree_size is not None):
        raise LockfileError(f"{where}: tree_sha256 and tree_size belong to directory "
                            f"packages (format {TAR_ZSTD!r}), not to a file")
    signed_by = table.get("signed_by")
    if signed_by is not None and (not isinstance(signed_by, str) or not signed_by or
                                  not signed_by.isprintable()):
        raise LockfileError(f"{where}: signed_by {signed_by!r} names no principal")
    statement_sha256 = _hex(table, "statement_sha256", where)
    if (signed_by is None) != (statement_sha256 is None):
        raise LockfileError(f"{where}: signed_by and statement_sha256 go together")
    return Locked(table["name"], table["version"], localname, size, etag, sha256=sha256,
                  format=fmt, tree_sha256=tree_sha256, tree_size=tree_size,
                  signed_by=signed_by, statement_sha256=statement_sha256)


def _localname(value: object, fmt: str, where: str) -> str:
    """A plain file name that no pull could take for a sidecar or a proof."""
    problem = localname_problem(value)
    if problem is None:
        assert isinstance(value, str)
        if value.endswith(SIDECAR_SUFFIX):
            problem = f"it ends in {SIDECAR_SUFFIX}, as the sidecars of pulled files do"
        elif value == PROOF:
            problem = "it is the name of a pulled directory's proof"
        elif fmt == TAR_ZSTD and (not value.endswith(TAR_ZSTD_SUFFIX) or
                                  value == TAR_ZSTD_SUFFIX):
            problem = f"a directory package's localname is NAME{TAR_ZSTD_SUFFIX}"
    if problem is not None:
        raise LockfileError(f"{where}: localname {value!r} cannot be used: {problem}")
    assert isinstance(value, str)
    return value


def _count(table: Mapping[str, Any], key: str, where: str) -> int:
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
        raise LockfileError(f"{where}: {key} {value!r} is not a size in bytes (a whole "
                            "number, not negative)")
    return value


def _hex(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not _HEX64.fullmatch(value)):
        raise LockfileError(f"{where}: {key} {value!r} is not a SHA-256 (64 lowercase hex "
                            "digits)")
    return value
