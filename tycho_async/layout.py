"""The tycho-station format, shared with it: object keys, tycho.json (read, written, the
copy of our records under its ``tychoreg`` key), the record states of a push, the
``.etag`` sidecar rule, and what a record says the bytes must be.

``Record`` (a version's record) and ``PackageMeta`` (tycho.json) are parsed once, where
every shape is checked (``parse_meta``, ``load_record``), and dumped once; both keep
every key they do not know, so a newer or older client's fields survive a rewrite.

tycho-station lists versions as the keys under ``PKG/tycho_`` ending in ``.pkg``, writes
tycho.json with ``indent=2`` and keeps the keys it does not know; everything here keeps
to that, so old and new clients share one bucket and one download folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .defaults import DEFAULT_CONFIG
from .errors import IncompleteVersion, UnsafeRemoteData

if TYPE_CHECKING:  # loaded only when bytes move: a warm locked pull reads local files
    from .storage import ObjectInfo
    from .transfer.engine import Expected

RECORDS_KEY = "tychoreg"
PENDING = "pending"  # a record's state while a push is under way: not trusted yet
DELETING = "deleting"  # a record's (or copy's) state while a deletion is under way
LATEST = "latest"  # tycho-station's word for "the latest version", never a version name
FILE = "file"  # the format of a version pushed from a file or a stream
TAR_ZSTD = "tar+zstd"  # the format of a directory: a tar stream compressed with zstd
TAR_ZSTD_SUFFIX = ".tar.zst"  # a directory package's localname ends so
SIDECAR_SUFFIX = ".etag"  # FILE.etag: tycho-station's sidecar, the ETag of what a pull wrote
# A pulled directory's proof, inside the directory it describes (where no file pull can
# put it): which package and version made it, the object's ETag, and a manifest of what
# the extraction wrote. A pull replaces a directory only when its proof names the same
# package, and skips one only while its manifest still matches.
PROOF = ".tychoreg-pull"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A directory package without a recorded tree_size unpacks to at most this many times
# its compressed size, and never less than UNPACKED_FLOOR (pull --max-unpacked sets it).
UNPACKED_RATIO = 64
UNPACKED_FLOOR = 8 << 30


def meta_key(package: str) -> str:
    return f"{package}/tycho.json"


def version_key(package: str, version: str) -> str:
    return f"{package}/tycho_{version}.pkg"


def record_key(package: str, version: str) -> str:
    return f"{package}/tycho_{version}.meta.json"


def signature_key(package: str, version: str) -> str:
    """A version's signatures (statement.SigFile); not .pkg: tycho-station never sees it."""
    return f"{package}/tycho_{version}.sig"


def etag_sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def reserved_names(own_files: Iterable[str]) -> frozenset[str]:
    """What no localname may name: the config file's name, and ``own_files`` (the
    dotenv file the config names)."""
    return frozenset({DEFAULT_CONFIG, *own_files})


def localname_clash(name: str, reserved: frozenset[str]) -> str | None:
    """Why a localname would be mistaken for what tychoreg keeps beside or inside
    pulls, or for its own files (``reserved``); None when it would not."""
    if name.endswith(SIDECAR_SUFFIX):
        return (f"it ends in {SIDECAR_SUFFIX}, as the sidecars that record what a pull "
                "wrote do (it could pass for another file's sidecar)")
    if name in reserved or name == PROOF:
        return "it is the name of one of tychoreg's own files (its config, dotenv or proofs)"
    return None


def default_max_unpacked(size: int) -> int:
    """The most a directory package of ``size`` compressed bytes and no recorded
    tree_size may unpack to."""
    return max(UNPACKED_RATIO * size, UNPACKED_FLOOR)


def _state(fields: Mapping[str, Any]) -> str:
    state = fields.get("state")
    return state if state in (PENDING, DELETING) else "ok"


def _format(fields: Mapping[str, Any]) -> str:
    value = fields.get("format")
    return value if isinstance(value, str) else FILE


def _fields(record: object) -> Mapping[str, Any]:
    """A record given as any JSON value: one that is not an object has no fields."""
    return record if isinstance(record, dict) else {}


