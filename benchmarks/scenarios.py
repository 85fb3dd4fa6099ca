"""What the benchmark runs: the clients, the two fixture layouts and the scenarios, by name.

Pure data and pure functions (no I/O), so the plan of a run can be unit-tested and printed
before anything starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from benchmarks.units import KiB, MiB, fmt_count, fmt_size, parse_size

PACKAGE_VERSION = "1.0"


class ClientName(Enum):
    """The tools compared; the value is how rows and ``--clients`` name them."""

    TYCHOREG = "tychoreg"
    STATION = "tycho-station"  # benchmarks/tycho_station.py: boto3, one package after another
    AWS = "aws"  # aws s3 cp
    S5CMD = "s5cmd"
    RAW_HTTP = "raw-http"  # not a client: one plain HTTP request, the loopback ceiling

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


DEFAULT_CLIENTS = (ClientName.TYCHOREG, ClientName.STATION, ClientName.AWS, ClientName.S5CMD)


class Layout(Enum):
    """How the packages a scenario reads were written to the bucket."""

    # PKG/tycho.json {"localname", "latest"} + PKG/tycho_1.0.pkg, as tycho-station pushes:
    # tychoreg checks them by size and MD5 (a plain-MD5 ETag), or size alone (multipart).
    STATION = "tycho-station"
    # as tychoreg pushes: also PKG/tycho_1.0.meta.json and the same record in tycho.json
    # under "tychoreg": {"records": {...}}, so tychoreg checks SHA-256.
    TYCHOREG = "tychoreg"


class Group(Enum):
    """The scenario families of issue 9; ``--scenarios`` takes these values."""

    STARTUP = "startup"
    PUSH = "push"
    PULL = "pull"
    PULL_LIST = "pull-list"
    SCALING = "scaling"

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

    @property
    def name(self) -> str:
        """``push 256 MiB``, ``pull-list 500 x 16 KiB @20ms``, ``start-up pull 1 KiB``,
        ``scaling pull-list 10,000 x 4 KiB``."""
        if self.action is Action.HELP:
            return "start-up --help"
        what = f"{self.action.value} {fmt_size(self.size)}"
        if self.action is Action.PULL_LIST:
            what = f"pull-list {fmt_count(self.count)} x {fmt_size(self.size)}"
        prefix = {Group.STARTUP: "start-up ", Group.SCALING: "scaling "}.get(self.group, "")
        # latency shown where it varies (or is not 0)
        at = f" @{self.latency_ms}ms" if self.group is Group.PULL_LIST or self.latency_ms else ""
        return f"{prefix}{what}{at}"

    @property
    def total_bytes(self) -> int:
        return self.size * self.count

    @property
    def reads(self) -> bool:
        return self.action in (Action.PULL, Action.PULL_LIST)

    def takes(self, client: ClientName) -> bool:
        return self.clients is None or client in self.clients

    def runs(self, clients: Sequence[ClientName]) -> list[tuple[ClientName, Layout | None]]:
        """(client, fixture layout) pairs measured in this scenario: tychoreg once per
        layout (it checks the two kinds differently), every other client on the first."""
        out: list[tuple[ClientName, Layout | None]] = []
        for client in clients:
            if not self.takes(client) or not supports(client, self.action):
                continue
            if not self.layouts:
                out.append((client, None))
            elif client is ClientName.TYCHOREG:
                out.extend((client, layout) for layout in self.layouts)
            else:
                out.append((client, self.layouts[0]))
        return out


def supports(client: ClientName, action: Action) -> bool:
    """raw-http moves one object and has nothing to start up that is worth a row."""
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
    repeat: int = 3
    startup_repeat: int = 5  # start-up runs are short and noisy: at least this many
    groups: frozenset[Group] = field(default_factory=lambda: frozenset(Group))


FULL = Options()
QUICK = Options(size=16 * MiB, lists=((20, 1 * MiB), (100, 16 * KiB)),
                list_lengths=(50, 200, 500), s5cmd_length=300, repeat=1, startup_repeat=1)


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
    return out


def repeat_for(scenario: Scenario, options: Options) -> int:
    if scenario.group is Group.STARTUP:
        return max(options.repeat, options.startup_repeat)
    return options.repeat


def latencies_used(scenarios: Iterable[Scenario]) -> tuple[int, ...]:
    return tuple(sorted({s.latency_ms for s in scenarios}))
