"""Names, versions and local file names: what is valid, and how versions sort.

Package names and versions become single key segments in the bucket and file names on
disk, so they are checked before they reach either. A ``localname`` read from a bucket
is untrusted and must stay a plain file name inside ``outdir``.
"""

from __future__ import annotations

import re

from .errors import UnsafeRemoteData, UsageError

SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
NAME_MAX = 255  # bytes in a file name on Linux file systems (ext4, xfs, btrfs, tmpfs)
MAX_SEGMENT = 200  # leaves room for "tycho_" + ".pkg" and sidecar suffixes in 255 bytes

_TOKEN = re.compile(r"\d+|[A-Za-z]+")
# Pre-release words sort before the release they precede (1.0rc1 < 1.0).
_PRE_RELEASE = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "c": 3, "rc": 3, "pre": 3,
                "preview": 3}
_END = (1,)


def is_valid_segment(value: str) -> bool:
    return len(value) <= MAX_SEGMENT and SEGMENT.fullmatch(value) is not None


def check_package(name: str) -> str:
    if not is_valid_segment(name):
        raise UsageError(
            f"invalid package name {name!r}: use letters, digits and . _ + - "
            f"(starting with a letter or digit, at most {MAX_SEGMENT} characters)"
        )
    return name


def check_version(version: str) -> str:
    if not is_valid_segment(version):
        raise UsageError(
            f"invalid version {version!r}: use letters, digits and . _ + - "
            f"(starting with a letter or digit, at most {MAX_SEGMENT} characters)"
        )
    return version


def localname_problem(name: object) -> str | None:
    """Why ``name`` is not a safe plain file name, or None when it is."""
    if not isinstance(name, str):
        return "it is not a string"
    if not name or name in {".", ".."}:
        return "it is empty or a dot name"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "it contains a control character"
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        return f"it is longer than {NAME_MAX} bytes"
    return None


def check_localname_arg(name: str) -> str:
    problem = localname_problem(name)
    if problem:
        raise UsageError(f"invalid file name {name!r}: {problem}")
    return name


def check_remote_localname(package: str, name: object) -> str:
    problem = localname_problem(name)
    if problem:
        raise UnsafeRemoteData(
            f"refusing package {package!r}: its tycho.json names the local file {name!r}, "
            f"and {problem}"
        )
    assert isinstance(name, str)
    return name


def version_key(version: str) -> tuple[object, ...]:
    """Natural order: 1.9 < 1.10 < 2.0, 1.0rc1 < 1.0 < 1.0.post1 < 1.0.1 (as PEP 440).

    Numbers compare as numbers; pre-release words sort before the end of a version,
    other words after it; the raw string breaks remaining ties so the order is total.
    """
    parts: list[tuple[object, ...]] = []
    for token in _TOKEN.findall(version):
        if token.isdigit():
            parts.append((3, int(token)))
        elif token.lower() in _PRE_RELEASE:
            parts.append((0, _PRE_RELEASE[token.lower()]))
        else:
            parts.append((2, token.lower()))
    parts.append(_END)
    return (tuple(parts), version)


def sort_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=version_key)