class Record:
    """A version's record, as its record object or its copy in tycho.json holds it:
    read-only, every key kept (``fields``), the known ones typed. A copy that is not a
    JSON object reads as an empty (malformed) record and is written back as it was."""

    __slots__ = ("_json", "fields")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields: Mapping[str, Any] = fields
        self._json: object = fields

    @classmethod
    def from_json(cls, value: object) -> Record:
        """A record from its JSON value (a copy in tycho.json may be of any type)."""
        record = cls(_fields(value))
        record._json = value
        return record

    @classmethod
    def load(cls, package: str, version: str, data: bytes) -> Record:
        """A record object's bytes, checked as ``load_record`` checks them."""
        return cls(load_record(package, version, data))

    @classmethod
    def reservation(cls, *, tool: str, started_at: str, localname: str, push_id: str,
                    fmt: str = FILE, holder: Mapping[str, Any] | None = None,
                    sign: bool = False) -> Record:
        """The record a push holds its version with while it uploads; ``sign``: the
        push was asked to sign (``"sign": true``), so a repair without a key says the
        completed version is unsigned."""
        return cls({"state": PENDING, "tool": tool, "started_at": started_at,
                    "localname": localname, "push_id": push_id,
                    **({} if fmt == FILE else {"format": fmt}),
                    **({} if holder is None else {"holder": dict(holder)}),
                    **({"sign": True} if sign else {})})

    def renewed(self, at: str) -> Record:
        """A pending record's heartbeat: the same record, written again at ``at``."""
        return Record({**self.fields, "renewed_at": at})

    @classmethod
    def complete(cls, sha256: str, size: int, *, pushed_at: str, tool: str,
                 localname: str, extra: Mapping[str, Any] | None = None) -> Record:
        """The full record of a published version (``extra``: a directory's format,
        tree_sha256 and tree_size)."""
        return cls({"sha256": sha256, "size": size, "pushed_at": pushed_at, "tool": tool,
                    "localname": localname, **(extra or {})})

    @classmethod
    def deletion_mark(cls, old: Record | None, *, since: str, by: str) -> Record:
        """What a deletion writes first: the full record it deletes (none when there is
        no full one) saying so."""
        kept = old.fields if old is not None and old.state == "ok" else {}
        return cls({**kept, "state": DELETING, "deleting_since": since, "deleted_by": by})

    def to_json(self) -> object:
        return self._json

    def dump(self) -> bytes:
        return dump(self._json)

    def _text(self, key: str) -> str | None:
        value = self.fields.get(key)
        return value if isinstance(value, str) else None

    @property
    def pending(self) -> bool:
        """A push under way (or cut short): not trusted yet."""
        return self.fields.get("state") == PENDING

    @property
    def deleting(self) -> bool:
        """A deletion under way (or cut short): not trusted any more."""
        return self.fields.get("state") == DELETING

    @property
    def state(self) -> str:
        """"pending", "deleting", or "ok" (a full record)."""
        return _state(self.fields)

    @property
    def format(self) -> str:
        """How the bytes are to be read: "file" (as they are) or "tar+zstd" (a directory)."""
        return _format(self.fields)

    @property
    def sha256(self) -> str | None:
        return self._text("sha256")

    @property
    def tree_sha256(self) -> str | None:
        return self._text("tree_sha256")

    def tree_size(self, package: str, version: str) -> int | None:
        """A directory's recorded unpacked size, the bound of its extraction (None:
        pushed before it was recorded); one that is not a size is refused."""
        value = self.fields.get("tree_size")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or
                                  value < 0):
            raise UnsafeRemoteData(f"{package} {version}: its record's tree_size is malformed")
        return value

    @property
    def pushed_at(self) -> str | None:
        return self._text("pushed_at")

    @property
    def tool(self) -> str | None:
        return self._text("tool")

    @property
    def localname(self) -> object:
        """Untrusted: names.check_remote_localname decides whether it is usable."""
        return self.fields.get("localname")

    @property
    def push_id(self) -> str | None:
        return self._text("push_id")

    @property
    def asks_signature(self) -> bool:
        """A pending record whose push was asked to sign."""
        return self.fields.get("sign") is True

    def expected(self, package: str, version: str) -> Expected:
        """What the bytes must be; a record of a push or deletion cut short, or one
        without a well-formed SHA-256 and size, is refused."""
        if self.pending:
            raise cut_short(package, version)
        if self.deleting:
            raise being_deleted(package, version)
        sha256, size = self.fields.get("sha256"), self.fields.get("size")
        if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256) and
                isinstance(size, int) and not isinstance(size, bool)):
            raise UnsafeRemoteData(f"{package} {version}: its checksum record is malformed")
        from .transfer.engine import Expected

        return Expected(size, sha256=sha256)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._json == other._json

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Record({self._json!r})"


class PackageMeta:
    """tycho.json: ``localname`` and ``latest`` (tycho-station's), the copies of our
    records (``records``, under ``{"tychoreg": {"records": ...}}``) and every other key
    as it was, in its order, so a dump of what was parsed is the same bytes."""

    __slots__ = ("_json", "records")

    def __init__(self, value: dict[str, Any]) -> None:
        self._json = value
        self.records: dict[str, Record] = {
            version: Record.from_json(copy) for version, copy in _records_in(value).items()}

    @classmethod
    def new(cls, localname: str) -> PackageMeta:
        """A new package's tycho.json, as tycho-station's init writes it."""
        return cls({"localname": localname, "latest": None})

    @classmethod
    def parse(cls, package: str, data: bytes) -> PackageMeta:
        """tycho.json's bytes, checked as ``parse_meta`` checks them."""
        return cls(parse_meta(package, data))

    @property
    def localname(self) -> str | None:
        """Untrusted: names.check_remote_localname decides whether it is usable."""
        value = self._json.get("localname")
        return value if isinstance(value, str) else None

    @property
    def latest(self) -> str | None:
        value = self._json.get("latest")
        return value if isinstance(value, str) else None

    @latest.setter
    def latest(self, version: str | None) -> None:
        self._json["latest"] = version

    @property
    def marked(self) -> bool:
        """Whether tychoreg pushed to the package (a push marks it before it uploads),
        so a version without a copy here may still have a record object."""
        return RECORDS_KEY in self._json

    def mark(self) -> None:
        _records_in(self._json, create=True)

    def to_json(self) -> dict[str, Any]:
        """The whole object, the records written back into it (into a section that can
        hold them: one of another shape is replaced only when there are records)."""
        section = self._json.get(RECORDS_KEY)
        holds = isinstance(section, dict) and isinstance(section.get("records"), dict)
        if self.records or holds:
            copies = _records_in(self._json, create=True)
            copies.clear()
            copies.update((v, r.to_json()) for v, r in self.records.items())
        return self._json

    def dump(self) -> bytes:
        return dump(self.to_json())


