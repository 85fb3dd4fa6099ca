"""The directory scenario's tree: which files, where, how large, and their bytes.

Pure (no I/O): ``tree_spec`` plans the tree from a seed, ``file_chunks`` makes each file's
bytes from the same seed, so the same options always give the same tree, byte for byte;
fixtures.py writes it. The tree is what a CI cache holds:

- ``small`` files of a few hundred bytes to a few KiB (log-uniform from ``SMALL_MIN`` to
  ``SMALL_MAX``), spread over one directory per ``FILES_PER_DIR`` of them, nested up to
  ``MAX_DEPTH`` deep; ``TEXT_SHARE`` of them text-like (source, configs: about 3x at zstd
  level 3), the rest random (compiled objects: incompressible);
- three large files sharing what is left of the size: one random, one text-like (a log),
  one half-and-half (alternating blocks of each, as a binary with embedded data).

Text-like bytes are slices of a corpus of made-up words (Zipf-distributed, with lines and
indentation), each slice passed through a letter substitution of its own, so that the
words repeat within a file as in real text but no slice repeats another: the compression
ratio is text's (about 3.3x at level 3), not a repetition's.
"""

from __future__ import annotations

import functools
import itertools
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from benchmarks.units import KiB, MiB, fmt_count, fmt_size

TREE_NAME = "tree"  # the directory pushed: tychoreg's package localname is tree.tar.zst
SMALL_MIN = 200  # bytes: "a few hundred bytes to a few KiB"
SMALL_MAX = 6 * KiB
TEXT_SHARE = 0.6  # of the small files
FILES_PER_DIR = 64  # 20,000 small files: 312 directories
MAX_DEPTH = 5
DIR_STEMS = ("src", "lib", "pkg", "tests", "data", "build", "vendor", "include", "docs")
TEXT_EXTENSIONS = (".py", ".txt", ".json", ".h", ".md")
MIN_LARGE = 64 * KiB  # each large file at least
SMALL_SHARE_MAX = 0.5  # the small files may take at most this share of the tree
MIXED_BLOCK = 128 * KiB  # the half-and-half file alternates text and random blocks of this
CHUNK = 1 * MiB  # bytes made at a time (and the longest slice of the corpus)
CORPUS_SIZE = 4 * MiB
SAMPLES = 8  # small files whose SHA-256 a pull's check compares (besides every large one)
_LETTERS = string.ascii_lowercase.encode()


class Content(Enum):
    TEXT = "text"  # text-like: compressible
    RANDOM = "random"  # incompressible
    MIXED = "half-and-half"  # alternating MIXED_BLOCK blocks: text first, then random


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the tree's root, "/"-separated
    size: int
    content: Content
    large: bool = False

    @property
    def random_bytes(self) -> int:
        """How many of its bytes are random (no compressor can shrink those)."""
        if self.content is Content.RANDOM:
            return self.size
        if self.content is Content.TEXT:
            return 0
        return sum(n for kind, n in mixed_blocks(self.size) if kind is Content.RANDOM)


