"""Local file mechanics: temp names, atomic replacement, stale-temp sweeps, special-file
checks, directory packages' swaps. One object owns them so the engine and the registry
never call ``os`` for file I/O themselves, and tests inject a subclass that fails the
way disks do (short writes, read errors) without touching the process; the descriptor
I/O under it, and the wording of an OSError, are ``localio``'s.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import re
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import TransferError, UsageError
from .localio import FileIO, failure
from .names import NAME_MAX

TEMP_MARK = ".tychoreg-"
TEMP_SUFFIX = ".part"
_OLD_TAIL = re.compile(r"h[0-9a-f]{8}-[0-9]+-[0-9a-f]{8}")
_OLD_PREFIX = ".{}.old-"  # a replaced directory package, until removed
_OLD_ROOM = 40  # what an old tree's name adds at most: dot, ".old-", host, pid, random
_HASH_TAIL = 9  # "~" and 8 hex digits: what a shortened name ends with
_NOT_HERE = {errno.ENOENT, errno.EROFS, errno.EPERM, errno.EACCES, errno.EINVAL}


@functools.cache
def _host() -> str:
    """Which machine a temp file's process id belongs to: a short tag of the host name
    (asked when first needed: a warm locked pull writes nothing and loads no socket)."""
    import socket

    return f"h{zlib.crc32(socket.gethostname().encode()):08x}"


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def pseudo_fs(path: Path, *, parent: str | None = None, link: bool = True) -> str | None:
    """"/proc" or "/dev" when ``path`` lies in one of them (its directory resolved, or
    a symlink to a descriptor such as ``/dev/stdout``), else None: no sidecar is ever
    written there, and nothing but descriptors is written in /proc. ``parent``: the
    directory already resolved; ``link`` False: ``path`` is known not to be a symlink
    (no readlink asked)."""
    if parent is None:
        parent = os.path.realpath(path.parent)
    link_to = ""
    if link:
        with contextlib.suppress(OSError):
            link_to = os.path.normpath(os.path.join(parent, os.readlink(path)))
    if _under(parent, "/proc") or _under(link_to, "/proc"):
        return "/proc"
    return "/dev" if _under(parent, "/dev") else None


def same_as_stdout(path: Path) -> bool:
    """Whether ``path`` is the file standard output is (``/dev/stdout``, ``/dev/fd/1``,
    or the file stdout was redirected to): a pull there is a pull to ``-``."""
    try:
        there, out = os.stat(path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (there.st_dev, there.st_ino) == (out.st_dev, out.st_ino)


def dir_target(dest: Path, *, keep: tuple[Path, ...]) -> bool:
    """Look at where a directory package goes before anything is written: True when
    a directory is there, False when nothing is. Refused: the current directory,
    ``keep`` or anything holding them, a place in /proc, a path under something
    that is not a directory, and anything there that is not a directory."""
    resolved = dest.resolve()
    for place in (Path.cwd(), *(path.resolve() for path in keep)):
        if resolved == place or resolved in place.parents:
            raise UsageError(f"{dest} is (or holds) {place}; pull a directory package "
                             "to a path of its own")
    if pseudo_fs(dest) == "/proc":
        raise UsageError(f"cannot extract to {dest}: /proc holds processes, not files; "
                         "choose another path")
    for above in dest.parents:
        if os.path.lexists(above):
            if not above.is_dir():
                raise UsageError(f"{above} is not a directory")
            break
    if not os.path.lexists(dest):
        return False
    if dest.is_symlink() or not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory; pull a directory "
                         "package to a new path, or remove it")
    return True


def is_terminal(stream: BinaryIO | None, fd: int) -> bool:
    """Whether ``stream`` (None: the descriptor ``fd``) is a terminal."""
    try:
        return stream.isatty() if stream is not None else os.isatty(fd)
    except (OSError, ValueError):
        return False


def fitted(name: str, room: int) -> str:
    """``name`` as the start of a file name that adds ``room`` bytes to it: unchanged
    when the whole fits in NAME_MAX bytes, else its first bytes and a hash of all of it
    (so two long names that share a start still make different names)."""
    raw = os.fsencode(name)
    if len(raw) + room <= NAME_MAX:
        return name
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()[:_HASH_TAIL - 1]
    return os.fsdecode(raw[:NAME_MAX - room - _HASH_TAIL]) + "~" + digest


def fits(path: Path) -> bool:
    """Whether ``path``'s own name fits in a file name (a sidecar of a 255-byte
    localname does not, and is then never written)."""
    return len(os.fsencode(path.name)) <= NAME_MAX


_SERIAL = itertools.count(int.from_bytes(os.urandom(4), "big"))


def _unique() -> str:
    """8 hex digits no other temp name of this process has (with the pid, of this host):
    a counter from a random start, so a temp file costs no getrandom call; O_EXCL
    still refuses a clash."""
    return f"{next(_SERIAL) & 0xFFFFFFFF:08x}"


def _temp_name(dest: Path) -> Path:
    """A hidden temp name beside ``dest``: its name (shortened to fit) and a tail that
    says which process made it, which :meth:`LocalFS.sweep_stale` reads."""
    tail = f"{TEMP_MARK}{_host()}-{os.getpid()}-{_unique()}{TEMP_SUFFIX}"
    return dest.with_name(f".{fitted(dest.name, len(os.fsencode(tail)) + 1)}{tail}")


def _old_prefix(name: str) -> str:
    """The start of an old tree's name beside a directory ``name``: always the same for
    one name, so :meth:`LocalFS.recover_dir` finds what :meth:`LocalFS.replace_dir` made."""
    return _OLD_PREFIX.format(fitted(name, _OLD_ROOM))


@dataclass(frozen=True)
class Target:
    """Where a download goes, once the path has been looked at.

    ``kind`` is "file" (a regular file or nothing yet: written to a temp file beside
    ``real`` and renamed onto it) or "stream" (a FIFO, a character device, or a file
    reached through a descriptor in /proc such as ``/dev/fd/3``: written in place, in
    order, with no sidecar). ``named`` is the path as given, beside which the sidecar
    sits; ``real`` is the path with symlinks resolved. ``sidecar`` is False in /dev,
    where no sidecar is ever written (so the file is never taken as current)."""

    named: Path
    real: Path
    kind: str
    sidecar: bool = True

    @property
    def is_stream(self) -> bool:
        return self.kind == "stream"


class LocalFS(FileIO):
    """File operations the transfer engine and the registry need, with errors translated:
    temp files and atomic writes, folders, destinations, directory packages and sweeps,
    on the descriptor I/O of :class:`~tycho_async.localio.FileIO` (whose system-call
    attributes a test replaces to inject a failing disk)."""

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()
        self._batches = 0
        self._resolved: dict[Path, str] = {}  # within a batch: a folder's real path
        self._made: set[Path] = set()  # within a batch: folders known to exist

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Within the block (a pull-list writing thousands of files into a few folders),
        what a destination's folder resolves to and that it exists are looked up once
        per folder, not once per file (a realpath's lstats, a stat per folder above it:
        a dozen system calls a file or more, by the folder's depth). Only for one
        command's run, so a folder whose symlink is switched between two commands of a
        long-lived Client is seen anew."""
        self._batches += 1
        try:
            yield
        finally:
            self._batches -= 1
            if not self._batches:
                self._resolved.clear()
                self._made.clear()

    def _real_dir(self, directory: Path) -> str:
        if not self._batches:
            return os.path.realpath(directory)
        real = self._resolved.get(directory)
        if real is None:
            real = self._resolved[directory] = os.path.realpath(directory)
        return real

    # -- writing --------------------------------------------------------------------------

    def create_temp(self, dest: Path, size: int = 0) -> tuple[Path, int]:
        """A new hidden temp file beside ``dest`` with ``size`` bytes claimed, named so
        that a later sweep can tell a dead process's leftovers from a live one's."""
        self.sweep_stale(dest.parent)
        temp = _temp_name(dest)
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise failure(exc, f"write to {dest.parent}") from exc
        try:
            self.preallocate(fd, size)
        except BaseException:
            self.close(fd)
            self.unlink(temp)
            raise
        return temp, fd

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write a small file by temp file and rename (sidecars, records)."""
        temp, fd = self.create_temp(path)
        try:
            try:
                self.pwrite(fd, data, 0, f"write {path}")
            finally:
                os.close(fd)
            self.replace(temp, path)
        except BaseException:
            self.unlink(temp)
            raise

    # -- directories ----------------------------------------------------------------------

    def make_dirs(self, path: Path) -> list[Path]:
        """Create ``path`` and its missing parents; return those created (deepest last),
        so a failed command can take them back."""
        if path in self._made:
            return []
        created: list[Path] = []
        for parent in [*reversed(path.parents), path]:
            if parent.is_dir():
                continue
            try:
                parent.mkdir()
            except FileExistsError:
                if not parent.is_dir():
                    raise UsageError(f"{parent} is not a directory") from None
                continue
            except NotADirectoryError:
                raise UsageError(f"{parent.parent} is not a directory") from None
            except OSError as exc:
                if exc.errno in _NOT_HERE:  # a place no folder can be made: not a disk fault
                    raise UsageError(f"cannot create {parent}: {exc.strerror}; choose "
                                     "another directory") from exc
                raise failure(exc, f"create {parent}") from exc
            created.append(parent)
        if self._batches:
            self._made.add(path)
        return created

    def remove_empty_dirs(self, created: list[Path]) -> None:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                return
            self._made.discard(path)

    def sweep_stale(self, directory: Path) -> None:
        """Remove temp files that processes no longer running left in ``directory``
        (SIGKILL). Once per directory and process: a sweep reads the whole directory,
        and a pull-list of thousands of files must not read it thousands of times."""
        if directory in self._swept:
            return
        self._swept.add(directory)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and TEMP_MARK in name and name.endswith(TEMP_SUFFIX)):
                continue
            fields = name.rpartition(TEMP_MARK)[2].split("-")
            host, pid_text = (fields[0], fields[1]) if len(fields) == 3 else (_host(), fields[0])
            # Another machine's (or container's) temp file: its process ids are not ours
            # to judge, in a folder shared over NFS or a CI cache volume.
            if host == _host() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
                if entry.is_dir(follow_symlinks=False):  # a directory package's extraction
                    with contextlib.suppress(TransferError):
                        self.remove_tree(Path(entry.path))
                else:
                    self.unlink(Path(entry.path))

    # -- destinations ---------------------------------------------------------------------

    def target(self, named: Path, *, within: Path | None = None) -> Target:
        """Look at a download destination before anything is written.

        A symlink is followed (the resolved file is replaced, the link stays); with
        ``within``, a link that resolves outside that directory is refused. FIFOs and
        character devices are written in place; sockets, directories and block devices
        are refused: a pull replaces regular files only."""
        mode = self._mode(named, follow=False)  # one lstat tells what a plain name is
        link = mode is not None and stat.S_ISLNK(mode)
        if link:  # follows links, /proc's fd links included (None: a dangling link)
            mode = self._mode(named, follow=True)
        if within is not None and link:
            real = Path(os.path.realpath(named))
            root = Path(os.path.realpath(within))
            if real != root and root not in real.parents:
                raise UsageError(f"{named} is a symlink to {real}, outside {within}; "
                                 "refusing to write there")
        parent = self._real_dir(named.parent)
        pseudo = pseudo_fs(named, parent=parent, link=link)
        if pseudo == "/proc" and mode is not None and stat.S_ISREG(mode):
            return Target(named, named, "stream", sidecar=False)  # a descriptor's file
        if pseudo == "/proc" and mode is None:
            raise UsageError(f"cannot write {named}: /proc holds processes, not files; "
                             "choose another path")
        if mode is None or stat.S_ISREG(mode):
            plain = not link and named.name not in ("", ".", "..")
            real = Path(parent, named.name) if plain else Path(os.path.realpath(named))
            return Target(named, real, "file", sidecar=pseudo is None)
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            # opened by the name given: /dev/stdout resolves to a pipe's /proc name
            return Target(named, named, "stream", sidecar=False)
        what = ("a directory" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a block device" if stat.S_ISBLK(mode) else "not a regular file")
        raise UsageError(f"{named} is {what}; pull writes regular files, FIFOs and "
                         "character devices only")

    @staticmethod
    def _mode(named: Path, *, follow: bool) -> int | None:
        """The file type and mode at ``named`` (None: nothing there)."""
        try:
            return (os.stat(named) if follow else os.lstat(named)).st_mode
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            blocker = next((p for p in named.parents if p.exists() and not p.is_dir()),
                           named.parent)
            raise UsageError(f"cannot write {named}: {blocker} is not a directory") from None
        except OSError as exc:
            raise failure(exc, f"write {named}") from exc

    # -- directory packages ---------------------------------------------------------------

    def create_temp_dir(self, dest: Path) -> Path:
        """A new empty directory beside ``dest`` to extract into, named as temp files are,
        so the same sweep removes it once its process is gone."""
        self.sweep_stale(dest.parent)
        temp = _temp_name(dest)
        try:
            os.mkdir(temp)
        except OSError as exc:
            raise failure(exc, f"write to {dest.parent}") from exc
        return temp

    def replace_dir(self, temp: Path, dest: Path) -> Path | None:
        """Install ``temp`` as ``dest``: the old directory renamed aside, the new one
        renamed into place. Returns the old one (None if there was none), for the caller
        to remove once it has recorded the new one. A crash between the two renames
        leaves ``.NAME.old-*``, which :meth:`recover_dir` puts back."""
        old = dest.with_name(f"{_old_prefix(dest.name)}{_host()}-{os.getpid()}-"
                             f"{os.urandom(4).hex()}")
        try:
            os.rename(dest, old)
            moved = True
        except FileNotFoundError:
            moved = False
        except OSError as exc:
            raise failure(exc, f"replace {dest}") from exc
        try:
            os.rename(temp, dest)
        except OSError as exc:
            if moved:
                with contextlib.suppress(OSError):
                    os.rename(old, dest)
            raise failure(exc, f"replace {dest}") from exc
        return old if moved else None

    def recover_dir(self, dest: Path) -> bool:
        """Finish what a crash in :meth:`replace_dir` left: with ``dest`` missing, the
        newest ``.NAME.old-h<host>-<pid>-<hex>`` goes back in its place (True: restored);
        the others are removed. Only names of exactly that form are touched (a user's
        ``.NAME.old-backup`` is not ours), and a live process's (on this host) are in
        use and left alone."""
        prefix = _old_prefix(dest.name)
        try:
            names = [name for name in os.listdir(dest.parent)
                     if name.startswith(prefix) and _OLD_TAIL.fullmatch(name[len(prefix):])]
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise failure(exc, f"read {dest.parent}") from exc
        olds: list[tuple[int, Path]] = []
        for name in names:
            host, pid_text, _ = name[len(prefix):].split("-")
            if host == _host() and _pid_alive(int(pid_text)):
                continue
            path = dest.parent / name
            with contextlib.suppress(OSError):  # the rename bumps ctime, not mtime
                olds.append((os.lstat(path).st_ctime_ns, path))
        olds.sort()
        restored = False
        if olds and not os.path.lexists(dest):
            try:
                os.rename(olds.pop()[1], dest)
            except OSError as exc:
                raise failure(exc, f"restore {dest}") from exc
            restored = True
        for _, path in olds:
            self.remove_tree(path)
        return restored

    def make_scratch_dir(self, prefix: str) -> Path:
        """A new private directory in the system's temporary folder (verify downloads
        into one)."""
        import tempfile  # only verify needs one: pulls start without it

        return Path(tempfile.mkdtemp(prefix=prefix))

    def drop_scratch_dir(self, path: Path) -> None:
        """Remove a scratch directory and everything in it; what cannot be removed is
        left to the system's temporary folder."""
        import shutil

        shutil.rmtree(path, ignore_errors=True)

    def remove_tree(self, path: Path) -> None:
        """Remove a directory and everything in it (a file or symlink: just that), if it
        exists. Read-only directories in it (a Go module cache) are made writable first,
        never following a symlink."""
        import shutil

        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
                return
            try:
                shutil.rmtree(path)
            except PermissionError:
                _make_dirs_writable(path)
                shutil.rmtree(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise failure(exc, f"remove {path}") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_dirs_writable(root: Path) -> None:
    os.chmod(root, 0o700)
    for parent, dirs, _ in os.walk(root):
        for name in dirs:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)
