"""What a local file's bytes hash to, in one pass: its SHA-256 (our records), its MD5 (a
single-PUT ETag) and the multipart ETag boto3's defaults would have given it, so that
``push --skip-existing`` can tell whether a version tycho-station pushed holds these
very bytes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .localfs import LocalFS

MiB = 1024 * 1024
# boto3 (s3transfer) uploads a file of 8 MiB or more in parts of 8 MiB, grown to stay
# within 10,000 parts; below that, in one PUT whose ETag is the MD5.
BOTO3_THRESHOLD = 8 * MiB
BOTO3_PART = 8 * MiB
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str
    md5: str
    boto3_etag: str  # the ETag boto3's upload_file would have produced, without quotes


def boto3_part_size(size: int) -> int:
    part = BOTO3_PART
    while -(-size // part) > MAX_PARTS:
        part *= 2
    return part


def file_digests(fs: LocalFS, path: Path) -> Digests:
    """Hash ``path`` once, in 1 MiB reads (memory stays flat whatever its size)."""
    fd = fs.open_read(path)
    try:
        size = os.fstat(fd).st_size
        part = boto3_part_size(size)
        sha256, md5, part_md5 = hashlib.sha256(), hashlib.md5(), hashlib.md5()
        parts: list[bytes] = []
        offset = 0
        while offset < size:
            data = fs.pread(fd, min(MiB, size - offset, part - offset % part), offset,
                            f"read {path}")
            if not data:
                break
            sha256.update(data)
            md5.update(data)
            part_md5.update(data)
            offset += len(data)
            if offset % part == 0 or offset == size:
                parts.append(part_md5.digest())
                part_md5 = hashlib.md5()
    finally:
        fs.close(fd)
    whole = md5.hexdigest()
    etag = whole if size < BOTO3_THRESHOLD else \
        f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
    return Digests(offset, sha256.hexdigest(), whole, etag)
