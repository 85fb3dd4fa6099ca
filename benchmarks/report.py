"""The report: the table, the ratios, the marginal cost per package, the targets of issue 9
(and of issue 10's directory scenario), issue 16's target table (PASS, MISS or not run),
and the README's results block.

All pure functions of the rows (and of the options that made them), so they are unit-tested
without a server; ``machine_info`` is the one part that asks the system.
"""

from __future__ import annotations

import datetime
import importlib.util
import itertools
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from benchmarks.measure import Row, is_transfer, rate_mib_s
from benchmarks.scenarios import (
    LOCK_SIDES,
    Action,
    ClientName,
    Group,
    Layout,
    Options,
    Scenario,
    directory_spec,
)
from benchmarks.tree import TreeSpec
from benchmarks.units import GiB, MiB, fmt_count, fmt_size

# issue 9's targets
PULL_LIST_VS_S5CMD_AT_LATENCY = 1.0  # tychoreg's time / s5cmd's, with latency
PULL_LIST_VS_S5CMD_AT_0 = 1.3
PULL_LIST_SPEEDUP_VS_STATION = 10.0  # tycho-station's time / tychoreg's, with latency
TRANSFER_WALL_VS_S5CMD = 1.3
STARTUP_PULL_SECONDS = 0.4
HELP_SECONDS = 0.15
PEAK_RSS_MIB = 150.0
MARGINAL_GROWTH = 1.2  # late marginal cost per package / early one
# issue 10's: tychoreg's directory push and pull each within the shell pipeline's time
DIRECTORY_VS_PIPELINE = 1.0
DIRECTORY_TARGET = "tychoreg push and pull each within the shell pipeline's time"
# A net rate needs the bytes to take a visible part of the run: below this share of the
# run's time, the difference of two medians is noise (a 16 MiB pull in a 0.5 s command).
NET_MIN_SHARE = 0.1


def ratio(mine: float | None, theirs: float | None) -> float | None:
    """mine / theirs, or None when either is missing or theirs is not positive."""
    if mine is None or theirs is None or theirs <= 0:
        return None
    return mine / theirs


