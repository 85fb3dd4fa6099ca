"""Directory install: a directory package extracted where a pull puts it, atomically
(into a temporary directory beside it while the stream is hashed, the proof written
into it, then swapped into place), bounded by its recorded tree size, over a directory
only a pull of the same package made (its proof says so), skipped while that proof
names the version's object and the tree still matches it. Loaded only for directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..archive.extract import ChunkPipe, Extracted, Limit, extract
from ..archive.proof import describe_edits, local_edits, read_proof, write_proof
from ..errors import IntegrityError, NotFound, UnsafeRemoteData, UsageError
from ..layout import PROOF, TAR_ZSTD, Record, default_max_unpacked, etag_sidecar, version_key
from ..localfs import dir_target
from ..results import PullResult
from ..storage import ObjectInfo
from ..transfer import Expected
from ..transfer.groups import task_group
from ..units import human_size
from .catalog import Context


def _unpack_limit(package: str, version: str, expected: Expected | None,
                  record: Record, max_unpacked: int | None) -> Limit:
    """How far a directory package's tar may expand: its recorded ``tree_size`` exactly;
    without one (pushed before tree_size was recorded), ``max_unpacked`` or the default
    bound of its compressed size."""
    tree_size = record.tree_size(package, version)
    if tree_size is not None:
        return Limit(tree_size, IntegrityError(
            f"{package} {version}: the archive expands beyond its recorded tree_size of "
            f"{tree_size} bytes"))
    size = max_unpacked if max_unpacked is not None else \
        default_max_unpacked(expected.size if expected is not None else 0)
    return Limit(size, UnsafeRemoteData(
        f"{package} {version}: the archive expands beyond {human_size(size)}, the most a "
        "directory package without a recorded tree_size may unpack to; pass "
        "--max-unpacked SIZE to allow more"))


def _check_proof(package: str, dest: Path, proof: dict[str, Any] | None) -> None:
    """Refuse (exit 2) a directory that no pull of ``package`` made, saying how to go
    on. A ``NAME.etag`` beside it proves nothing (tychoreg 0.1.0 wrote one for the
    directories it pulled, and any file pull can write one)."""
    if proof is None:
        legacy = etag_sidecar(dest)
        if legacy.is_file():
            raise UsageError(
                f"{dest} exists and nothing in it proves that a pull of {package} made "
                f"it (no {PROOF} inside); {legacy.name} beside it is not proof (tychoreg "
                f"0.1.0 wrote one, and so can any file pull). If it is a pulled copy you "
                f"no longer need, remove it (rm -r {dest}) and pull again; otherwise "
                "pull to another --outfile")
        raise UsageError(f"{dest} exists and was not made by a pull of {package} (no "
                         f"{PROOF} inside it); it is left alone: move it away or pull "
                         "to another --outfile")
    owner = proof.get("package")
    if owner != package:
        raise UsageError(f"{dest} holds a pull of package {owner!r}, not {package!r}; "
                         f"it is left alone: pull {package} to another --outfile, or "
                         f"remove {dest} first")


class TreeInstall:
    """One directory package installed at one destination (``outdir``: the download
    folder, never replaced by a tree)."""

    def __init__(self, ctx: Context, outdir: Path) -> None:
        self.ctx = ctx
        self.outdir = outdir

    async def run(self, package: str, version: str, expected: Expected | None,
                  record: Record, dest: Path, *, force: bool,
                  exact: bool, max_unpacked: int | None,
                  pinned: ObjectInfo | None = None) -> PullResult:
        """Extract a directory package at ``dest``, atomically: into a temporary
        directory beside it while the stream is hashed, with the proof written into it;
        ``dest`` is replaced (the old one renamed aside, the new one into place) only
        once the SHA-256 matches. An existing ``dest`` is replaced only if its proof
        says a pull of this package made it, and skipped while that proof names this
        version's object and its manifest still matches the tree (``pinned``: the object
        as a lock file describes it, compared with no HEAD). Replacing a tree with local
        edits proceeds, with a warning naming them."""
        if dest.name in ("", ".", ".."):
            raise UsageError(f"{dest} names no directory; pull a directory package to a "
                             "path such as ./deps")
        key = version_key(package, version)
        limit = _unpack_limit(package, version, expected, record, max_unpacked)
        created, proof = await anyio.to_thread.run_sync(self._target, package, dest)
        warnings: tuple[str, ...] = ()
        try:
            if proof is not None:
                edits = await anyio.to_thread.run_sync(local_edits, dest, proof)
                if not force and not edits and proof.get("version") == version:
                    known = pinned or await self.ctx.engine.head(key)
                    if known is None:
                        raise NotFound(f"{package} {version} does not exist")
                    if proof.get("etag") == known.etag:
                        return PullResult(package, version, dest, known.size, skipped=True,
                                          exact=exact, format=TAR_ZSTD)
                if edits:
                    warnings = (f"{dest} had local edits, replaced by the pull: "
                                f"{describe_edits(edits)}",)
            temp = await anyio.to_thread.run_sync(self.ctx.fs.create_temp_dir, dest)
            try:
                info, extracted = await self._extract(package, version, expected, temp,
                                                      limit)
                want = record.tree_sha256
                if want is not None and extracted.tree_sha256 != want:
                    raise IntegrityError(f"{package} {version}: the extracted tree does not "
                                         "match the recorded tree_sha256")
                await anyio.to_thread.run_sync(write_proof, temp, package, version,
                                               info.etag)
                with anyio.CancelScope(shield=True):
                    old = await anyio.to_thread.run_sync(self.ctx.fs.replace_dir, temp, dest)
                if old is not None:
                    await anyio.to_thread.run_sync(self.ctx.fs.remove_tree, old)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.ctx.fs.remove_tree, temp)
                raise
        except BaseException:
            self.ctx.fs.remove_empty_dirs(created)
            raise
        return PullResult(package, version, dest, info.size, skipped=False, exact=exact,
                          format=TAR_ZSTD, warnings=warnings)

    def _target(self, package: str, dest: Path) -> tuple[list[Path], dict[str, Any] | None]:
        """Check where a directory package may go: a missing path, or a directory whose
        proof says a pull of this package made it; never the current directory, the
        download folder, anything holding them, or a place in /proc. Finish a
        replacement a crash cut short (only once the destination is known to be ours or
        missing); create the folders above it. Returns those created, and the proof of
        the directory there (None: there is none yet)."""
        fs = self.ctx.fs
        if dir_target(dest, keep=(self.outdir,)):
            proof = read_proof(dest)
            _check_proof(package, dest, proof)
            fs.recover_dir(dest)  # leftovers of a replacement: removed
            return fs.make_dirs(dest.parent), proof
        proof = None
        if fs.recover_dir(dest):  # a crash between the two renames: the old tree is back
            proof = read_proof(dest)
            _check_proof(package, dest, proof)
        return fs.make_dirs(dest.parent), proof

    async def _extract(self, package: str, version: str, expected: Expected | None,
                       into: Path, limit: Limit) -> tuple[ObjectInfo, Extracted]:
        """Stream the object through the extractor (a worker thread reading a bounded
        pipe) while the engine hashes it; both must succeed."""
        pipe = ChunkPipe()
        done: list[Extracted] = []

        async def extracting() -> None:
            try:
                done.append(await anyio.to_thread.run_sync(extract, pipe, into,
                                                           limit))
            finally:
                pipe.abandon()

        async with task_group() as tg:
            tg.start_soon(extracting)
            try:
                info = await self.ctx.catalog.stream(package, version, expected, pipe.write)
            except BaseException as exc:
                pipe.fail(exc)
                raise
            pipe.close()
        return info, done[0]