def parse_meta(package: str, data: bytes) -> dict[str, Any]:
    """tycho.json's bytes: a JSON object whose ``latest`` and ``localname`` are strings
    where present (``latest`` may be null)."""
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json is not valid JSON") from None
    except RecursionError:
        raise UnsafeRemoteData(f"package {package!r}: tycho.json is nested too deeply to "
                               "read") from None
    if not isinstance(meta, dict):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json is not a JSON object")
    latest = meta.get("latest")
    if latest is not None and not isinstance(latest, str):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json 'latest' is not a string")
    if "localname" in meta and not isinstance(meta["localname"], str):
        raise UnsafeRemoteData(f"package {package!r}: tycho.json 'localname' is not a string")
    return meta


def _records_in(meta: dict[str, Any], *, create: bool = False) -> dict[str, Any]:
    """tycho.json's copy of the checksum records: {"tychoreg": {"records": {VERSION: ...}}}.
    A value of the wrong type reads as no records (and is replaced when writing)."""
    section = meta.get(RECORDS_KEY)
    if not isinstance(section, dict):
        section = {}
        if create:
            meta[RECORDS_KEY] = section
    records = section.get("records")
    if not isinstance(records, dict):
        records = {}
        if create:
            section["records"] = records
    return records


def dir_name(localname: str) -> str | None:
    """The directory a directory package extracts to: its localname without
    ``.tar.zst``; None when that leaves no usable name ("", ".", "..")."""
    if not localname.endswith(TAR_ZSTD_SUFFIX):
        return None
    name = localname[:-len(TAR_ZSTD_SUFFIX)]
    return name if name not in ("", ".", "..") else None


def being_deleted(package: str, version: str) -> IncompleteVersion:
    return IncompleteVersion(
        f"{package} {version} is being deleted (a deletion was cut short) and is not "
        f"trusted; run 'tychoreg delete {package} {version}' to finish it")


def cut_short(package: str, version: str) -> IncompleteVersion:
    return IncompleteVersion(
        f"{package} {version}: its push was cut short after it started and the version "
        f"is not trusted; run 'tychoreg verify {package} --version {version} --repair' "
        "to complete or clear it")


def expectation(record: Expected | None, info: ObjectInfo) -> Expected:
    """The integrity policy: what a record says (size and SHA-256) when there is one;
    else, for a version pushed by tycho-station, the size and, where the ETag is a plain
    MD5 (a single-PUT object), the MD5."""
    from .transfer.engine import Expected

    return record if record is not None else Expected(info.size, md5=info.md5)


def checked(expected: Expected) -> str:
    """What a download was checked against, in words (verify reports it)."""
    return "sha256" if expected.sha256 else "size and md5" if expected.md5 else "size"


def load_record(package: str, version: str, data: bytes) -> dict[str, Any]:
    """A record object's bytes, which must hold a JSON object."""
    try:
        record = json.loads(data)
    except ValueError:
        raise UnsafeRemoteData(f"{package} {version}: its checksum record is unreadable") \
            from None
    except RecursionError:
        raise UnsafeRemoteData(f"{package} {version}: its checksum record is nested too "
                               "deeply to read") from None
    if not isinstance(record, dict):
        raise UnsafeRemoteData(f"{package} {version}: its checksum record is malformed")
    return record


def dump(data: object) -> bytes:
    """JSON as tycho-station writes tycho.json (``indent=2``), for every object we write."""
    return json.dumps(data, indent=2).encode("utf-8")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sidecar_says(path: Path, etag: str) -> bool:
    """Whether the sidecar beside ``path`` holds exactly that ETag."""
    try:
        return etag_sidecar(path).read_text(encoding="utf-8") == etag
    except (OSError, UnicodeDecodeError):
        return False


def is_current(path: Path, info: ObjectInfo) -> bool:
    """tycho-station's rule: the sidecar holds the remote ETag and the size matches."""
    return holds(path, info.etag, info.size)


def holds(path: Path, etag: str, size: int) -> bool:
    """``is_current`` for an ETag and a size known without a store (a lock's)."""
    try:
        return sidecar_says(path, etag) and path.stat().st_size == size
    except OSError:
        return False
