"""What the benchmark runs: the clients, the two fixture layouts and the scenarios, by name.

Pure data and pure functions (no I/O), so the plan of a run can be unit-tested and printed
before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from benchmarks.tree import TreeSpec, tree_spec
from benchmarks.units import KiB, MiB, fmt_count, fmt_size, parse_count, parse_size

PACKAGE_VERSION = "1.0"


class ClientName(Enum):
    """The tools compared; the value is how rows and ``--clients`` name them."""

    TYCHOREG = "tychoreg"
    STATION = "tycho-station"  # benchmarks/tycho_station.py: boto3, one package after another
    AWS = "aws"  # aws s3 cp
    S5CMD = "s5cmd"
    RAW_HTTP = "raw-http"  # not a client: one plain HTTP request, the loopback ceiling
    # not a client: ``python -c pass`` of the interpreter that runs tychoreg, in every
    # start-up scenario, the floor issue 16's start-up targets are ratios to
    PYTHON = "python"
    # another install of tychoreg (``--baseline EXE``: the wheel before a change), run as
    # tychoreg is and interleaved with it, for an A/B comparison in one run
    BASELINE = "tychoreg-base"

    @property
    def is_tychoreg(self) -> bool:
        """tychoreg itself or its baseline: the same commands, layouts and scenarios."""
        return self in (ClientName.TYCHOREG, ClientName.BASELINE)

    @classmethod
    def parse(cls, text: str) -> tuple[ClientName, ...]:
        """``tychoreg,s5cmd`` -> the members, in the order given; ValueError on a typo."""
        names = [part.strip() for part in text.split(",") if part.strip()]
        known = {member.value: member for member in cls}
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"unknown client(s) {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(known)}")
        return tuple(dict.fromkeys(known[name] for name in names))


DEFAULT_CLIENTS = (ClientName.TYCHOREG, ClientName.STATION, ClientName.AWS, ClientName.S5CMD,
                   ClientName.PYTHON)
# The clients whose medians the targets compare: --budget never cuts their runs short.
TARGET_CLIENTS = frozenset({ClientName.TYCHOREG, ClientName.S5CMD, ClientName.PYTHON,
                            ClientName.BASELINE})


class Layout(Enum):
    """How the packages a scenario reads were written to the bucket."""

    # PKG/tycho.json {"localname", "latest"} + PKG/tycho_1.0.pkg, as tycho-station pushes:
    # tychoreg checks them by size and MD5 (a plain-MD5 ETag), or size alone (multipart).
    STATION = "tycho-station"
    # as tychoreg pushes: also PKG/tycho_1.0.meta.json and the same record in tycho.json
    # under "tychoreg": {"records": {...}}, so tychoreg checks SHA-256.
    TYCHOREG = "tychoreg"


class Group(Enum):
    """The scenario families of issue 9 (and issue 10's directory packages); ``--scenarios``
    takes these values."""

    STARTUP = "startup"
    PUSH = "push"
    PULL = "pull"
    PULL_LIST = "pull-list"
    SCALING = "scaling"
    API = "api"  # pull_many through the Python API, in one process: CPU per request
    DIRECTORY = "directory"  # a tree pushed and pulled: tychoreg vs tar | zstd | s5cmd
    LOCK = "lock"  # issue 18: pull-list --locked and push-list, each against its other form
    SIGN = "sign"  # issue 19: pull-list under --allowed-signers against the same without

    @classmethod
    def parse(cls, text: str) -> frozenset[Group]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        known = {member.value: member for member in cls}
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(known)}")
        return frozenset(known[name] for name in names)


class Action(Enum):
    """What one measured command does."""

    HELP = "help"  # start a command that does no I/O (--help, version)
    PUSH = "push"  # upload one file as a new package version
    PULL = "pull"  # download one package
    PULL_LIST = "pull-list"  # download the latest of many packages
    PULL_MANY = "pull-many"  # the same through the Python API (tycho_async.api.pull_many)
    PUSH_DIR = "push-dir"  # pack a directory (tar + zstd) and upload it
    PULL_DIR = "pull-dir"  # download a packed directory and extract it
    # issue 18 (the lock group): each scenario runs two commands, interleaved (LOCK_SIDES)
    PULL_LOCKED = "pull-locked"  # pull-list --locked into an empty outdir
    PULL_CURRENT = "pull-current"  # pull-list --locked again, into an outdir already current
    PUSH_LIST = "push-list"  # many package versions in one push-list process
    PUSH_EACH = "push-each"  # the same versions, one tychoreg push process after another
    # issue 19 (the sign group): the lock group's pattern, the fixture's versions signed
    SIGN_PULL = "sign-pull"  # pull-list --allowed-signers into an empty outdir
    SIGN_CURRENT = "sign-current"  # pull-list --locked --allowed-signers, all current


@dataclass(frozen=True)
class Scenario:
    """One measured situation: every chosen client runs it ``repeat`` times (interleaved)."""

    group: Group
    action: Action
    size: int = 0  # bytes per package (0 for HELP)
    count: int = 1  # packages moved by one run
    latency_ms: int = 0  # round trip added by the delay proxy (0: no proxy)
    layouts: tuple[Layout, ...] = ()  # fixtures read: tychoreg on each, others on the first
    clients: tuple[ClientName, ...] | None = None  # None: every chosen client
    files: int = 0  # directory: the files in the tree (``size`` is the tree's bytes)
    level: int = 0  # directory: the zstd level both sides compress at

    @property
    def name(self) -> str:
        """``push 256 MiB``, ``pull-list 500 x 16 KiB @20ms``, ``start-up pull 1 KiB``,
        ``scaling pull-list 10,000 x 4 KiB``, ``directory push 500 MiB, 20,003 files,
        zstd -3``."""
        if self.action is Action.HELP:
            return "start-up --help"
        if self.group is Group.DIRECTORY:
            verb = "push" if self.action is Action.PUSH_DIR else "pull"
            return (f"directory {verb} {fmt_size(self.size)}, {fmt_count(self.files)} files, "
                    f"zstd -{self.level}")
        what = f"{self.action.value} {fmt_size(self.size)}"
        if self.action is Action.PULL_LIST:
            what = f"pull-list {fmt_count(self.count)} x {fmt_size(self.size)}"
        if self.action is Action.PULL_MANY:
            return f"api pull_many {fmt_count(self.count)} x {fmt_size(self.size)}"
        if self.group is Group.SIGN:
            locked = "--locked " if self.action is Action.SIGN_CURRENT else ""
            current = ", all current" if self.action is Action.SIGN_CURRENT else ""
            return (f"sign pull-list {locked}{fmt_count(self.count)} x {fmt_size(self.size)} "
                    f"@{self.latency_ms}ms{current}")
        if self.group is Group.LOCK:
            verb = "push-list" if self.action is Action.PUSH_LIST else "pull-list"
            current = ", all current" if self.action is Action.PULL_CURRENT else ""
            return (f"lock {verb} {fmt_count(self.count)} x {fmt_size(self.size)} "
                    f"@{self.latency_ms}ms{current}")
        prefix = {Group.STARTUP: "start-up ", Group.SCALING: "scaling "}.get(self.group, "")
        # latency shown where it varies (or is not 0)
        at = f" @{self.latency_ms}ms" if self.group is Group.PULL_LIST or self.latency_ms else ""
        return f"{prefix}{what}{at}"

    @property
    def total_bytes(self) -> int:
        return self.size * self.count

    @property
    def reads(self) -> bool:
        return self.action in (Action.PULL, Action.PULL_LIST, Action.PULL_MANY,
                               Action.PULL_DIR, Action.PULL_LOCKED, Action.PULL_CURRENT,
                               Action.SIGN_PULL, Action.SIGN_CURRENT)

    def takes(self, client: ClientName) -> bool:
        if client is ClientName.BASELINE:
            client = ClientName.TYCHOREG
        return self.clients is None or client in self.clients

    def runs(self, clients: Sequence[ClientName]) -> list[tuple[ClientName, Layout | None]]:
        """(client, fixture layout) pairs measured in this scenario: tychoreg once per
        layout (it checks the two kinds differently), every other client on the first; the
        bare interpreter in start-up scenarios only, reading nothing."""
        out: list[tuple[ClientName, Layout | None]] = []
        for client in clients:
            if not self.takes(client) or not supports(client, self.action):
                continue
            if client is ClientName.PYTHON:
                if self.group is Group.STARTUP:
                    out.append((client, None))
            elif not self.layouts:
                out.append((client, None))
            elif client.is_tychoreg:
                out.extend((client, layout) for layout in self.layouts)
            else:
                out.append((client, self.layouts[0]))
        return out


DIRECTORY_CLIENTS = (ClientName.TYCHOREG, ClientName.S5CMD)  # s5cmd: the shell pipeline

# The lock group's scenarios (and the sign group's, run the same way): the commands of
# each, interleaved, the first the one its target is about, each (client, action, the
# table's label): tychoreg runs two command lines in one scenario, or tychoreg and the
# bare interpreter.
LockSide = tuple[ClientName, Action, str]
LOCK_SIDES: dict[Action, tuple[LockSide, ...]] = {
    Action.PULL_LOCKED: ((ClientName.TYCHOREG, Action.PULL_LOCKED, "tychoreg --locked"),
                         (ClientName.TYCHOREG, Action.PULL_LIST, "tychoreg --from-file")),
    Action.PULL_CURRENT: ((ClientName.TYCHOREG, Action.PULL_CURRENT, "tychoreg --locked"),
                          (ClientName.PYTHON, Action.HELP, "python -c pass")),
    Action.PUSH_LIST: ((ClientName.TYCHOREG, Action.PUSH_LIST, "tychoreg push-list"),
                       (ClientName.TYCHOREG, Action.PUSH_EACH, "tychoreg push, each")),
    Action.SIGN_PULL: ((ClientName.TYCHOREG, Action.SIGN_PULL, "tychoreg signed"),
                       (ClientName.TYCHOREG, Action.PULL_LIST, "tychoreg unsigned")),
    Action.SIGN_CURRENT: ((ClientName.TYCHOREG, Action.SIGN_CURRENT, "tychoreg --locked signed"),
                          (ClientName.PYTHON, Action.HELP, "python -c pass")),
}


def supports(client: ClientName, action: Action) -> bool:
    """raw-http moves one object and has nothing to start up that is worth a row; a
    directory is pushed and pulled by tychoreg and by the shell pipeline around s5cmd;
    only tychoreg has a Python API."""
    if action in (Action.PUSH_DIR, Action.PULL_DIR):
        return client in DIRECTORY_CLIENTS or client is ClientName.BASELINE
    if action in (Action.PULL_MANY, Action.PULL_LOCKED, Action.PULL_CURRENT,
                  Action.PUSH_LIST, Action.PUSH_EACH, Action.SIGN_PULL, Action.SIGN_CURRENT):
        return client.is_tychoreg
    if client is ClientName.RAW_HTTP:
        return action in (Action.PUSH, Action.PULL)
    return True


@dataclass(frozen=True)
class Options:
    """The sizes and counts a run uses (``--quick`` and the defaults are two of these)."""

    size: int = 256 * MiB  # push and pull
    tiny: int = 1 * KiB  # start-up push and pull
    lists: tuple[tuple[int, int], ...] = ((100, 1 * MiB), (500, 16 * KiB))  # (count, size)
    latencies: tuple[int, ...] = (0, 20)  # for pull-list
    list_lengths: tuple[int, ...] = (100, 1_000, 10_000)  # scaling, marginal cost
    s5cmd_length: int = 5_000  # scaling: the length compared with s5cmd
    scaling_size: int = 4 * KiB
    api: tuple[int, int] = (500, 16 * KiB)  # pull_many through the Python API: (count, size)
    repeat: int = 5  # issue 16: medians of at least 5 interleaved runs
    startup_repeat: int = 5  # start-up runs are short and noisy: at least this many
    groups: frozenset[Group] = field(default_factory=lambda: frozenset(Group))
    dir_size: int = 500 * MiB  # directory: the whole tree's bytes
    dir_files: int = 20_000  # directory: its small files (three large ones come on top)
    dir_level: int = 3  # directory: the zstd level given to both sides
    dir_seed: int = 10  # directory: the tree's layout and bytes follow from it
    lock_list: tuple[int, int] = (100, 1 * MiB)  # lock and sign: the pulls' (count, size)
    lock_push: tuple[int, int, int] = (10, 5, 64 * KiB)  # lock: (packages, versions, size)
    lock_latency: int = 20  # lock, sign: the round trip added (ms); 0 where no proxy runs


FULL = Options()
QUICK = Options(size=16 * MiB, lists=((20, 1 * MiB), (100, 16 * KiB)),
                list_lengths=(50, 200, 500), s5cmd_length=300, api=(100, 16 * KiB), repeat=1,
                startup_repeat=1,
                dir_size=40 * MiB, dir_files=2_000, lock_list=(20, 1 * MiB),
                lock_push=(4, 5, 64 * KiB))
LARGE_FILES = 3  # the tree's large files (benchmarks/tree.py), besides its small ones
MAX_LEVEL = 19  # zstd's highest level without --ultra


def parse_level(text: str) -> int:
    """``3`` -> 3: a zstd level both tychoreg and the zstd CLI take as is (1 to 19)."""
    try:
        level = int(text.strip())
    except ValueError:
        level = 0
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"expected a zstd level from 1 to {MAX_LEVEL}, not {text!r}")
    return level


def directory_spec(options: Options) -> TreeSpec:
    """The directory scenario's tree for these options."""
    return tree_spec(options.dir_size, options.dir_files, options.dir_seed)


def _option(name: str, parse: Callable[[str], int], text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def with_directory(options: Options, *, size: str | None = None, files: str | None = None,
                   level: str | None = None, seed: int | None = None) -> Options:
    """``options`` with the directory scenario's ``--dir-size``, ``--dir-files``,
    ``--dir-level`` and ``--dir-seed`` as given (None: keep); ValueError for a value that
    does not parse, or for a tree that cannot be made (small files over half of it) when
    the directory scenario is to run."""
    out = replace(
        options,
        dir_size=_option("--dir-size", parse_size, size, options.dir_size),
        dir_files=_option("--dir-files", parse_count, files, options.dir_files),
        dir_level=_option("--dir-level", parse_level, level, options.dir_level),
        dir_seed=options.dir_seed if seed is None else seed)
    if Group.DIRECTORY in out.groups:
        directory_spec(out)  # raises when the tree does not fit: said now, not after an hour
    return out


def parse_lists(text: str) -> tuple[tuple[int, int], ...]:
    """``100x1MiB,500x16KiB`` -> ((100, 1048576), (500, 16384)): COUNTxSIZE, sizes as
    tychoreg reads them (a bare number is bytes)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        count, x, size = part.lower().partition("x")
        if not x or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"expected COUNTxSIZE such as 100x1MiB, not {part!r}")
        out.append((int(count), parse_size(size)))
    if not out:
        raise ValueError("no COUNTxSIZE given")
    return tuple(out)


def scaling_lengths(options: Options) -> tuple[int, ...]:
    return tuple(sorted({*options.list_lengths, options.s5cmd_length}))


def build_scenarios(options: Options) -> list[Scenario]:
    """Every scenario of a run, in the order they run."""
    groups = options.groups
    both = (Layout.STATION, Layout.TYCHOREG)
    out: list[Scenario] = []
    if Group.STARTUP in groups:
        out += [Scenario(Group.STARTUP, Action.HELP),
                Scenario(Group.STARTUP, Action.PULL, options.tiny, layouts=(Layout.TYCHOREG,)),
                Scenario(Group.STARTUP, Action.PUSH, options.tiny)]
    if Group.PUSH in groups:
        out.append(Scenario(Group.PUSH, Action.PUSH, options.size))
    if Group.PULL in groups:
        out.append(Scenario(Group.PULL, Action.PULL, options.size, layouts=both))
    if Group.PULL_LIST in groups:
        for count, size in options.lists:
            for latency in options.latencies:
                out.append(Scenario(Group.PULL_LIST, Action.PULL_LIST, size, count, latency,
                                    layouts=both))
    if Group.SCALING in groups:
        for count in scaling_lengths(options):
            out.append(Scenario(Group.SCALING, Action.PULL_LIST, options.scaling_size, count,
                                layouts=(Layout.TYCHOREG,),
                                clients=(ClientName.TYCHOREG, ClientName.S5CMD)))
    if Group.API in groups:
        count, size = options.api
        out.append(Scenario(Group.API, Action.PULL_MANY, size, count,
                            layouts=(Layout.TYCHOREG,), clients=(ClientName.TYCHOREG,)))
    if Group.DIRECTORY in groups:
        for action in (Action.PUSH_DIR, Action.PULL_DIR):
            out.append(Scenario(Group.DIRECTORY, action, options.dir_size,
                                clients=DIRECTORY_CLIENTS,
                                files=options.dir_files + LARGE_FILES,
                                level=options.dir_level))
    if Group.LOCK in groups:
        count, size = options.lock_list
        packages, versions, push_size = options.lock_push
        for action in (Action.PULL_LOCKED, Action.PULL_CURRENT):
            out.append(Scenario(Group.LOCK, action, size, count, options.lock_latency,
                                layouts=(Layout.TYCHOREG,), clients=(ClientName.TYCHOREG,)))
        out.append(Scenario(Group.LOCK, Action.PUSH_LIST, push_size, packages * versions,
                            options.lock_latency, clients=(ClientName.TYCHOREG,)))
    if Group.SIGN in groups:
        count, size = options.lock_list
        for action in (Action.SIGN_PULL, Action.SIGN_CURRENT):
            out.append(Scenario(Group.SIGN, action, size, count, options.lock_latency,
                                layouts=(Layout.TYCHOREG,), clients=(ClientName.TYCHOREG,)))
    return out


def push_list_items(packages: int, versions: int) -> list[tuple[str, str]]:
    """The lock group's push-list: (package, version) for ``packages`` packages of
    ``versions`` versions each, package by package (``q000 1.0``, ``q000 1.1``, ...), so
    that the one-process and the one-push-per-item runs push the same versions."""
    return [(f"q{n:03d}", f"1.{v}") for n in range(packages) for v in range(versions)]


def repeat_for(scenario: Scenario, options: Options) -> int:
    if scenario.group is Group.STARTUP:
        return max(options.repeat, options.startup_repeat)
    return options.repeat


def latencies_used(scenarios: Iterable[Scenario]) -> tuple[int, ...]:
    return tuple(sorted({s.latency_ms for s in scenarios}))