def num(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def net_rate(size: int, wall: float | None, base_size: int, base_wall: float | None,
             ) -> float | None:
    """MiB/s excluding start-up: the extra bytes over the extra time, against the same
    command on a tiny object (which pays the start-up and the fixed requests). None when
    the extra time is under ``NET_MIN_SHARE`` of the run: then it is noise."""
    if wall is None or base_wall is None or wall - base_wall < NET_MIN_SHARE * wall:
        return None
    return rate_mib_s(size - base_size, wall - base_wall)


def marginal_cost(t_small: float, t_large: float, n_small: int, n_large: int) -> float:
    """Seconds per extra package between two list lengths: (T(b) - T(a)) / (b - a)."""
    if n_large <= n_small:
        raise ValueError(f"list lengths must grow: {n_small} then {n_large}")
    return (t_large - t_small) / (n_large - n_small)


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run

    @property
    def state(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a "}[self.passed]


class Results:
    """The rows of a run, with the look-ups the table and the targets need."""

    def __init__(self, rows: Sequence[Row], options: Options) -> None:
        self.rows = list(rows)
        self.options = options

    def find(self, scenario: Scenario, client: ClientName,
             layout: Layout | None = None) -> Row | None:
        """The row of ``client`` in ``scenario`` (on ``layout``, else its first) that has
        at least one good run."""
        for row in self.rows:
            if row.scenario == scenario and row.client is client and row.good and (
                    layout is None or row.layout is layout):
                return row
        return None

    def median(self, scenario: Scenario, client: ClientName,
               layout: Layout | None = None) -> float | None:
        row = self.find(scenario, client, layout)
        return row.median() if row else None

    def stored(self, scenario: Scenario, client: ClientName) -> int | None:
        row = self.find(scenario, client)
        return row.stored() if row else None

    def failed(self, scenario: Scenario, client: ClientName) -> bool:
        """Whether ``client`` ran in ``scenario`` and every run failed."""
        return any(row.scenario == scenario and row.client is client and row.runs
                   and not row.good for row in self.rows)

    def scenarios(self) -> list[Scenario]:
        return list(dict.fromkeys(row.scenario for row in self.rows))

    def startup_of(self, scenario: Scenario) -> Scenario | None:
        """The start-up scenario that pays ``scenario``'s start-up: the same action on the
        tiny object."""
        for other in self.scenarios():
            if other.group is Group.STARTUP and other.action is scenario.action:
                return other
        return None

    def row_net_rate(self, row: Row) -> float | None:
        if not is_transfer(row.scenario) or row.scenario.group is Group.STARTUP:
            return None
        base = self.startup_of(row.scenario)
        if base is None:
            return None
        base_row = self.find(base, row.client)
        return net_rate(row.scenario.total_bytes, row.median(), base.total_bytes,
                        base_row.median() if base_row else None)


# -- the table ---------------------------------------------------------------------------

HEADER = ("scenario", "client", "data", "runs", "median s", "min-max s", "rate", "net MiB/s",
          "t/s5cmd", "t/station", "peak RSS", "client CPU", "server CPU", "proxy CPU")
STORED_HEADER = ("stored", "size/s5cmd")  # shown when a row has a compressed object
RIGHT = frozenset(range(3, len(HEADER) + len(STORED_HEADER)))


def rate_cell(row: Row) -> str:
    median = row.median()
    if median is None or row.scenario.group is Group.STARTUP or \
            row.client is ClientName.PYTHON:  # the bare interpreter moves nothing
        return ""
    if is_transfer(row.scenario) and row.scenario.group is not Group.STARTUP:
        return f"{num(rate_mib_s(row.scenario.total_bytes, median), '.1f')} MiB/s"
    return f"{row.scenario.count / median:.1f} pkg/s"


def cells(results: Results, row: Row, saturates_at: float | None) -> tuple[str, ...]:
    walls = row.walls()
    scenario = row.scenario
    load = row.server_load()
    sat = " SAT" if saturates_at is not None and load is not None and load >= saturates_at \
        else ""
    rss = row.peak_rss()
    return (
        scenario.name, row.label, row.layout.value if row.layout else "",
        f"{len(row.good)}/{len(row.runs)}" if len(row.good) < len(row.runs) else
        str(len(row.runs)),
        num(row.median(), ".3f", "FAILED"),
        f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
        rate_cell(row),
        num(results.row_net_rate(row), ".0f", ""),
        num(ratio(row.median(), results.median(scenario, ClientName.S5CMD)), ".2f"),
        num(ratio(row.median(), results.median(scenario, ClientName.STATION)), ".2f"),
        f"{rss:.0f} MiB" if rss is not None else "-",
        f"{num(row.cpu(), '.2f')} s" if row.cpu() is not None else "-",
        f"{num(load, '.2f', '')}{sat}",
        num(row.proxy_load(), ".2f", ""),
    )


def stored_cells(results: Results, row: Row) -> tuple[str, str]:
    """The compressed object's size, and its ratio to the shell pipeline's (directory)."""
    mine = row.stored()
    if mine is None:
        return "", ""
    return (f"{mine / MiB:.1f} MiB",
            num(ratio(mine, results.stored(row.scenario, ClientName.S5CMD)), ".3f", ""))


def render(lines: Sequence[Sequence[str]], right: frozenset[int] = RIGHT) -> str:
    """Aligned columns, a rule under the first line; trailing spaces stripped."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                   .rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def table(results: Results, saturates_at: float | None = None) -> str:
    stored = any(row.stored() is not None for row in results.rows)
    lines: list[tuple[str, ...]] = [HEADER + STORED_HEADER if stored else HEADER]
    lines += [cells(results, row, saturates_at)
              + (stored_cells(results, row) if stored else ()) for row in results.rows]
    return render(lines)


def ab_table(results: Results) -> str:
    """tychoreg against tychoreg-base (``--baseline``) row by row: the ratio of their median
    wall times and client CPU (below 1: the change is faster) and both peak RSS figures;
    empty when no baseline ran."""
    lines: list[tuple[str, ...]] = [("scenario", "data", "wall", "base wall", "wall ratio",
                                     "cpu ratio", "RSS MiB", "base RSS MiB")]
    for row in results.rows:
        if row.client is not ClientName.TYCHOREG:
            continue
        base = results.find(row.scenario, ClientName.BASELINE, row.layout)
        if base is None or not row.good:
            continue
        lines.append((row.scenario.name, row.layout.value if row.layout else "",
                      num(row.median(), ".3f"), num(base.median(), ".3f"),
                      num(ratio(row.median(), base.median()), ".2f"),
                      num(ratio(row.cpu(), base.cpu()), ".2f"),
                      num(row.peak_rss(), ".0f"), num(base.peak_rss(), ".0f")))
    return render(lines, frozenset(range(2, 8))) if len(lines) > 1 else ""


LEGEND = """\
data: how the packages read were written: tycho-station's layout (tychoreg checks size and
  MD5, or size alone for a multipart object) or tychoreg's (it checks its SHA-256 record).
  tychoreg runs on both; the other clients read the first (the bytes are the same).
rate: MiB/s for push and pull, packages/s for pull-list. net MiB/s: throughput excluding
  start-up, (size - 1 KiB) / (median time - the same client's median start-up push or pull
  of 1 KiB), which also takes out the fixed requests of one command; blank when that
  difference is under a tenth of the run (noise: use a larger --size).
t/s5cmd, t/station: the row's median time / s5cmd's or tycho-station's in the same scenario
  (below 1: faster than it). peak RSS: of the largest process of the command (kernel's
  ru_maxrss, not sampled). client CPU: user + system seconds of the command (median).
server CPU, proxy CPU: the server's / the delay proxy's CPU seconds per second of the run.
python -c pass: the bare interpreter that runs tychoreg, in each start-up scenario (the
  floor of issue 16's start-up targets). api pull_many: the Python API in one process."""

DIRECTORY_LEGEND = """\
directory: the s5cmd row is the shell pipeline, tar -I 'zstd -T0 -LEVEL' -cf - -C PARENT NAME
  | s5cmd pipe, and s5cmd cat | tar -I zstd -xf - -C OUT; tychoreg runs push PKG VERSION DIR
  --level LEVEL and pull PKG --version VERSION --outfile OUT/NAME --force. rate: the tree's
  bytes per second. Every pull is checked (files, directories, bytes, SHA-256 of sampled
  files). stored: the compressed object's size; size/s5cmd: it over the pipeline's."""


# -- list-length scaling -----------------------------------------------------------------


def scaling_points(results: Results, client: ClientName) -> dict[int, float]:
    """List length -> median time of ``client`` in the scaling scenarios."""
    points: dict[int, float] = {}
    for scenario in results.scenarios():
        if scenario.group is Group.SCALING:
            median = results.median(scenario, client)
            if median is not None:
                points[scenario.count] = median
    return points


def marginal_lines(results: Results) -> list[str]:
    """Per client: milliseconds per extra package between consecutive list lengths."""
    out = []
    for client in (ClientName.TYCHOREG, ClientName.S5CMD):
        points = scaling_points(results, client)
        lengths = sorted(points)
        steps = [f"{fmt_count(a)}->{fmt_count(b)}: "
                 f"{marginal_cost(points[a], points[b], a, b) * 1000:.2f} ms"
                 for a, b in itertools.pairwise(lengths)]
        if steps:
            out.append(f"{client.value}: {', '.join(steps)} per package")
    return out


# -- the targets of issue 9 ----------------------------------------------------------------


def _vs(tycho: float | None, other: float | None, other_name: str) -> str:
    if tycho is None or other is None:
        return "n/a"
    return f"tychoreg {tycho:.3f} s, {other_name} {other:.3f} s"


def _tycho_layouts(scenario: Scenario) -> tuple[Layout | None, ...]:
    return scenario.layouts or (None,)


def pull_list_targets(results: Results) -> list[Target]:
    out: list[Target] = []
    for scenario in results.scenarios():
        if scenario.group is not Group.PULL_LIST:
            continue
        s5 = results.median(scenario, ClientName.S5CMD)
        station = results.median(scenario, ClientName.STATION)
        for layout in _tycho_layouts(scenario):
            tycho = results.median(scenario, ClientName.TYCHOREG, layout)
            what = f"{scenario.name} [{layout.value if layout else '-'}]"
            vs_s5 = ratio(tycho, s5)
            if scenario.latency_ms > 0:
                out.append(Target(f"{what}: tychoreg <= s5cmd", _vs(tycho, s5, "s5cmd"),
                                  None if vs_s5 is None else
                                  vs_s5 <= PULL_LIST_VS_S5CMD_AT_LATENCY))
                speedup = ratio(station, tycho)
                out.append(Target(
                    f"{what}: tychoreg >= {PULL_LIST_SPEEDUP_VS_STATION:.0f}x faster than "
                    "tycho-station",
                    "n/a" if speedup is None else f"{speedup:.1f}x",
                    None if speedup is None else speedup >= PULL_LIST_SPEEDUP_VS_STATION))
            else:
                out.append(Target(
                    f"{what}: tychoreg <= {PULL_LIST_VS_S5CMD_AT_0}x s5cmd",
                    "n/a" if vs_s5 is None else f"{vs_s5:.2f}x ({_vs(tycho, s5, 's5cmd')})",
                    None if vs_s5 is None else vs_s5 <= PULL_LIST_VS_S5CMD_AT_0))
    return out


def transfer_targets(results: Results) -> list[Target]:
    out: list[Target] = []
    for scenario in results.scenarios():
        if scenario.group not in (Group.PUSH, Group.PULL):
            continue
        s5_row = results.find(scenario, ClientName.S5CMD)
        s5_rate = results.row_net_rate(s5_row) if s5_row else None
        s5 = s5_row.median() if s5_row else None
        for layout in _tycho_layouts(scenario):
            row = results.find(scenario, ClientName.TYCHOREG, layout)
            what = f"{scenario.name}" + (f" [{layout.value}]" if layout else "")
            rate = results.row_net_rate(row) if row else None
            out.append(Target(
                f"{what}: throughput excluding start-up >= s5cmd's",
                "n/a" if rate is None or s5_rate is None else
                f"tychoreg {rate:.0f} MiB/s, s5cmd {s5_rate:.0f} MiB/s",
                None if rate is None or s5_rate is None else rate >= s5_rate))
            tycho = row.median() if row else None
            vs = ratio(tycho, s5)
            out.append(Target(
                f"{what}: wall time <= {TRANSFER_WALL_VS_S5CMD}x s5cmd's",
                "n/a" if vs is None else f"{vs:.2f}x ({_vs(tycho, s5, 's5cmd')})",
                None if vs is None else vs <= TRANSFER_WALL_VS_S5CMD))
    return out


def startup_targets(results: Results) -> list[Target]:
    out: list[Target] = []
    for scenario in results.scenarios():
        if scenario.group is not Group.STARTUP or scenario.action is Action.PUSH:
            continue
        median = results.median(scenario, ClientName.TYCHOREG)
        if scenario.action is Action.HELP:
            name, limit = "tychoreg --help", HELP_SECONDS
        else:
            name, limit = f"one tychoreg pull of {fmt_size(scenario.size)}", STARTUP_PULL_SECONDS
        out.append(Target(f"{name} <= {limit} s (start-up included)",
                          num(median, ".3f", "n/a") + (" s" if median is not None else ""),
                          None if median is None else median <= limit))
    return out


def memory_and_scaling_targets(results: Results) -> list[Target]:
    out: list[Target] = []
    mine = [row for row in results.rows if row.client is ClientName.TYCHOREG
            and row.peak_rss() is not None]
    worst = max(mine, key=lambda row: row.peak_rss() or 0.0, default=None)
    worst_rss = worst.peak_rss() if worst else None
    out.append(Target(
        f"tychoreg's peak RSS <= {PEAK_RSS_MIB:.0f} MiB in every scenario",
        "n/a" if worst is None or worst_rss is None else
        f"worst {worst_rss:.0f} MiB in {worst.scenario.name}"
        + (f" [{worst.layout.value}]" if worst.layout else ""),
        None if worst_rss is None else worst_rss <= PEAK_RSS_MIB))
    options = results.options
    scaling = [s for s in results.scenarios() if s.group is Group.SCALING]
    longest = max(scaling, key=lambda s: s.count, default=None)
    if longest is not None:
        row = results.find(longest, ClientName.TYCHOREG)
        rss = row.peak_rss() if row else None
        out.append(Target(
            f"pull-list of {fmt_count(longest.count)} packages: peak RSS <= "
            f"{PEAK_RSS_MIB:.0f} MiB", "n/a" if rss is None else f"{rss:.0f} MiB",
            None if rss is None else rss <= PEAK_RSS_MIB))
    points = scaling_points(results, ClientName.TYCHOREG)
    lengths = sorted(options.list_lengths)
    if len(lengths) >= 3 and scaling:
        a, b, c = lengths[0], lengths[-2], lengths[-1]
        name = (f"marginal cost per package flat: (T({fmt_count(c)}) - T({fmt_count(b)})) / "
                f"{fmt_count(c - b)} <= {MARGINAL_GROWTH}x (T({fmt_count(b)}) - "
                f"T({fmt_count(a)})) / {fmt_count(b - a)}")
        if all(n in points for n in (a, b, c)):
            early = marginal_cost(points[a], points[b], a, b)
            late = marginal_cost(points[b], points[c], b, c)
            growth = ratio(late, early)
            out.append(Target(name, f"{late * 1000:.2f} ms vs {early * 1000:.2f} ms"
                              + (f" ({growth:.2f}x)" if growth is not None else ""),
                              late <= MARGINAL_GROWTH * early))
        else:
            out.append(Target(name, "n/a", None))
    compared = next((s for s in scaling if s.count == options.s5cmd_length), None)
    if compared is not None:
        tycho = results.median(compared, ClientName.TYCHOREG)
        s5 = results.median(compared, ClientName.S5CMD)
        vs = ratio(tycho, s5)
        out.append(Target(f"pull-list of {fmt_count(compared.count)} packages: tychoreg <= "
                          "s5cmd", _vs(tycho, s5, "s5cmd"),
                          None if vs is None else vs <= 1.0))
    return out


def directory_targets(results: Results) -> list[Target]:
    """Issue 10's: tychoreg's directory push and pull each take no longer than the shell
    pipeline's (one line for both; a MISS if either misses or tychoreg's runs all failed,
    n/a if either is not measured)."""
    scenarios = [s for s in results.scenarios() if s.group is Group.DIRECTORY]
    if not scenarios:
        return []
    parts: list[str] = []
    verdicts: list[bool | None] = []
    for scenario in scenarios:
        verb = "push" if scenario.action is Action.PUSH_DIR else "pull"
        tycho = results.median(scenario, ClientName.TYCHOREG)
        pipe = results.median(scenario, ClientName.S5CMD)
        vs = ratio(tycho, pipe)
        if results.failed(scenario, ClientName.TYCHOREG):
            parts.append(f"{verb}: tychoreg failed")
            verdicts.append(False)
        elif vs is None or tycho is None or pipe is None:
            parts.append(f"{verb}: n/a")
            verdicts.append(None)
        else:
            parts.append(f"{verb} {vs:.2f}x (tychoreg {tycho:.3f} s, pipeline {pipe:.3f} s)")
            verdicts.append(vs <= DIRECTORY_VS_PIPELINE)
    passed = False if False in verdicts else None if None in verdicts else True
    return [Target(DIRECTORY_TARGET, ", ".join(parts), passed)]


def targets(results: Results) -> list[Target]:
    """Issue 9's targets, and issue 10's directory target, with what was measured; shown,
    never asserted. A target whose tychoreg runs all failed is a miss, not "n/a"."""
    found = [*pull_list_targets(results), *transfer_targets(results),
             *startup_targets(results), *memory_and_scaling_targets(results),
             *directory_targets(results)]
    failed = [f"{row.scenario.name}" + (f" [{row.layout.value}]" if row.layout else "")
              for row in results.rows
              if row.client is ClientName.TYCHOREG and row.runs and not row.good]
    if failed:
        found.append(Target("every tychoreg run succeeds", f"all runs failed in "
                            f"{', '.join(failed)} (see the notes)", False))
    return found


# -- the targets of issue 16 ---------------------------------------------------------------


class Measure(Enum):
    """What a target of issue 16 bounds."""

    TIME = "time"  # tychoreg's median wall time / the baseline's (python -c pass, s5cmd)
    RSS = "rss"  # tychoreg's peak RSS, MiB
    CPU = "cpu"  # tychoreg's client CPU per request, start-up excluded, ms


@dataclass(frozen=True)
class Spec:
    """One row of issue 16's table: the scenario (by name, as a run names it), what is
    bounded, and the bound."""

    label: str  # what the target table calls it
    scenario: str  # Scenario.name of the scenario measured
    measure: Measure
    limit: float
    layout: Layout | None = None  # tychoreg's fixture layout (None: its only row)
    versus: ClientName | None = None  # TIME: the baseline's client


def _issue16_specs() -> tuple[Spec, ...]:
    py, s5 = ClientName.PYTHON, ClientName.S5CMD
    time_, rss, cpu = Measure.TIME, Measure.RSS, Measure.CPU
    station, mine = Layout.STATION, Layout.TYCHOREG
    specs = [Spec("one pull of 1 KiB, start-up included", "start-up pull 1 KiB", time_, 8.0,
                  mine, py),
             Spec("--help", "start-up --help", time_, 6.0, None, py),
             Spec("pull 256 MiB, SHA-256 verified", "pull 256 MiB", time_, 1.0, mine, s5),
             Spec("push 256 MiB", "push 256 MiB", time_, 1.0, None, s5)]
    for what, at0, at20 in (("100 x 1 MiB", 1.0, 1.0), ("500 x 16 KiB", 1.0, 0.8)):
        for ms, limit in ((0, at0), (20, at20)):
            for layout in (station, mine):
                specs.append(Spec(f"pull-list {what} @{ms}ms [{layout.value}]",
                                  f"pull-list {what} @{ms}ms", time_, limit, layout, s5))
    for count in ("5,000", "10,000"):
        name = f"scaling pull-list {count} x 4 KiB"
        specs += [Spec(f"pull-list {count} x 4 KiB", name, time_, 1.0, mine, s5),
                  Spec(f"pull-list {count} x 4 KiB: peak RSS", name, rss, 150.0, mine)]
    specs.append(Spec("pull_many 500 x 16 KiB (API): client CPU per request",
                      "api pull_many 500 x 16 KiB", cpu, 0.5, mine))
    return tuple(specs)


ISSUE16 = _issue16_specs()
NOT_RUN = "not run"
TARGET_MIN_RUNS = 5  # issue 16: medians of at least 5 interleaved runs


@dataclass(frozen=True)
class Verdict:
    """A target of issue 16 against one run: the value (None: not run here), what it
    came from, the runs behind it, and PASS / MISS / not run."""

    spec: Spec
    value: float | None
    measured: str  # the figures behind the value, or why there is none
    runs: str  # runs that counted: tychoreg's, and the baseline's after a slash
    passed: bool | None  # None: not run in this invocation (never a PASS)

    @property
    def state(self) -> str:
        return {True: "PASS", False: "MISS", None: NOT_RUN}[self.passed]

    @property
    def few_runs(self) -> bool:
        """Whether the value rests on fewer runs (on either side) than the issue's medians
        ask for: then the verdict is only indicative."""
        return self.value is not None and min(
            int(n) for n in self.runs.split("/")) < TARGET_MIN_RUNS

    @property
    def result(self) -> str:
        """PASS, MISS or not run, as the table shows it (marked when on few runs)."""
        return f"{self.state}*" if self.few_runs else self.state

    @property
    def shown(self) -> str:
        """The value as the table shows it: 1.23x, 0.38 ms, 77 MiB."""
        if self.value is None:
            return "-"
        unit = {Measure.TIME: "x", Measure.RSS: " MiB", Measure.CPU: " ms"}[self.spec.measure]
        return f"{self.value:.{0 if self.spec.measure is Measure.RSS else 2}f}{unit}"

    @property
    def target(self) -> str:
        spec = self.spec
        if spec.measure is Measure.TIME:
            against = "python -c pass" if spec.versus is ClientName.PYTHON else "s5cmd"
            return f"<= {spec.limit:.1f}x {against}"
        return f"<= {spec.limit:g} {'MiB' if spec.measure is Measure.RSS else 'ms'}"


def _all_failed(results: Results, scenario: Scenario, client: ClientName,
                layout: Layout | None) -> bool:
    """Whether ``client`` ran in ``scenario`` (on ``layout``) and no run succeeded."""
    return any(r.scenario == scenario and r.client is client and r.runs and not r.good
               and (layout is None or r.layout is layout) for r in results.rows)


def _missing(results: Results, scenario: Scenario, client: ClientName,
             layout: Layout | None) -> str:
    """Why ``client`` has no good row in ``scenario``."""
    failed = _all_failed(results, scenario, client, layout)
    return f"{client.value}: {'every run failed' if failed else NOT_RUN}"


def verdict(results: Results, spec: Spec) -> Verdict:
    """One target of issue 16 against the run: MISS when tychoreg's runs all failed, not
    run when the scenario, tychoreg or the baseline was not measured."""
    scenario = next((s for s in results.scenarios() if s.name == spec.scenario), None)
    if scenario is None:
        return Verdict(spec, None, NOT_RUN, "", None)
    mine = results.find(scenario, ClientName.TYCHOREG, spec.layout)
    if mine is None:
        failed = _all_failed(results, scenario, ClientName.TYCHOREG, spec.layout)
        return Verdict(spec, None, _missing(results, scenario, ClientName.TYCHOREG,
                                            spec.layout), "0" if failed else "",
                       False if failed else None)
    runs = str(len(mine.good))
    if spec.measure is Measure.RSS:
        rss = mine.peak_rss()
        assert rss is not None  # a row with good runs has a peak
        return Verdict(spec, rss, f"tychoreg's peak over {runs} run"
                       + ("" if runs == "1" else "s"), runs, rss <= spec.limit)
    if spec.measure is Measure.CPU:
        per = mine.cpu_per_request()
        requests = mine.requests()
        if per is None or requests is None:
            return Verdict(spec, None, "requests not counted (only SeaweedFS counts them)",
                           runs, None)
        return Verdict(spec, per * 1000, f"{mine.work_cpu() or 0:.3f} s CPU, "
                       f"{requests:,} requests (medians)", runs, per * 1000 <= spec.limit)
    assert spec.versus is not None
    theirs = results.find(scenario, spec.versus)
    if theirs is None:
        return Verdict(spec, None, _missing(results, scenario, spec.versus, None), runs, None)
    tycho, other = mine.median(), theirs.median()
    vs = ratio(tycho, other)
    runs = f"{runs}/{len(theirs.good)}"
    name = theirs.label if spec.versus is ClientName.PYTHON else spec.versus.value
    if vs is None or tycho is None or other is None:
        return Verdict(spec, None, f"{name}: no time", runs, None)
    return Verdict(spec, vs, f"tychoreg {tycho:.3f} s, {name} {other:.3f} s", runs,
                   vs <= spec.limit)


def issue16_verdicts(results: Results) -> list[Verdict]:
    return [verdict(results, spec) for spec in ISSUE16]


TARGET_HEADER = ("target (issue 16)", "measured", "value", "bound", "runs", "result")


def target_table(verdicts: Sequence[Verdict]) -> str:
    """Issue 16's targets, one a row: what was compared, the figures, the ratio, the
    bound, the runs behind the medians (tychoreg's/the baseline's), PASS/MISS/not run;
    a verdict on fewer runs than the issue asks is starred, and the star explained."""
    lines = [TARGET_HEADER]
    lines += [(v.spec.label, v.measured, v.shown, v.target, v.runs, v.result)
              for v in verdicts]
    text = render(lines, frozenset({2, 4}))
    if any(v.few_runs for v in verdicts):
        text += (f"\n* fewer than {TARGET_MIN_RUNS} runs on a side (--repeat): indicative "
                 "only; the issue's targets are medians of at least 5")
    return text


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """One target of issue 16, as JSON-ready data."""
    spec = verdict.spec
    return {"target": spec.label, "scenario": spec.scenario, "measure": spec.measure.value,
            "limit": spec.limit, "value": verdict.value, "measured": verdict.measured,
            "runs": verdict.runs, "result": verdict.state, "few_runs": verdict.few_runs}


# -- the targets of issue 18 (the lock group) -----------------------------------------------

CURRENT_VS_PYTHON = 6.0  # a warm pull-list --locked's median wall / python -c pass's
PUSH_LIST_SPEEDUP = 10.0  # one tychoreg push after another's median wall / push-list's


@dataclass(frozen=True)
class LockVerdict:
    """A target of issue 18 against one run: the figures, the value and its bound, the
    runs behind the medians (the first side's/the second's), PASS / MISS / not run."""

    target: str
    measured: str
    shown: str
    bound: str
    runs: str
    passed: bool | None  # None: not run in this invocation (never a PASS)

    @property
    def state(self) -> str:
        return {True: "PASS", False: "MISS", None: NOT_RUN}[self.passed]

    @property
    def few_runs(self) -> bool:
        """Whether a PASS or MISS rests on fewer runs on a side than the medians of issue
        16's targets take (then it is only indicative, as there)."""
        return self.passed is not None and min(
            (int(n) for n in self.runs.split("/") if n), default=0) < TARGET_MIN_RUNS

    @property
    def result(self) -> str:
        return f"{self.state}*" if self.few_runs else self.state


def lock_rows(results: Results, action: Action) -> tuple[Row | None, Row | None]:
    """The two sides' rows of the lock (or sign) scenario of ``action`` (None: not in the
    run)."""
    found = {row.side: row for row in results.rows
             if row.scenario.group in (Group.LOCK, Group.SIGN)
             and row.scenario.action is action}
    first, second = (side for _, side, _ in LOCK_SIDES[action])
    return found.get(first), found.get(second)


def _unmeasured(target: str, bound: str, rows: tuple[Row | None, Row | None],
                ) -> LockVerdict | None:
    """The verdict when a side has no good run: MISS when a tychoreg side ran and every
    run failed, else not run; None when both sides have good runs."""
    runs = "/".join(str(len(row.good)) if row else "0" for row in rows)
    for row in rows:
        if row is None:
            return LockVerdict(target, NOT_RUN, "-", bound, "", None)
        if not row.good:
            failed = bool(row.runs) and row.client.is_tychoreg
            return LockVerdict(target, f"{row.label}: "
                               f"{'every run failed' if failed else NOT_RUN}", "-", bound,
                               runs, False if failed else None)
    return None


class _Pair:
    """Two sides of a scenario measured against each other: their rows, the runs behind
    the medians, the medians, their walls in words and the requests each made (None:
    not counted, no delay proxy)."""

    def __init__(self, first: Row, second: Row) -> None:
        self.first, self.second = first, second
        self.runs = f"{len(first.good)}/{len(second.good)}"
        self.mine, self.theirs = first.median(), second.median()
        self.walls = f"wall {self.mine:.3f} s vs {self.theirs:.3f} s" \
            if self.mine and self.theirs else "no time"
        self.requests = first.requests(), second.requests()


def _pair(results: Results, action: Action, target: str, bound: str
          ) -> _Pair | LockVerdict:
    """The scenario's two sides, or the verdict of one not measured (or without its
    requests counted)."""
    rows = lock_rows(results, action)
    missing = _unmeasured(target, bound, rows)
    if missing is not None:
        return missing
    first, second = rows
    assert first is not None and second is not None
    pair = _Pair(first, second)
    if None in pair.requests:
        return LockVerdict(target, f"requests not counted (no delay proxy); {pair.walls}",
                           "-", bound, pair.runs, None)
    return pair


def locked_verdict(results: Results) -> LockVerdict:
    """pull-list --locked against pull-list --from-file of the same packages: fewer
    requests by exactly one per package (its tycho.json), and a lower median wall."""
    count, size = results.options.lock_list
    target = f"pull-list --locked {fmt_count(count)} x {fmt_size(size)} vs --from-file"
    bound = f"{count} fewer requests, < 1.00x"
    pair = _pair(results, Action.PULL_LOCKED, target, bound)
    if isinstance(pair, LockVerdict):
        return pair
    (fewer, other), locked, plain = pair.requests, pair.first, pair.second
    assert fewer is not None and other is not None
    vs = ratio(pair.mine, pair.theirs)
    metadata = f" ({locked.tycho_json()} vs {plain.tycho_json()} tycho.json)" \
        if locked.tycho_json() is not None and plain.tycho_json() is not None else ""
    return LockVerdict(target, f"requests {fewer:,} vs {other:,}{metadata}; {pair.walls}",
                       f"{other - fewer:,} fewer, {num(vs, '.2f')}x", bound, pair.runs,
                       other - fewer == count and vs is not None and vs < 1.0)


def current_verdict(results: Results) -> LockVerdict:
    """A warm pull-list --locked (every package current): no request in any run, and a
    median wall within CURRENT_VS_PYTHON of a bare interpreter's."""
    count, _ = results.options.lock_list
    return _warm(results, Action.PULL_CURRENT,
                 f"pull-list --locked {fmt_count(count)} packages, all current",
                 f"0 requests, <= {CURRENT_VS_PYTHON:.1f}x python -c pass", CURRENT_VS_PYTHON)


def _warm(results: Results, action: Action, target: str, bound: str, limit: float | None
          ) -> LockVerdict:
    """A warm locked pull against ``python -c pass``: no request in any run, and (when
    ``limit`` is given) a median wall within ``limit`` times the interpreter's."""
    rows = lock_rows(results, action)
    missing = _unmeasured(target, bound, rows)
    if missing is not None:
        return missing
    warm, python = rows
    assert warm is not None and python is not None
    runs = f"{len(warm.good)}/{len(python.good)}"
    mine, theirs = warm.median(), python.median()
    vs = ratio(mine, theirs)
    walls = f"wall {mine:.3f} s vs python {theirs:.3f} s" if mine and theirs else "no time"
    most = warm.most_requests()
    if most is None or (limit is not None and vs is None):
        return LockVerdict(target, f"requests not counted (no delay proxy); {walls}", "-",
                           bound, runs, None)
    fast = limit is None or (vs is not None and vs <= limit)
    return LockVerdict(target, f"at most {most:,} requests a run; {walls}",
                       f"{most:,} requests, {num(vs, '.2f')}x", bound, runs,
                       most == 0 and fast)


def push_list_verdict(results: Results) -> LockVerdict:
    """push-list of N versions in one process against N tychoreg push processes run one
    after the other: at least PUSH_LIST_SPEEDUP times faster (median walls)."""
    packages, versions, size = results.options.lock_push
    count = packages * versions
    target = f"push-list {fmt_count(count)} x {fmt_size(size)} vs {count} pushes"
    bound = f">= {PUSH_LIST_SPEEDUP:.1f}x"
    rows = lock_rows(results, Action.PUSH_LIST)
    missing = _unmeasured(target, bound, rows)
    if missing is not None:
        return missing
    listed, each = rows
    assert listed is not None and each is not None
    runs = f"{len(listed.good)}/{len(each.good)}"
    mine, theirs = listed.median(), each.median()
    speedup = ratio(theirs, mine)
    if speedup is None or mine is None or theirs is None:
        return LockVerdict(target, "no time", "-", bound, runs, None)
    return LockVerdict(target, f"push-list {mine:.3f} s, pushes {theirs:.3f} s",
                       f"{speedup:.1f}x", bound, runs, speedup >= PUSH_LIST_SPEEDUP)


def issue18_verdicts(results: Results) -> list[LockVerdict]:
    return [locked_verdict(results), current_verdict(results), push_list_verdict(results)]


def sign_pull_verdict(results: Results) -> LockVerdict:
    """pull-list under --allowed-signers against the same pull-list without: exactly one
    more request per package (its .sig), the walls and their ratio shown, not bounded."""
    count, size = results.options.lock_list
    target = f"signed pull-list {fmt_count(count)} x {fmt_size(size)} vs unsigned"
    bound = f"{count} more requests"
    pair = _pair(results, Action.SIGN_PULL, target, bound)
    if isinstance(pair, LockVerdict):
        return pair
    more, other = pair.requests
    assert more is not None and other is not None
    return LockVerdict(target, f"requests {more:,} vs {other:,}; {pair.walls}",
                       f"{more - other:,} more, {num(ratio(pair.mine, pair.theirs), '.2f')}x",
                       bound, pair.runs, more - other == count)


def sign_current_verdict(results: Results) -> LockVerdict:
    """pull-list --locked under --allowed-signers, every package current: no request in
    any run (the lock's signer is checked offline); the ratio to python -c pass shown."""
    count, _ = results.options.lock_list
    return _warm(results, Action.SIGN_CURRENT,
                 f"signed pull-list --locked {fmt_count(count)} packages, all current",
                 "0 requests", None)


def issue19_verdicts(results: Results) -> list[LockVerdict]:
    return [sign_pull_verdict(results), sign_current_verdict(results)]


SIGN_HEADER = ("scenario", "side", "runs", "median s", "requests", "vs other")


def sign_table(results: Results) -> str:
    """The sign group, a row per side: its median wall, its requests (median, at the
    delay proxy) and its median's ratio to the scenario's other side (signed/unsigned,
    or the warm locked pull / python -c pass); '' when the group did not run."""
    lines: list[tuple[str, ...]] = [SIGN_HEADER]
    for action in (Action.SIGN_PULL, Action.SIGN_CURRENT):
        rows = lock_rows(results, action)
        other = rows[1].median() if rows[1] is not None else None
        for row in rows:
            if row is None:
                continue
            lines.append((row.scenario.name, row.label, str(len(row.good)),
                          num(row.median(), ".3f", "FAILED"), num(row.requests(), ",", "-"),
                          f"{num(ratio(row.median(), other), '.2f')}x"))
    return render(lines, frozenset({2, 3, 4, 5})) if len(lines) > 1 else ""


LOCK_HEADER = ("target (issue 18)", "measured", "value", "bound", "runs", "result")


def issue18_table(verdicts: Sequence[LockVerdict], issue: int = 18) -> str:
    """Issue 18's (or 19's) targets, one a row, as issue 16's table shows its own (a
    verdict on fewer runs than its medians take starred, and the star explained)."""
    head = (f"target (issue {issue})", *LOCK_HEADER[1:])
    text = render([head, *((v.target, v.measured, v.shown, v.bound, v.runs, v.result)
                           for v in verdicts)], frozenset({4}))
    if any(v.few_runs for v in verdicts):
        text += (f"\n* fewer than {TARGET_MIN_RUNS} runs on a side (--repeat): indicative "
                 "only")
    return text


def lock_summary(verdict: LockVerdict) -> dict[str, Any]:
    """One target of issue 18, as JSON-ready data."""
    return {"target": verdict.target, "measured": verdict.measured, "value": verdict.shown,
            "bound": verdict.bound, "runs": verdict.runs, "result": verdict.state,
            "few_runs": verdict.few_runs}


# -- the README's results block ------------------------------------------------------------

RESULTS_START = "<!-- results: written by benchmarks/run.py --readme; edits here are lost -->"
RESULTS_END = "<!-- end of results -->"


def readme_with_results(readme: str, report: str, command: str, date: str) -> str:
    """``readme`` with the text between its results markers replaced by ``report`` (the
    markers stay, so the next run replaces it again). ValueError when the markers are
    missing, repeated or out of order: nothing is guessed."""
    if readme.count(RESULTS_START) != 1 or readme.count(RESULTS_END) != 1:
        raise ValueError(f"expected the lines {RESULTS_START!r} and {RESULTS_END!r} once each")
    head, rest = readme.split(RESULTS_START)
    if RESULTS_END not in rest:
        raise ValueError(f"{RESULTS_END!r} comes before {RESULTS_START!r}")
    tail = rest.split(RESULTS_END)[1]
    block = f"Run of {date} (`{command}`):\n\n```\n{report.strip()}\n```"
    return f"{head}{RESULTS_START}\n{block}\n{RESULTS_END}{tail}"


# -- what it ran on ------------------------------------------------------------------------


def _dist(name: str) -> str:
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return "not installed"


def _first_line(argv: Sequence[str | None]) -> str:
    if argv[0] is None:
        return "not installed"
    try:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def tychoreg_source() -> str:
    """Which tychoreg ran: the commit of an editable install from a git checkout, since
    the code changes between runs and the results should say what they measured."""
    spec = importlib.util.find_spec("tycho_async")
    if spec is None or spec.origin is None:
        return "unknown"
    root = Path(spec.origin).parent.parent
    git = ["git", "--no-optional-locks", "-C", str(root)]  # never takes the repo's locks
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        changed = subprocess.run([*git, "status", "--porcelain", "--", "tycho_async"],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return str(root)
    if head.returncode != 0:
        return str(root)
    dirty = " + uncommitted changes" if changed.stdout.strip() else ""
    return f"{root} at {head.stdout.strip()}{dirty}"


def machine_info(aws: str | None, s5cmd: str | None, server: str) -> dict[str, Any]:
    """What the numbers were measured on, for the report and the JSON."""
    import psutil  # here: the pure parts above must import with the test extra alone

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "server": server,
        "tychoreg": _dist("tychoreg"),
        "tychoreg_source": tychoreg_source(),
        "boto3": _dist("boto3"),
        "aws": _first_line([aws, "--version"]),
        "s5cmd": _first_line([s5cmd, "version"]),
    }


def header(info: dict[str, Any], options: Options, latencies: Sequence[int]) -> str:
    return "\n".join([
        f"tychoreg benchmark  {info['date']}  {info['cpus']} CPUs, {info['memory_gib']} GiB, "
        f"Python {info['python']}",
        f"server: {info['server']}; latencies {', '.join(f'{ms} ms' for ms in latencies)} "
        f"(a delay proxy on loopback above 0); repeat {options.repeat} (start-up "
        f"{max(options.repeat, options.startup_repeat)}), medians",
        f"tychoreg {info['tychoreg']} from {info['tychoreg_source']}",
        f"tools: {info['aws']}, s5cmd {info['s5cmd']}, boto3 {info['boto3']}",
    ])


def directory_tree(results: Results) -> TreeSpec | None:
    """The directory scenario's tree, when the run had that scenario."""
    if not any(row.scenario.group is Group.DIRECTORY for row in results.rows):
        return None
    return directory_spec(results.options)


def summary(results: Results, info: dict[str, Any], found: Sequence[Target],
            notes: Sequence[str]) -> dict[str, Any]:
    """Everything, as JSON-ready data."""
    options = results.options
    tree = directory_tree(results)
    return {
        "machine": info,
        "options": {"size": options.size, "tiny": options.tiny,
                    "lists": [list(pair) for pair in options.lists],
                    "latencies": list(options.latencies),
                    "list_lengths": list(options.list_lengths),
                    "s5cmd_length": options.s5cmd_length, "scaling_size": options.scaling_size,
                    "api": list(options.api),
                    "repeat": options.repeat, "startup_repeat": options.startup_repeat,
                    "groups": sorted(g.value for g in options.groups),
                    "dir_size": options.dir_size, "dir_files": options.dir_files,
                    "dir_level": options.dir_level, "dir_seed": options.dir_seed,
                    "lock_list": list(options.lock_list), "lock_push": list(options.lock_push),
                    "lock_latency": options.lock_latency},
        "directory_tree": tree.summary() if tree is not None else None,
        "rows": [{**row.summary(), "net_rate_mib_s": results.row_net_rate(row),
                  "rate_mib_s": rate_mib_s(row.scenario.total_bytes, row.median())
                  if is_transfer(row.scenario) else None,
                  "stored_vs_s5cmd": ratio(row.stored(),
                                           results.stored(row.scenario, ClientName.S5CMD))}
                 for row in results.rows],
        "marginal": marginal_lines(results),
        "targets": [{"name": t.name, "measured": t.measured, "passed": t.passed}
                    for t in found],
        "notes": list(notes),
    }
