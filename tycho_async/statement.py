"""What a signature vouches for: a version's statement, and the ``.sig`` object that
carries it with its signatures. Pure: no key, no crypto, no store.

The statement names everything a pull relies on, so a signature of one version cannot
be replayed onto another, aimed at another file name, or made to vouch for other bytes::

    tychoreg-statement-v1
    package PKG
    version VERSION
    localname NAME
    sha256 HEX
    size N
    format file            (or tar+zstd, then two more lines:)
    tree_sha256 HEX
    tree_size N

One ``key value`` per line in exactly this order, separated by one space, each line
ending in ``\\n`` (the last too), UTF-8; ``tree_size`` is left out for a directory pushed
before it was recorded, and both tree lines for one whose record has no tree hash (a
push completed by ``verify --repair``): the archive's sha256 fixes its tree all the same.
``PKG/tycho_VERSION.sig`` holds it as JSON::

    {"statement": "<the statement>",
     "signatures": [{"signature": "-----BEGIN SSH SIGNATURE-----\\n...",
                     "principal_hint": "ci@example.com"}]}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from .errors import SignatureError
from .layout import FILE, TAR_ZSTD, Record

HEADER = "tychoreg-statement-v1"
_FIELDS = ("package", "version", "localname", "sha256", "size", "format")
_TREE = ("tree_sha256", "tree_size")
_NUMBER, _HEX = re.compile(r"0|[1-9][0-9]*"), re.compile(r"[0-9a-f]{64}")
_VALUES = {"size": _NUMBER, "tree_size": _NUMBER, "sha256": _HEX, "tree_sha256": _HEX}
_ANY = re.compile(r"[^\x00-\x1f\x7f]+")  # names: no control character
MAX_SIG_BYTES = 1 << 20  # a .sig is a few KiB; more is refused unread


class Statement:
    """A version's statement: built from its record (to sign, or to compare with what
    was signed) or parsed from a ``.sig``."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    @classmethod
    def of(cls, package: str, version: str, localname: str, record: Record) -> Statement:
        """The statement of a complete version, by its record and its localname."""
        expected = record.expected(package, version)
        tree = record.tree_sha256 if record.format == TAR_ZSTD else None
        return cls.make(package, version, localname, str(expected.sha256), expected.size,
                        record.format, tree,
                        None if tree is None else record.tree_size(package, version))

    @classmethod
    def make(cls, package: str, version: str, localname: str, sha256: str, size: int,
             fmt: str, tree_sha256: str | None = None, tree_size: int | None = None
             ) -> Statement:
        """The statement of these values, in the one order (a record's, or a lock
        entry's); the tree lines only with a tree hash (the archive's sha256 alone
        fixes the tree too)."""
        fields = {"package": package, "version": version, "localname": localname,
                  "sha256": sha256, "size": str(size), "format": fmt}
        if tree_sha256 is not None:
            fields["tree_sha256"] = tree_sha256
            if tree_size is not None:
                fields["tree_size"] = str(tree_size)
        return cls(fields)

    @classmethod
    def parse(cls, package: str, version: str, text: str) -> Statement:
        """A signed statement's text, read back strictly: anything but the exact form
        this module writes is refused (two texts for one meaning would let a signature
        stand for what its signer never wrote)."""
        lines = text.split("\n")
        if lines[-1] != "" or not lines or lines[0] != HEADER:
            raise _malformed(package, version)
        fields: dict[str, str] = {}
        for line in lines[1:-1]:
            key, sep, value = line.partition(" ")
            if not sep or not value or key in fields:
                raise _malformed(package, version)
            fields[key] = value
        shapes = (_FIELDS, _FIELDS + _TREE[:1], _FIELDS + _TREE) \
            if fields.get("format") == TAR_ZSTD else (_FIELDS,)
        if tuple(fields) not in shapes or fields["format"] not in (FILE, TAR_ZSTD):
            raise _malformed(package, version)
        if any(not _VALUES.get(key, _ANY).fullmatch(value) for key, value in fields.items()):
            raise _malformed(package, version)
        statement = cls(fields)
        if statement.text() != text:
            raise _malformed(package, version)
        return statement

    def text(self) -> str:
        return "".join(f"{line}\n" for line in
                       (HEADER, *(f"{key} {value}" for key, value in self.fields.items())))

    def data(self) -> bytes:
        """The bytes that are signed."""
        return self.text().encode("utf-8")

    def digest(self) -> str:
        """The statement's SHA-256: what a lock file records beside the signer."""
        return hashlib.sha256(self.data()).hexdigest()

    def differs(self, other: Statement) -> str | None:
        """The first field in which ``other`` says something else, or None."""
        for key in dict.fromkeys((*self.fields, *other.fields)):
            if self.fields.get(key) != other.fields.get(key):
                return key
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Statement) and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]


class Signature:
    """One signature of a statement: the armored SSHSIG text, and who its signer said
    they were (a hint for people only: the principal is found by the key)."""

    __slots__ = ("armored", "principal_hint")

    def __init__(self, armored: str, principal_hint: str) -> None:
        self.armored = armored
        self.principal_hint = principal_hint

    def to_json(self) -> dict[str, str]:
        return {"signature": self.armored, "principal_hint": self.principal_hint}


class SigFile:
    """``PKG/tycho_VERSION.sig``: a statement's text and its signatures, every other key
    kept as it was."""

    __slots__ = ("extra", "signatures", "statement")

    def __init__(self, statement: str, signatures: Sequence[Signature],
                 extra: dict[str, Any] | None = None) -> None:
        self.statement = statement
        self.signatures = list(signatures)
        self.extra = extra or {}

    @classmethod
    def parse(cls, package: str, version: str, data: bytes) -> SigFile:
        where = f"{package} {version}: its signature file"
        if len(data) > MAX_SIG_BYTES:
            raise SignatureError(f"{where} is larger than {MAX_SIG_BYTES} bytes")
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            raise SignatureError(f"{where} is not valid JSON") from None
        if not isinstance(value, dict) or not isinstance(value.get("statement"), str) or \
                not isinstance(value.get("signatures"), list):
            raise SignatureError(f"{where} is not an object with a statement and signatures")
        signatures = []
        for item in value["signatures"]:
            if not isinstance(item, dict) or not isinstance(item.get("signature"), str):
                raise SignatureError(f"{where} holds a signature that is not an object with "
                                     "a signature")
            hint = item.get("principal_hint")
            signatures.append(Signature(item["signature"], hint if isinstance(hint, str)
                                        else ""))
        extra = {k: v for k, v in value.items() if k not in ("statement", "signatures")}
        return cls(value["statement"], signatures, extra)

    def dump(self) -> bytes:
        return json.dumps({"statement": self.statement,
                           "signatures": [s.to_json() for s in self.signatures],
                           **self.extra}, indent=2).encode("utf-8")


def _malformed(package: str, version: str) -> SignatureError:
    return SignatureError(f"{package} {version}: its signed statement is malformed")