@dataclass(frozen=True)
class TreeSpec:
    name: str
    seed: int
    dirs: tuple[str, ...]  # every directory below the root, each after its parent
    files: tuple[FileSpec, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def small(self) -> tuple[FileSpec, ...]:
        return tuple(f for f in self.files if not f.large)

    @property
    def large(self) -> tuple[FileSpec, ...]:
        return tuple(f for f in self.files if f.large)

    @property
    def random_bytes(self) -> int:
        """The tree's incompressible bytes: a lower bound for any archive of it."""
        return sum(f.random_bytes for f in self.files)

    def samples(self, count: int = SAMPLES) -> tuple[FileSpec, ...]:
        """The files a pull's check hashes: ``count`` small ones chosen by the seed, and
        every large one."""
        small = self.small
        chosen = random.Random(f"samples:{self.seed}").sample(small, min(count, len(small)))
        return (*sorted(chosen, key=lambda f: f.path), *self.large)

    def describe(self) -> str:
        """One line for the report."""
        large = ", ".join(f"{fmt_mib(f.size)} {f.content.value}" for f in self.large)
        return (f"{fmt_count(len(self.files))} files in {fmt_count(len(self.dirs))} "
                f"directories, {fmt_mib(self.total_bytes)}: {fmt_count(len(self.small))} "
                f"small ({fmt_mib(sum(f.size for f in self.small))}, "
                f"{SMALL_MIN} B-{fmt_size(SMALL_MAX)}, {TEXT_SHARE:.0%} text-like) and "
                f"{len(self.large)} large ({large}); {fmt_mib(self.random_bytes)} random; "
                f"seed {self.seed}")

    def summary(self) -> dict[str, Any]:
        """The tree, for the JSON results."""
        return {"name": self.name, "seed": self.seed, "files": len(self.files),
                "dirs": len(self.dirs), "bytes": self.total_bytes,
                "small_files": len(self.small),
                "small_bytes": sum(f.size for f in self.small),
                "random_bytes": self.random_bytes,
                "large": [{"path": f.path, "size": f.size, "content": f.content.value}
                          for f in self.large]}


def fmt_mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB"


def mixed_blocks(size: int) -> list[tuple[Content, int]]:
    """The half-and-half file's blocks: text, random, text, ... of ``MIXED_BLOCK`` bytes
    (the last one shorter)."""
    out = []
    kinds = itertools.cycle((Content.TEXT, Content.RANDOM))
    for offset in range(0, size, MIXED_BLOCK):
        out.append((next(kinds), min(MIXED_BLOCK, size - offset)))
    return out


def tree_spec(total: int, small_files: int, seed: int, name: str = TREE_NAME) -> TreeSpec:
    """The tree of ``total`` bytes exactly: ``small_files`` small files, then three large
    ones sharing the rest. ValueError when the small files would take more than half."""
    if small_files < 1:
        raise ValueError(f"--dir-files must be at least 1, not {small_files}")
    rng = random.Random(f"tree:{seed}")
    dirs: list[str] = []
    parents = [""]  # directories that may still get a child (depth below MAX_DEPTH)
    for i in range(max(1, small_files // FILES_PER_DIR)):
        parent = rng.choice(parents)
        path = f"{parent}/{rng.choice(DIR_STEMS)}{i:03d}".lstrip("/")
        dirs.append(path)
        if path.count("/") + 1 < MAX_DEPTH:
            parents.append(path)
    files = []
    for i in range(small_files):
        size = int(SMALL_MIN * (SMALL_MAX / SMALL_MIN) ** rng.random())
        if rng.random() < TEXT_SHARE:
            content, ext = Content.TEXT, rng.choice(TEXT_EXTENSIONS)
        else:
            content, ext = Content.RANDOM, ".bin"
        files.append(FileSpec(f"{rng.choice(dirs)}/f{i:05d}{ext}", size, content))
    small_bytes = sum(f.size for f in files)
    rest = total - small_bytes
    if small_bytes > SMALL_SHARE_MAX * total or rest < 3 * MIN_LARGE:
        need = max(int(small_bytes / SMALL_SHARE_MAX), small_bytes + 3 * MIN_LARGE)
        raise ValueError(
            f"--dir-size {fmt_size(total)} is too small for {fmt_count(small_files)} small "
            f"files ({fmt_mib(small_bytes)} of them): give at least {need} bytes, or fewer "
            "--dir-files")
    shares = [rest // 3] * 3
    shares[0] += rest % 3
    files += [FileSpec("large-random.bin", shares[0], Content.RANDOM, large=True),
              FileSpec("large-text.log", shares[1], Content.TEXT, large=True),
              FileSpec("large-mixed.bin", shares[2], Content.MIXED, large=True)]
    return TreeSpec(name, seed, tuple(dirs), tuple(files))


# -- the bytes ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def corpus(seed: int, size: int = CORPUS_SIZE) -> bytes:
    """``size`` bytes of made-up text: 4,096 words of 1-12 letters with Zipf frequencies,
    punctuation, line breaks and indentation (made once per seed and size)."""
    rng = random.Random(f"corpus:{seed}")
    words = ["".join(rng.choices(string.ascii_lowercase,
                                 k=min(12, 1 + int(rng.expovariate(0.2)))))
             for _ in range(4096)]
    words += ["\n", "\n    ", "\n        ", ", ", ". ", "(", ")", " = ", ":", "_", "0", "1",
              "42"]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    rng.shuffle(weights)
    cumulative = list(itertools.accumulate(weights))
    out: list[bytes] = []
    made = 0
    while made < size:  # each round adds about 1.2 MB
        chunk = " ".join(rng.choices(words, cum_weights=cumulative, k=200_000)).encode()
        out.append(chunk)
        made += len(chunk)
    return b"".join(out)[:size]


def _text(rng: random.Random, text: bytes, size: int) -> bytes:
    """A slice of the corpus at a random place, its letters substituted afresh."""
    start = rng.randrange(0, len(text) - size + 1)
    table = bytes.maketrans(_LETTERS, bytes(rng.sample(list(_LETTERS), len(_LETTERS))))
    return text[start:start + size].translate(table)


def file_chunks(spec: FileSpec, text: bytes, seed: int) -> Iterator[bytes]:
    """The bytes of the file, in chunks of at most ``CHUNK`` (``text``: the corpus)."""
    rng = random.Random(f"file:{seed}:{spec.path}")
    step = min(CHUNK, len(text))
    blocks = mixed_blocks(spec.size) if spec.content is Content.MIXED else [
        (spec.content, spec.size)]
    for kind, size in blocks:
        for offset in range(0, size, step):
            n = min(step, size - offset)
            yield rng.randbytes(n) if kind is Content.RANDOM else _text(rng, text, n)
