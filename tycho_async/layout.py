"""The tycho-station format, shared with it: object keys, tycho.json (read, written, the
copy of our records under its ``tychoreg`` key), the record states of a push, the
``.etag`` sidecar rule, and what a record says the bytes must be.

tycho-station lists versions as the keys under ``PKG/tycho_`` ending in ``.pkg``, writes
tycho.json with ``indent=2`` and keeps the keys it does not know; everything here keeps
to that, so old and new clients share one bucket and one download folder.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import IncompleteVersion, UnsafeRemoteData
from .storage import ObjectInfo
from .transfer.engine import Expected

RECORDS_KEY = "tychoreg"
LATEST = "latest"  # tycho-station's word for "the latest version", never a version name
PENDING = "pending"  # a push under way: the version is not trusted yet
DELETING = "deleting"  # a deletion under way: the version is not trusted any more
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


def etag_sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


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


def parse_meta(package: str, data: bytes) -> dict[str, Any]:
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


def records_in(meta: dict[str, Any], *, create: bool = False) -> dict[str, Any]:
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


def is_pending(record: object) -> bool:
    return isinstance(record, dict) and record.get("state") == PENDING


def dir_name(localname: str) -> str | None:
    """The directory a directory package extracts to: its localname without
    ``.tar.zst``; None when that leaves no usable name ("", ".", "..")."""
    if not localname.endswith(TAR_ZSTD_SUFFIX):
        return None
    name = localname[:-len(TAR_ZSTD_SUFFIX)]
    return name if name not in ("", ".", "..") else None


def state_of(record: object) -> str:
    """"pending", "deleting", or "ok" (a full record, or none: tycho-station's)."""
    state = record.get("state") if isinstance(record, dict) else None
    return state if state in (PENDING, DELETING) else "ok"


def format_of(record: object) -> str:
    """How the bytes are to be read: "file" (as they are) or "tar+zstd" (a directory)."""
    value = record.get("format") if isinstance(record, dict) else None
    return value if isinstance(value, str) else FILE


def being_deleted(package: str, version: str) -> IncompleteVersion:
    return IncompleteVersion(
        f"{package} {version} is being deleted (a deletion was cut short) and is not "
        f"trusted; run 'tychoreg delete {package} {version}' to finish it")


def cut_short(package: str, version: str) -> IncompleteVersion:
    return IncompleteVersion(
        f"{package} {version}: its push was cut short after it started and the version "
        f"is not trusted; run 'tychoreg verify {package} --version {version} --repair' "
        "to complete or clear it")


def parse_record(package: str, version: str, record: object) -> Expected:
    if is_pending(record):
        raise cut_short(package, version)
    if state_of(record) == DELETING:
        raise being_deleted(package, version)
    sha256 = record.get("sha256") if isinstance(record, dict) else None
    size = record.get("size") if isinstance(record, dict) else None
    if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256) and isinstance(size, int)
            and not isinstance(size, bool)):
        raise UnsafeRemoteData(f"{package} {version}: its checksum record is malformed")
    return Expected(size, sha256=sha256)


def expectation(record: Expected | None, info: ObjectInfo) -> Expected:
    """The integrity policy: what a record says (size and SHA-256) when there is one;
    else, for a version pushed by tycho-station, the size and, where the ETag is a plain
    MD5 (a single-PUT object), the MD5."""
    return record if record is not None else Expected(info.size, md5=info.md5)


def checked(expected: Expected) -> str:
    """What a download was checked against, in words (verify reports it)."""
    return "sha256" if expected.sha256 else "size and md5" if expected.md5 else "size"


def load_record(package: str, version: str, data: bytes) -> dict[str, Any]:
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


def mark(meta: dict[str, Any]) -> None:
    records_in(meta, create=True)


def dump(data: dict[str, Any]) -> bytes:
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
    try:
        return sidecar_says(path, info.etag) and path.stat().st_size == info.size
    except OSError:
        return False
