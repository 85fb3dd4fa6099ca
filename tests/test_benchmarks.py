"""Unit tests of the benchmark harness's pure parts (benchmarks/): sizes, the plan, rows and
the budget, fixtures' objects, command lines, the table, ratios, marginal cost and targets.

No server, no subprocess: fast, and importable with the test extra alone (no psutil).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks.clients import AwsCli, Job, S5cmd, Station, Tychoreg
from benchmarks.fixtures import (
    layout_differences,
    package_names,
    station_objects,
    tychoreg_objects,
    tychoreg_record,
)
from benchmarks.measure import Budget, Row, Run, files_of_size, rate_mib_s
from benchmarks.report import (
    Results,
    Target,
    marginal_cost,
    marginal_lines,
    net_rate,
    ratio,
    render,
    table,
    targets,
)
from benchmarks.scenarios import (
    FULL,
    QUICK,
    Action,
    ClientName,
    Group,
    Layout,
    Options,
    Scenario,
    build_scenarios,
    parse_lists,
    repeat_for,
    scaling_lengths,
)
from benchmarks.units import (
    GiB,
    KiB,
    MiB,
    fmt_count,
    fmt_size,
    parse_counts,
    parse_latencies,
    parse_size,
)

ALL = (ClientName.TYCHOREG, ClientName.STATION, ClientName.AWS, ClientName.S5CMD)

# -- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("4096", 4096),  # a bare number is bytes, as for tychoreg
    ("16k", 16 * KiB), ("16KiB", 16 * KiB), ("256MiB", 256 * MiB), ("256m", 256 * MiB),
    ("1GiB", GiB), (" 8 MiB ", 8 * MiB),
])
def test_parse_size_reads_like_the_product(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "MiB", "-1", "0", "12 parsecs"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(("size", "text"), [
    (256 * MiB, "256 MiB"), (16 * KiB, "16 KiB"), (GiB, "1 GiB"), (1000, "1000 B"),
    (1536 * KiB, "1536 KiB"), (0, "0 B"),
])
def test_fmt_size(size: int, text: str) -> None:
    assert fmt_size(size) == text


def test_counts_and_latencies() -> None:
    assert parse_counts("10000,100, 1_000,100") == (100, 1000, 10000)
    assert parse_latencies("20,0") == (0, 20)
    assert fmt_count(10000) == "10,000"
    for bad in ("", "0", "a,b", "-5"):
        with pytest.raises(ValueError):
            parse_counts(bad)
    for bad in ("", "-1", "x"):
        with pytest.raises(ValueError):
            parse_latencies(bad)


# -- the plan --------------------------------------------------------------------------------


def test_parse_names() -> None:
    assert ClientName.parse("s5cmd, tychoreg,s5cmd") == (ClientName.S5CMD, ClientName.TYCHOREG)
    assert Group.parse("push,scaling") == {Group.PUSH, Group.SCALING}
    with pytest.raises(ValueError, match="s6cmd"):
        ClientName.parse("s6cmd")
    with pytest.raises(ValueError, match="pulll"):
        Group.parse("pulll")
    assert parse_lists("100x1MiB, 500x16KiB") == ((100, MiB), (500, 16 * KiB))
    for bad in ("100", "x1MiB", "0x1MiB", "100x", ""):
        with pytest.raises(ValueError):
            parse_lists(bad)


def test_full_plan_has_the_issue_scenarios() -> None:
    names = [s.name for s in build_scenarios(FULL)]
    assert names == [
        "start-up --help", "start-up pull 1 KiB", "start-up push 1 KiB",
        "push 256 MiB", "pull 256 MiB",
        "pull-list 100 x 1 MiB @0ms", "pull-list 100 x 1 MiB @20ms",
        "pull-list 500 x 16 KiB @0ms", "pull-list 500 x 16 KiB @20ms",
        "scaling pull-list 100 x 4 KiB", "scaling pull-list 1,000 x 4 KiB",
        "scaling pull-list 5,000 x 4 KiB", "scaling pull-list 10,000 x 4 KiB",
    ]
    assert scaling_lengths(FULL) == (100, 1000, 5000, 10000)


def test_quick_plan_is_small() -> None:
    scenarios = build_scenarios(QUICK)
    assert all(s.total_bytes <= 20 * MiB for s in scenarios)
    assert max(s.count for s in scenarios) <= 500
    assert all(repeat_for(s, QUICK) == 1 for s in scenarios)


def test_groups_select_scenarios_and_startup_repeats_more() -> None:
    options = Options(groups=frozenset({Group.STARTUP}), repeat=3, startup_repeat=5)
    scenarios = build_scenarios(options)
    assert {s.group for s in scenarios} == {Group.STARTUP}
    assert {repeat_for(s, options) for s in scenarios} == {5}
    assert repeat_for(Scenario(Group.PUSH, Action.PUSH, MiB), options) == 3


def test_runs_tychoreg_on_each_layout_others_on_the_first() -> None:
    both = (Layout.STATION, Layout.TYCHOREG)
    pull_list = Scenario(Group.PULL_LIST, Action.PULL_LIST, KiB, 10, layouts=both)
    assert pull_list.runs(ALL) == [
        (ClientName.TYCHOREG, Layout.STATION), (ClientName.TYCHOREG, Layout.TYCHOREG),
        (ClientName.STATION, Layout.STATION), (ClientName.AWS, Layout.STATION),
        (ClientName.S5CMD, Layout.STATION)]
    scaling = next(s for s in build_scenarios(FULL) if s.group is Group.SCALING)
    assert [c for c, _ in scaling.runs(ALL)] == [ClientName.TYCHOREG, ClientName.S5CMD]
    push = Scenario(Group.PUSH, Action.PUSH, MiB)
    assert push.runs((ClientName.RAW_HTTP, ClientName.S5CMD)) == [
        (ClientName.RAW_HTTP, None), (ClientName.S5CMD, None)]
    assert pull_list.runs((ClientName.RAW_HTTP,)) == []


# -- rows and the budget ---------------------------------------------------------------------


def run(wall: float, rss: float = 50.0, error: str = "", server: float | None = None) -> Run:
    return Run(wall, rss, wall / 2, server, None, error)


def test_row_statistics_skip_failed_runs() -> None:
    row = Row(Scenario(Group.PUSH, Action.PUSH, MiB), ClientName.TYCHOREG, "tychoreg")
    row.runs += [run(3.0, 100, server=1.5), run(1.0, 80, server=1.0), run(2.0, 90),
                 run(0.1, 500, error="exit 3")]
    assert row.median() == 2.0
    assert row.peak_rss() == 100
    assert row.server_load() == pytest.approx(0.75)  # medians of 0.5 and 1.0
    assert row.spent() == pytest.approx(6.1)
    assert Row(row.scenario, ClientName.AWS, "aws").median() is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_bounds_runs_by_count_time_and_deadline() -> None:
    clock = Clock()
    budget = Budget(row_seconds=10, total_seconds=100, clock=clock)
    row = Row(Scenario(Group.PUSH, Action.PUSH, MiB), ClientName.TYCHOREG, "tychoreg")
    assert budget.due(row, 3)  # the first run always
    row.runs.append(run(30.0))
    assert not budget.due(row, 3)  # over the row's budget: no second run
    quick = Row(row.scenario, ClientName.S5CMD, "s5cmd")
    quick.runs += [run(1.0), run(1.0), run(1.0)]
    assert not budget.due(quick, 3)  # repeat reached
    assert budget.due(quick, 4)
    clock.now = 100.0
    assert not budget.due(Row(row.scenario, ClientName.AWS, "aws"), 3)  # deadline
    assert budget.expired() and len(budget.skipped) == 1


def test_files_of_size(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert "nothing written" in files_of_size(out, 4, 2)
    out.mkdir()
    (out / "a.bin").write_bytes(b"abcd")
    (out / "a.bin.etag").write_text('"x"')  # sidecars do not count
    assert "found 1 of 1" in files_of_size(out, 4, 2)
    (out / "b.bin").write_bytes(b"abcd")
    assert files_of_size(out, 4, 2) == ""
    (out / "c.bin").write_bytes(b"abc")
    assert "found 2 of 3" in files_of_size(out, 4, 2)


# -- fixtures --------------------------------------------------------------------------------


def test_station_objects_are_tycho_stations_layout() -> None:
    objects = station_objects("p1", b"data")
    assert list(objects) == ["p1/tycho_1.0.pkg", "p1/tycho.json"]
    assert objects["p1/tycho.json"] == json.dumps(
        {"localname": "p1.bin", "latest": "1.0"}, indent=2).encode()


def test_tychoreg_objects_carry_the_record_twice() -> None:
    data = b"x" * 1000
    objects = tychoreg_objects("p1", data, "tychoreg 0.1.0", "2026-01-01T00:00:00+00:00")
    assert list(objects) == ["p1/tycho_1.0.pkg", "p1/tycho_1.0.meta.json", "p1/tycho.json"]
    record = json.loads(objects["p1/tycho_1.0.meta.json"])
    assert record == {"sha256": hashlib.sha256(data).hexdigest(), "size": 1000,
                      "pushed_at": "2026-01-01T00:00:00+00:00", "tool": "tychoreg 0.1.0",
                      "localname": "p1.bin"}
    meta = json.loads(objects["p1/tycho.json"])
    assert meta == {"localname": "p1.bin", "latest": "1.0",
                    "tychoreg": {"records": {"1.0": record}}}
    assert tychoreg_record("p1", data, "t", "when")["sha256"] == record["sha256"]


def test_layout_differences() -> None:
    objects = tychoreg_objects("p", b"abc", "tychoreg 0.1.0", "then")
    assert layout_differences(objects, dict(objects)) == []
    reordered = {**objects, "p/tycho.json": json.dumps(
        json.loads(objects["p/tycho.json"]), sort_keys=True).encode()}
    assert layout_differences(objects, reordered) == []  # JSON compared parsed
    real = {**objects, "p/tycho_1.0.sig": b"sig"}
    assert layout_differences(real, objects) == [
        "a real push writes p/tycho_1.0.sig, the fixtures do not"]
    changed = {**objects, "p/tycho_1.0.meta.json": b'{"sha256": "0", "format": "file"}'}
    (difference,) = layout_differences(changed, objects)
    assert difference.startswith("p/tycho_1.0.meta.json: a real push wrote")
    assert layout_differences(objects, {**objects, "p/tycho_1.0.pkg": b"abd"}) == [
        "p/tycho_1.0.pkg: the bytes differ"]


def test_package_names_sort_in_order() -> None:
    names = package_names(12000)
    assert names[:2] == ("p00000", "p00001") and names[-1] == "p11999"
    assert list(names) == sorted(names) and len(set(names)) == 12000


# -- clients ---------------------------------------------------------------------------------


def test_command_lines(tmp_path: Path) -> None:
    job = Job("http://127.0.0.1:9", "bkt", tmp_path, "big", tmp_path / "f.bin",
              packages=("p1", "p2"))
    assert Tychoreg("tychoreg").push(job) == [
        "tychoreg", "push", "big", "1.0", str(tmp_path / "f.bin"), "--promote-latest",
        "--quiet"]
    argv = Tychoreg("tychoreg").command(Action.PULL_LIST, job)
    assert argv[:3] == ["tychoreg", "pull-list", "--from-file"]
    assert Path(argv[3]).read_text() == "p1\np2\n"
    argv = S5cmd("s5cmd").pull_list(job)
    assert argv[:2] == ["s5cmd", "--endpoint-url"] and argv[-2] == "run"
    assert Path(argv[-1]).read_text().splitlines() == [
        f"cp s3://bkt/p1/tycho_1.0.pkg {tmp_path / 'out' / 'p1.bin'}",
        f"cp s3://bkt/p2/tycho_1.0.pkg {tmp_path / 'out' / 'p2.bin'}"]
    assert "--recursive" in AwsCli("aws").pull_list(job)
    assert Station("ts.py").pull(job)[1:] == ["ts.py", "pull", "big", "--outdir",
                                              str(tmp_path / "out")]
    with pytest.raises(ValueError):
        Tychoreg("tychoreg").command(Action.HELP, job)


# -- ratios, rates, marginal cost -------------------------------------------------------------


def test_ratio_and_rates() -> None:
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    assert rate_mib_s(10 * MiB, 2.0) == 5.0
    assert rate_mib_s(MiB, 0.0) is None
    # 256 MiB in 3.5 s, the same command on 1 KiB in 0.5 s: 256 MiB - 1 KiB in 3 s
    assert net_rate(256 * MiB, 3.5, KiB, 0.5) == pytest.approx((256 * MiB - KiB) / MiB / 3)
    assert net_rate(256 * MiB, 0.4, KiB, 0.5) is None  # no time left once start-up is out
    assert net_rate(16 * MiB, 0.505, KiB, 0.5) is None  # 5 ms of 0.5 s: noise
    assert net_rate(256 * MiB, None, KiB, 0.5) is None


def test_marginal_cost() -> None:
    assert marginal_cost(2.0, 11.0, 100, 1000) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        marginal_cost(1.0, 2.0, 1000, 1000)


# -- table and targets -----------------------------------------------------------------------


def row_of(scenario: Scenario, client: ClientName, *walls: float,
           layout: Layout | None = None, rss: float = 60.0) -> Row:
    return Row(scenario, client, client.value, layout, [run(w, rss) for w in walls])


def test_render_aligns_columns() -> None:
    text = render([("name", "value"), ("a", "1.5"), ("longer", "10.25")], frozenset({1}))
    assert text.splitlines() == ["name    value", "------  -----", "a         1.5",
                                 "longer  10.25"]


def test_table_shows_every_row_and_failures() -> None:
    scenario = Scenario(Group.PULL_LIST, Action.PULL_LIST, 16 * KiB, 500, 20,
                        layouts=(Layout.STATION,))
    rows = [row_of(scenario, ClientName.TYCHOREG, 2.0, 1.0, 3.0, layout=Layout.STATION),
            row_of(scenario, ClientName.S5CMD, 1.0, layout=Layout.STATION),
            Row(scenario, ClientName.AWS, "aws", Layout.STATION, [run(1.0, error="exit 1")])]
    lines = table(Results(rows, FULL)).splitlines()
    assert lines[0].split()[:3] == ["scenario", "client", "data"]
    tycho = lines[2].split()
    assert tycho[tycho.index("tychoreg") + 2:][:4] == ["3", "2.000", "1.000-3.000", "250.0"]
    assert "2.00" in tycho  # t/s5cmd
    assert "FAILED" in lines[4] and "0/1" in lines[4]


def pull_list(count: int, size: int, latency: int) -> Scenario:
    return Scenario(Group.PULL_LIST, Action.PULL_LIST, size, count, latency,
                    layouts=(Layout.STATION, Layout.TYCHOREG))


def by_name(found: list[Target]) -> dict[str, bool | None]:
    return {t.name: t.passed for t in found}


def test_pull_list_targets() -> None:
    at20, at0 = pull_list(500, 16 * KiB, 20), pull_list(500, 16 * KiB, 0)
    rows = [
        row_of(at20, ClientName.TYCHOREG, 1.0, layout=Layout.STATION),
        row_of(at20, ClientName.TYCHOREG, 1.5, layout=Layout.TYCHOREG),
        row_of(at20, ClientName.S5CMD, 1.2, layout=Layout.STATION),
        row_of(at20, ClientName.STATION, 12.0, layout=Layout.STATION),
        row_of(at0, ClientName.TYCHOREG, 1.3, layout=Layout.STATION),
        row_of(at0, ClientName.S5CMD, 1.0, layout=Layout.STATION),
    ]
    found = by_name(targets(Results(rows, FULL)))
    name = "pull-list 500 x 16 KiB @20ms"
    assert found[f"{name} [tycho-station]: tychoreg <= s5cmd"] is True
    assert found[f"{name} [tycho-station]: tychoreg >= 10x faster than tycho-station"] is True
    assert found[f"{name} [tychoreg]: tychoreg <= s5cmd"] is False
    assert found[f"{name} [tychoreg]: tychoreg >= 10x faster than tycho-station"] is False
    assert found["pull-list 500 x 16 KiB @0ms [tycho-station]: tychoreg <= 1.3x s5cmd"] is True
    assert found["pull-list 500 x 16 KiB @0ms [tychoreg]: tychoreg <= 1.3x s5cmd"] is None


def test_transfer_and_startup_targets_use_net_rates() -> None:
    tiny_push = Scenario(Group.STARTUP, Action.PUSH, KiB)
    push = Scenario(Group.PUSH, Action.PUSH, 256 * MiB)
    helps = Scenario(Group.STARTUP, Action.HELP)
    tiny_pull = Scenario(Group.STARTUP, Action.PULL, KiB, layouts=(Layout.TYCHOREG,))
    rows = [
        row_of(tiny_push, ClientName.TYCHOREG, 0.5),
        row_of(tiny_push, ClientName.S5CMD, 0.01),
        # tychoreg: 256 MiB in 2.5 s net of 0.5 s start-up; s5cmd: in 2.99 s net
        row_of(push, ClientName.TYCHOREG, 3.0),
        row_of(push, ClientName.S5CMD, 3.0),
        Row(helps, ClientName.TYCHOREG, "tychoreg --help", None, [run(0.2)]),
        row_of(tiny_pull, ClientName.TYCHOREG, 0.39, layout=Layout.TYCHOREG),
    ]
    results = Results(rows, FULL)
    assert results.row_net_rate(rows[2]) == pytest.approx((256 * MiB - KiB) / MiB / 2.5)
    assert results.row_net_rate(rows[0]) is None  # start-up rows have none
    found = by_name(targets(results))
    assert found["push 256 MiB: throughput excluding start-up >= s5cmd's"] is True
    assert found["push 256 MiB: wall time <= 1.3x s5cmd's"] is True
    assert found["tychoreg --help <= 0.15 s (start-up included)"] is False
    assert found["one tychoreg pull of 1 KiB <= 0.4 s (start-up included)"] is True


def scaling(count: int) -> Scenario:
    return Scenario(Group.SCALING, Action.PULL_LIST, 4 * KiB, count,
                    layouts=(Layout.TYCHOREG,),
                    clients=(ClientName.TYCHOREG, ClientName.S5CMD))


@pytest.mark.parametrize(("t_last", "flat"), [(100.0, True), (107.0, True), (120.0, False)])
def test_marginal_cost_target(t_last: float, flat: bool) -> None:
    # (T(1000) - T(100)) / 900 = 10 ms; (T(10000) - T(1000)) / 9000 = (t_last - 10) / 9000
    rows = [row_of(scaling(100), ClientName.TYCHOREG, 1.0, layout=Layout.TYCHOREG),
            row_of(scaling(1000), ClientName.TYCHOREG, 10.0, layout=Layout.TYCHOREG),
            row_of(scaling(10000), ClientName.TYCHOREG, t_last, layout=Layout.TYCHOREG,
                   rss=200.0),
            row_of(scaling(5000), ClientName.TYCHOREG, 40.0, layout=Layout.TYCHOREG),
            row_of(scaling(5000), ClientName.S5CMD, 10.0, layout=Layout.TYCHOREG)]
    results = Results(rows, FULL)
    found = by_name(targets(results))
    marginal = next(name for name in found if name.startswith("marginal cost"))
    assert found[marginal] is flat
    assert found["pull-list of 5,000 packages: tychoreg <= s5cmd"] is False
    assert found["pull-list of 10,000 packages: peak RSS <= 150 MiB"] is False
    assert found["tychoreg's peak RSS <= 150 MiB in every scenario"] is False
    assert marginal_lines(results)[0].startswith("tychoreg: 100->1,000: 10.00 ms")


def test_targets_without_measurements_are_not_applicable() -> None:
    found = targets(Results([], FULL))
    assert [t.passed for t in found] == [None]  # only the RSS line, with nothing measured


def test_failed_tychoreg_runs_are_a_miss() -> None:
    scenario = pull_list(100, MiB, 20)
    rows = [Row(scenario, ClientName.TYCHOREG, "tychoreg", Layout.TYCHOREG,
                [run(1.0, error="exit 3")]),
            row_of(scenario, ClientName.S5CMD, 1.0, layout=Layout.STATION)]
    found = by_name(targets(Results(rows, FULL)))
    assert found["pull-list 100 x 1 MiB @20ms [tychoreg]: tychoreg <= s5cmd"] is None
    assert found["every tychoreg run succeeds"] is False
