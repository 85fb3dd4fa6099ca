"""Unit tests of the benchmark harness's pure parts (benchmarks/): sizes, the plan, rows and
the budget, fixtures' objects, the directory scenario's tree and its check, command lines,
the table, ratios, marginal cost and targets (issue 16's target table with PASS, MISS and
not run), the README's results block.

No server, no subprocess: fast, and importable with the test extra alone (no psutil).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.clients import (
    AwsCli,
    BarePython,
    Job,
    S5cmd,
    Station,
    Tychoreg,
    interpreter_of,
    make_clients,
)
from benchmarks.fixtures import (
    layout_differences,
    package_names,
    station_objects,
    tychoreg_objects,
    tychoreg_record,
    write_tree,
)
from benchmarks.measure import (
    Budget,
    Row,
    Run,
    TreeSummary,
    files_of_size,
    rate_mib_s,
    requests_for,
    s3_requests,
    summarize_tree,
    tree_difference,
    tree_mismatch,
)
from benchmarks.report import (
    DIRECTORY_TARGET,
    ISSUE16,
    RESULTS_END,
    RESULTS_START,
    LockVerdict,
    Results,
    Target,
    Verdict,
    ab_table,
    issue16_verdicts,
    issue18_table,
    issue18_verdicts,
    issue19_verdicts,
    lock_summary,
    marginal_cost,
    marginal_lines,
    net_rate,
    ratio,
    readme_with_results,
    render,
    sign_table,
    summary,
    table,
    target_table,
    targets,
    verdict_summary,
)
from benchmarks.scenarios import (
    FULL,
    LOCK_SIDES,
    QUICK,
    Action,
    ClientName,
    Group,
    Layout,
    Options,
    Scenario,
    build_scenarios,
    directory_spec,
    parse_level,
    parse_lists,
    push_list_items,
    repeat_for,
    scaling_lengths,
    with_directory,
)
from benchmarks.tree import (
    MIXED_BLOCK,
    SMALL_MAX,
    SMALL_MIN,
    Content,
    FileSpec,
    corpus,
    file_chunks,
    mixed_blocks,
    tree_spec,
)
from benchmarks.units import (
    GiB,
    KiB,
    MiB,
    fmt_count,
    fmt_size,
    parse_count,
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
    assert parse_count("20_000") == parse_count(" 20000 ") == 20000
    for bad in ("", "0", "-3", "2k", "1,000"):
        with pytest.raises(ValueError):
            parse_count(bad)


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
        "api pull_many 500 x 16 KiB",
        "directory push 500 MiB, 20,003 files, zstd -3",
        "directory pull 500 MiB, 20,003 files, zstd -3",
        "lock pull-list 100 x 1 MiB @20ms", "lock pull-list 100 x 1 MiB @20ms, all current",
        "lock push-list 50 x 64 KiB @20ms", "sign pull-list 100 x 1 MiB @20ms",
        "sign pull-list --locked 100 x 1 MiB @20ms, all current",
    ]
    assert scaling_lengths(FULL) == (100, 1000, 5000, 10000)
    assert Group.parse(",".join(g.value for g in Group)) == FULL.groups  # --scenarios' default


def test_quick_plan_is_small() -> None:
    scenarios = build_scenarios(QUICK)
    assert all(s.total_bytes <= 20 * MiB for s in scenarios if s.group is not Group.DIRECTORY)
    assert max(s.count for s in scenarios) <= 500
    assert all(repeat_for(s, QUICK) == 1 for s in scenarios)
    directory = [s for s in scenarios if s.group is Group.DIRECTORY]
    assert [(s.size, s.files) for s in directory] == [(40 * MiB, 2003)] * 2


def test_directory_alone_and_its_clients() -> None:
    options = Options(groups=Group.parse("directory"), dir_level=7)
    push, pull = build_scenarios(options)
    assert (push.action, pull.action) == (Action.PUSH_DIR, Action.PULL_DIR)
    assert push.name == "directory push 500 MiB, 20,003 files, zstd -7"
    assert push.total_bytes == 500 * MiB and pull.reads and not push.reads
    # tychoreg, and s5cmd as the shell pipeline; nobody else has a directory command
    everyone = (*ALL, ClientName.RAW_HTTP)
    assert push.runs(everyone) == pull.runs(everyone) == [
        (ClientName.TYCHOREG, None), (ClientName.S5CMD, None)]
    assert pull.runs((ClientName.S5CMD,)) == [(ClientName.S5CMD, None)]


def test_directory_options() -> None:
    base = Options(groups=frozenset({Group.DIRECTORY}))
    assert (base.dir_size, base.dir_files, base.dir_level) == (500 * MiB, 20000, 3)
    assert (QUICK.dir_size, QUICK.dir_files) == (40 * MiB, 2000)
    out = with_directory(base, size="1GiB", files="30_000", level="9", seed=4)
    assert (out.dir_size, out.dir_files, out.dir_level, out.dir_seed) == (GiB, 30000, 9, 4)
    assert with_directory(base) == base
    assert parse_level("19") == 19
    for bad in ("0", "20", "-1", "fast", ""):
        with pytest.raises(ValueError, match="zstd level"):
            parse_level(bad)
    with pytest.raises(ValueError, match="--dir-level"):
        with_directory(base, level="22")
    with pytest.raises(ValueError, match="--dir-size"):
        with_directory(base, size="lots")
    with pytest.raises(ValueError, match="--dir-files"):
        with_directory(base, files="0")
    # a tree whose small files would take over half of it is refused up front...
    with pytest.raises(ValueError, match="too small for 20,000 small files"):
        with_directory(base, size="20MiB")
    # ...unless the directory scenario is not to run
    other = Options(groups=frozenset({Group.PUSH}))
    assert with_directory(other, size="20MiB").dir_size == 20 * MiB


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
    row = Row(Scenario(Group.PUSH, Action.PUSH, MiB), ClientName.STATION, "tycho-station")
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


# -- the directory scenario: the tree --------------------------------------------------------


def test_tree_spec_is_deterministic_and_sums_to_the_size() -> None:
    spec = tree_spec(500 * MiB, 20_000, seed=10)
    assert spec == tree_spec(500 * MiB, 20_000, seed=10)
    assert spec != tree_spec(500 * MiB, 20_000, seed=11)
    assert spec.total_bytes == 500 * MiB
    assert len(spec.small) == 20_000 and len(spec.files) == 20_003
    assert all(SMALL_MIN <= f.size <= SMALL_MAX for f in spec.small)
    kinds = {f.content for f in spec.small}
    assert kinds == {Content.TEXT, Content.RANDOM}
    text_share = sum(f.content is Content.TEXT for f in spec.small) / len(spec.small)
    assert 0.55 < text_share < 0.65
    # a few hundred nested directories, each after its parent, every file in one of them
    assert 200 <= len(spec.dirs) <= 500 and len(set(spec.dirs)) == len(spec.dirs)
    assert max(d.count("/") for d in spec.dirs) >= 2
    for i, d in enumerate(spec.dirs):
        parent = d.rpartition("/")[0]
        assert not parent or parent in spec.dirs[:i]
    assert all(f.path.rpartition("/")[0] in spec.dirs for f in spec.small)
    assert len({f.path for f in spec.files}) == len(spec.files)
    # three large files: random, text-like, half-and-half, sharing the rest evenly
    assert [f.content for f in spec.large] == [Content.RANDOM, Content.TEXT, Content.MIXED]
    sizes = [f.size for f in spec.large]
    assert max(sizes) - min(sizes) <= 2 and sum(sizes) > 450 * MiB
    assert spec.random_bytes == pytest.approx(
        sum(f.size for f in spec.small if f.content is Content.RANDOM)
        + sizes[0] + sizes[2] / 2, abs=MIXED_BLOCK)
    # the samples a pull's check hashes: small ones chosen by the seed, and the large ones
    samples = spec.samples()
    assert samples == spec.samples() and samples[-3:] == spec.large and len(samples) == 11


@pytest.mark.parametrize(("total", "files"), [(40 * MiB, 2000), (100 * MiB, 1), (3 * MiB, 100)])
def test_tree_spec_sums_to_any_size(total: int, files: int) -> None:
    spec = tree_spec(total, files, seed=1)
    assert spec.total_bytes == total and len(spec.small) == files and spec.dirs


def test_tree_spec_refuses_a_tree_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        tree_spec(10 * MiB, 20_000, seed=1)
    with pytest.raises(ValueError, match="too small"):
        tree_spec(100 * KiB, 1, seed=1)  # no room for the three large files
    with pytest.raises(ValueError):
        tree_spec(10 * MiB, 0, seed=1)


def test_mixed_blocks_alternate() -> None:
    blocks = mixed_blocks(3 * MIXED_BLOCK + 10)
    assert blocks == [(Content.TEXT, MIXED_BLOCK), (Content.RANDOM, MIXED_BLOCK),
                      (Content.TEXT, MIXED_BLOCK), (Content.RANDOM, 10)]
    assert FileSpec("m", 3 * MIXED_BLOCK + 10, Content.MIXED).random_bytes == MIXED_BLOCK + 10
    assert mixed_blocks(0) == []


def test_file_bytes_are_deterministic_and_of_their_kind() -> None:
    text = corpus(3, 256 * KiB)
    assert len(text) == 256 * KiB and text == corpus(3, 256 * KiB) != corpus(4, 256 * KiB)
    size = 600 * KiB  # several chunks (each at most the corpus' size)

    def made(content: Content, path: str = "a/f") -> bytes:
        return b"".join(file_chunks(FileSpec(path, size, content), text, seed=3))

    for content in Content:
        data = made(content)
        assert len(data) == size and data == made(content)
        assert data != made(content, "a/g")  # each file its own bytes

    def ratio_of(data: bytes) -> float:
        return len(data) / len(zlib.compress(data, 6))

    assert ratio_of(made(Content.RANDOM)) < 1.01
    assert ratio_of(made(Content.TEXT)) > 2.0
    assert 1.3 < ratio_of(made(Content.MIXED)) < ratio_of(made(Content.TEXT))
    words = made(Content.TEXT)
    assert b" " in words and b"\n" in words and words.count(words[:4096]) == 1  # no repeats


def test_write_tree_and_check_it(tmp_path: Path) -> None:
    spec = tree_spec(2 * MiB, 200, seed=5)
    source = write_tree(spec, tmp_path / "src")
    assert source.path == tmp_path / "src" / "tree"
    assert (source.summary.files, source.summary.dirs, source.summary.bytes) == (
        203, len(spec.dirs), 2 * MiB)
    assert source.summary == write_tree(spec, tmp_path / "again").summary  # same bytes
    copy = tmp_path / "out" / "tree"
    shutil.copytree(source.path, copy, symlinks=True)
    assert tree_mismatch(source.summary, copy) == ""
    # a changed byte in a sampled file, a missing file, an extra symlink: all caught
    sampled = copy / spec.samples()[0].path
    data = bytearray(sampled.read_bytes())
    data[0] ^= 1
    sampled.write_bytes(bytes(data))
    assert "1 of 11 sampled files differ" in tree_mismatch(source.summary, copy)
    sampled.write_bytes(bytes(data[:-1]))
    assert "bytes:" in tree_mismatch(source.summary, copy)
    shutil.rmtree(copy)
    shutil.copytree(source.path, copy, symlinks=True)
    os.symlink("/etc", copy / "escape")
    assert "other entries: 1, expected 0" in tree_mismatch(source.summary, copy)
    (copy / "escape").unlink()
    (copy / spec.small[-1].path).unlink()
    assert "files: 202, expected 203" in tree_mismatch(source.summary, copy)
    assert "no directory" in tree_mismatch(source.summary, tmp_path / "nowhere")


def test_tree_difference_and_large_samples(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big"
    big.write_bytes(b"a" * (3 * MiB))
    found = summarize_tree(root, ["big"])
    assert found == TreeSummary(1, 0, 3 * MiB, 0, (("big", found.samples[0][1]),))
    (root / ".tychoreg-pull").write_text("{}")  # a pull's proof is not part of the tree
    assert summarize_tree(root, ["big"]) == found
    with big.open("r+b") as f:  # a large file is hashed at both ends: the middle is not
        f.seek(MiB + 5)
        f.write(b"b")
    assert summarize_tree(root, ["big"]) == found
    with big.open("r+b") as f:
        f.seek(3 * MiB - 1)
        f.write(b"b")
    assert tree_difference(found, summarize_tree(root, ["big"])) == \
        "1 of 1 sampled files differ (e.g. big)"


# -- the directory scenario: command lines, table, targets ------------------------------------


def test_directory_command_lines(tmp_path: Path) -> None:
    tree = tmp_path / "src dir" / "tree"
    job = Job("http://127.0.0.1:9", "bkt", tmp_path / "w", "tree", tree=tree, level=5)
    assert Tychoreg("tychoreg").command(Action.PUSH_DIR, job) == [
        "tychoreg", "push", "tree", "1.0", str(tree), "--level", "5", "--quiet"]
    assert Tychoreg("tychoreg").command(Action.PULL_DIR, job) == [
        "tychoreg", "pull", "tree", "--version", "1.0", "--outfile",
        str(tmp_path / "w" / "out" / "tree"), "--force", "--quiet"]
    s5 = S5cmd("/x/s5cmd")
    argv = s5.command(Action.PUSH_DIR, job)
    assert argv[1:4] == ["-o", "pipefail", "-c"] and argv[0].endswith("bash")
    assert argv[4] == (
        f"tar -I 'zstd -T0 -5' -cf - -C '{tmp_path}/src dir' tree | /x/s5cmd --endpoint-url "
        "http://127.0.0.1:9 --log error pipe s3://bkt/tree/tycho_1.0.pkg")
    argv = s5.command(Action.PULL_DIR, job)
    assert argv[4] == ("/x/s5cmd --endpoint-url http://127.0.0.1:9 --log error cat "
                       f"s3://bkt/tree/tycho_1.0.pkg | tar -I zstd -xf - -C {tmp_path}/w/out")
    assert job.outtree == tmp_path / "w" / "out" / "tree"  # where both extract
    assert s5.label(Action.PUSH_DIR) == "tar|zstd|s5cmd" and s5.label(Action.PUSH) == "s5cmd"
    with pytest.raises(NotImplementedError):
        AwsCli("aws").command(Action.PUSH_DIR, job)


def dir_scenarios() -> tuple[Scenario, Scenario]:
    push, pull = build_scenarios(Options(groups=frozenset({Group.DIRECTORY}),
                                         dir_size=40 * MiB, dir_files=2000))
    return push, pull


def dir_row(scenario: Scenario, client: ClientName, wall: float, stored: int | None,
            error: str = "") -> Row:
    label = "tar|zstd|s5cmd" if client is ClientName.S5CMD else client.value
    return Row(scenario, client, label, None,
               [Run(wall, 70.0, wall, 0.5, None, error, stored)])


def test_directory_table_shows_sizes_and_ratios() -> None:
    push, pull = dir_scenarios()
    rows = [dir_row(push, ClientName.TYCHOREG, 2.0, 30 * MiB),
            dir_row(push, ClientName.S5CMD, 4.0, 25 * MiB),
            dir_row(pull, ClientName.TYCHOREG, 1.0, 30 * MiB),
            dir_row(pull, ClientName.S5CMD, 1.0, 25 * MiB)]
    lines = table(Results(rows, FULL)).splitlines()
    assert lines[0].split()[-2:] == ["stored", "size/s5cmd"]
    tycho = lines[2].split()
    assert tycho[-3:] == ["30.0", "MiB", "1.200"]  # stored, and its ratio to the pipeline's
    assert "20.0 MiB/s" in lines[2] and "0.50" in tycho  # rate: tree bytes/s; t/s5cmd
    assert lines[3].split()[-3:] == ["25.0", "MiB", "1.000"] and "tar|zstd|s5cmd" in lines[3]
    # without directory rows, no such columns
    other = Scenario(Group.PUSH, Action.PUSH, MiB)
    assert "stored" not in table(Results([row_of(other, ClientName.S5CMD, 1.0)], FULL))


@pytest.mark.parametrize(("push", "pull", "passed"), [
    (1.0, 1.0, True), (0.5, 2.1, False), (None, 1.0, None), ("failed", 0.5, False)])
def test_directory_target(push: float | str | None, pull: float | None,
                          passed: bool | None) -> None:
    push_scenario, pull_scenario = dir_scenarios()
    rows = [dir_row(push_scenario, ClientName.S5CMD, 1.0, MiB),
            dir_row(pull_scenario, ClientName.S5CMD, 2.0, MiB)]
    if push == "failed":
        rows.append(dir_row(push_scenario, ClientName.TYCHOREG, 0.1, None, "exit 2"))
    elif isinstance(push, float):
        rows.append(dir_row(push_scenario, ClientName.TYCHOREG, push, MiB))
    if pull is not None:
        rows.append(dir_row(pull_scenario, ClientName.TYCHOREG, pull, MiB))
    found = [t for t in targets(Results(rows, FULL)) if t.name == DIRECTORY_TARGET]
    assert DIRECTORY_TARGET == "tychoreg push and pull each within the shell pipeline's time"
    assert len(found) == 1 and found[0].passed is passed
    if passed is True:
        assert found[0].measured == ("push 1.00x (tychoreg 1.000 s, pipeline 1.000 s), "
                                     "pull 0.50x (tychoreg 1.000 s, pipeline 2.000 s)")
    if push == "failed":
        assert found[0].measured.startswith("push: tychoreg failed")
    assert not [t for t in targets(Results([], FULL)) if t.name == DIRECTORY_TARGET]


def test_directory_json() -> None:
    push, _ = dir_scenarios()
    rows = [dir_row(push, ClientName.TYCHOREG, 2.0, 30 * MiB),
            dir_row(push, ClientName.S5CMD, 4.0, 25 * MiB)]
    options = Options(groups=frozenset({Group.DIRECTORY}), dir_size=40 * MiB, dir_files=2000)
    data = summary(Results(rows, options), {}, [], [])
    assert data["options"]["dir_size"] == 40 * MiB and data["options"]["dir_level"] == 3
    assert data["directory_tree"] == directory_spec(options).summary()
    assert data["directory_tree"]["files"] == 2003
    tycho = data["rows"][0]
    assert tycho["stored_bytes"] == 30 * MiB and tycho["stored_vs_s5cmd"] == pytest.approx(1.2)
    assert tycho["rate_mib_s"] == pytest.approx(20.0) and tycho["files"] == 2003
    assert tycho["runs"][0]["stored_bytes"] == 30 * MiB
    json.dumps(data)
    assert summary(Results([], FULL), {}, [], [])["directory_tree"] is None


# -- issue 16: the bare interpreter, the API scenario, the target table, the README ---------


EVERYONE = (*ALL, ClientName.PYTHON)


def test_bare_python_is_timed_in_every_startup_scenario_and_nowhere_else() -> None:
    for scenario in build_scenarios(FULL):
        pairs = scenario.runs(EVERYONE)
        if scenario.group is Group.STARTUP:
            assert (ClientName.PYTHON, None) in pairs
            assert [c for c, _ in pairs].index(ClientName.PYTHON) == len(pairs) - 1
        else:
            assert ClientName.PYTHON not in [c for c, _ in pairs], scenario.name
    assert ClientName.PYTHON in ClientName.parse("tychoreg,python")


def test_bare_python_runs_pass_whatever_the_action(tmp_path: Path) -> None:
    bare = BarePython("/venv/bin/python")
    job = Job("http://127.0.0.1:9", "bkt", tmp_path, "tiny", tmp_path / "f.bin")
    for action in (Action.HELP, Action.PULL, Action.PUSH):
        assert bare.command(action, job) == ["/venv/bin/python", "-c", "pass"]
        assert bare.label(action) == "python -c pass"
    assert bare.baseline and not bare.writes_files and not Tychoreg("t").baseline


def test_interpreter_of_console_scripts(tmp_path: Path) -> None:
    plain = tmp_path / "tychoreg"
    plain.write_text("#!/work/x/.venv/bin/python3\n# -*- coding: utf-8 -*-\nimport re\n")
    assert interpreter_of(str(plain)) == "/work/x/.venv/bin/python3"
    long = tmp_path / "long"  # what pip writes when the path is too long for #!
    long.write_text("#!/bin/sh\n'''exec' '/a very/long/bin/python' \"$0\" \"$@\"\n' '''\n")
    assert interpreter_of(str(long)) == "/a very/long/bin/python"
    env = tmp_path / "env"
    env.write_text("#!/usr/bin/env sh\necho\n")
    assert interpreter_of(str(env)) == shutil.which("sh")
    binary = tmp_path / "s5cmd"
    binary.write_bytes(b"\x7fELF\x02\x01")
    assert interpreter_of(str(binary)) is None
    assert interpreter_of(str(tmp_path / "missing")) is None
    assert Tychoreg(str(plain)).pull_many(Job("http://h:1", "b", tmp_path, "p1",
                                              packages=("p1",)))[0] == "/work/x/.venv/bin/python3"


def test_api_scenario_and_its_command_line(tmp_path: Path) -> None:
    (api,) = [s for s in build_scenarios(FULL) if s.group is Group.API]
    assert api.name == "api pull_many 500 x 16 KiB" and api.reads
    assert api.runs(EVERYONE) == [(ClientName.TYCHOREG, Layout.TYCHOREG)]
    assert Group.parse("api") == {Group.API}
    assert [s.count for s in build_scenarios(QUICK) if s.group is Group.API] == [100]
    job = Job("http://127.0.0.1:9", "bkt", tmp_path, "p1", packages=("p1", "p2"))
    argv = Tychoreg("/nowhere/tychoreg").command(Action.PULL_MANY, job)
    assert argv[1].endswith("benchmarks/api_pull.py")
    assert argv[2:] == ["--registry", "s3://bkt", "--endpoint-url", "http://127.0.0.1:9",
                        "--from-file", str(job.listfile), "--outdir", str(job.outdir),
                        "--report", str(job.api_report)]
    assert job.listfile.read_text() == "p1\np2\n"
    with pytest.raises(NotImplementedError):
        S5cmd("s5cmd").command(Action.PULL_MANY, job)


def test_default_repeat_is_five_and_the_budget_spares_the_compared_clients() -> None:
    assert FULL.repeat == 5 and repeat_for(build_scenarios(FULL)[0], FULL) == 5
    budget = Budget(row_seconds=10, total_seconds=1000, clock=Clock())
    scenario = Scenario(Group.PUSH, Action.PUSH, MiB)
    for client in ClientName:
        row = Row(scenario, client, client.value, runs=[run(30.0)])
        compared = client in (ClientName.TYCHOREG, ClientName.S5CMD, ClientName.PYTHON,
                              ClientName.BASELINE)
        assert budget.due(row, 5) is compared, client
        row.runs += [run(30.0)] * 4
        assert not budget.due(row, 5)  # --repeat still bounds every row


def api_row(cpu: float | None, requests: int | None, *, rss: float = 60.0,
            error: str = "") -> Row:
    (api,) = [s for s in build_scenarios(FULL) if s.group is Group.API]
    return Row(api, ClientName.TYCHOREG, "tychoreg", Layout.TYCHOREG,
               [Run(1.0, rss, 0.9, None, None, error, None, cpu, requests)])


def test_cpu_per_request_is_the_median_over_counted_runs() -> None:
    row = api_row(0.19, 1000)
    row.runs += [Run(1.0, 60.0, 0.9, work_cpu=0.5, requests=1000),
                 Run(1.0, 60.0, 0.9, work_cpu=0.25, requests=1000),
                 Run(1.0, 60.0, 0.9, work_cpu=0.1, requests=None),  # not counted
                 Run(1.0, 60.0, 0.9, error="exit 3", work_cpu=0.1, requests=10)]
    assert row.cpu_per_request() == pytest.approx(0.00025)
    assert row.requests() == 1000 and row.work_cpu() == pytest.approx(0.22)
    assert api_row(None, 1000).cpu_per_request() is None
    assert api_row(0.1, 0).cpu_per_request() is None


def test_s3_requests_sums_one_buckets_counters() -> None:
    metrics = "\n".join([
        "# HELP SeaweedFS_s3_request_total Counter of s3 requests.",
        'SeaweedFS_s3_request_seconds_count{bucket="b1",type="GET"} 5',
        'SeaweedFS_s3_request_total{bucket="b1",code="200",type="GET"} 998',
        'SeaweedFS_s3_request_total{bucket="b1",code="206",type="GET"} 2',
        'SeaweedFS_s3_request_total{bucket="b1",code="304",type="HEAD"} 1e+01',
        'SeaweedFS_s3_request_total{bucket="b10",code="200",type="GET"} 7',
        'SeaweedFS_s3_request_total{bucket="other",code="200",type="PUT"} 3'])
    assert s3_requests(metrics, "b1") == 1010
    assert s3_requests(metrics, "b10") == 7 and s3_requests(metrics, "none") == 0


def named(name: str) -> Scenario:
    """The scenario of the full plan called ``name``."""
    return next(s for s in build_scenarios(FULL) if s.name == name)


def verdicts_of(rows: list[Row]) -> dict[str, Verdict]:
    return {v.spec.label: v for v in issue16_verdicts(Results(rows, FULL))}


def test_every_target_of_issue_16_is_a_scenario_of_the_full_plan() -> None:
    names = {s.name for s in build_scenarios(FULL)}
    assert {spec.scenario for spec in ISSUE16} <= names
    assert [spec.label for spec in ISSUE16] == [
        "one pull of 1 KiB, start-up included", "--help", "pull 256 MiB, SHA-256 verified",
        "push 256 MiB",
        *(f"pull-list {what} @{ms}ms [{layout}]" for what in ("100 x 1 MiB", "500 x 16 KiB")
          for ms in (0, 20) for layout in ("tycho-station", "tychoreg")),
        "pull-list 5,000 x 4 KiB", "pull-list 5,000 x 4 KiB: peak RSS",
        "pull-list 10,000 x 4 KiB", "pull-list 10,000 x 4 KiB: peak RSS",
        "pull_many 500 x 16 KiB (API): client CPU per request"]
    limits = {spec.label: spec.limit for spec in ISSUE16}
    assert limits["one pull of 1 KiB, start-up included"] == 8.0
    assert limits["--help"] == 6.0
    assert limits["pull-list 500 x 16 KiB @20ms [tychoreg]"] == 0.8
    assert limits["pull-list 500 x 16 KiB @0ms [tychoreg]"] == 1.0
    assert limits["pull-list 10,000 x 4 KiB: peak RSS"] == 150.0
    assert limits["pull_many 500 x 16 KiB (API): client CPU per request"] == 0.5


def test_nothing_measured_is_not_run_never_pass() -> None:
    found = issue16_verdicts(Results([], FULL))
    assert len(found) == len(ISSUE16)
    assert {(v.state, v.value, v.measured) for v in found} == {("not run", None, "not run")}
    # a --quick run measures other sizes: only its start-up scenarios are the issue's
    quick = [row_of(s, ClientName.TYCHOREG, 0.01, layout=(s.layouts or (None,))[-1])
             for s in build_scenarios(QUICK)]
    quick += [row_of(s, c, 10.0) for s in build_scenarios(QUICK)
              for c in (ClientName.S5CMD, ClientName.PYTHON)]
    states = {v.spec.label: v.state for v in issue16_verdicts(Results(quick, QUICK))}
    assert states.pop("one pull of 1 KiB, start-up included") == states.pop("--help") == "PASS"
    assert set(states.values()) == {"not run"}


def test_startup_targets_are_ratios_to_the_bare_interpreter_of_the_same_scenario() -> None:
    pull, helps = named("start-up pull 1 KiB"), named("start-up --help")
    rows = [row_of(pull, ClientName.TYCHOREG, 0.40, 0.41, 0.39, layout=Layout.TYCHOREG),
            Row(pull, ClientName.PYTHON, "python -c pass", None, [run(0.05), run(0.06)]),
            Row(helps, ClientName.TYCHOREG, "tychoreg --help", None, [run(0.07)]),
            # the --help scenario's interpreter is not the pull's baseline
            Row(helps, ClientName.PYTHON, "python -c pass", None, [run(0.01)])]
    found = verdicts_of(rows)
    pulled = found["one pull of 1 KiB, start-up included"]
    assert pulled.value == pytest.approx(0.40 / 0.055) and pulled.state == "PASS"
    assert pulled.shown == "7.27x" and pulled.target == "<= 8.0x python -c pass"
    assert pulled.measured == "tychoreg 0.400 s, python -c pass 0.055 s"
    assert pulled.runs == "3/2"
    assert found["--help"].value == pytest.approx(7.0) and found["--help"].state == "MISS"
    # without the baseline, no ratio: not run, never a PASS (likewise without tychoreg)
    found = verdicts_of([rows[0], rows[3]])
    assert found["one pull of 1 KiB, start-up included"].state == "not run"
    assert found["one pull of 1 KiB, start-up included"].measured == "python: not run"
    assert found["--help"].measured == "tychoreg: not run" and found["--help"].runs == ""


@pytest.mark.parametrize(("tycho", "s5", "state_at_0"), [
    (1.0, 1.0, "PASS"), (0.79, 1.0, "PASS"), (0.81, 1.0, "PASS"), (2.0, 1.0, "MISS")])
def test_pull_list_at_20ms_is_bounded_at_0_8x_s5cmd(tycho: float, s5: float,
                                                    state_at_0: str) -> None:
    scenario = named("pull-list 500 x 16 KiB @20ms")
    rows = [row_of(scenario, ClientName.TYCHOREG, tycho, layout=Layout.TYCHOREG),
            row_of(scenario, ClientName.TYCHOREG, tycho / 4, layout=Layout.STATION),
            row_of(scenario, ClientName.S5CMD, s5, layout=Layout.STATION)]
    found = verdicts_of(rows)
    mine = found["pull-list 500 x 16 KiB @20ms [tychoreg]"]
    assert mine.state == ("MISS" if tycho > 0.8 * s5 else "PASS")
    assert found["pull-list 500 x 16 KiB @20ms [tycho-station]"].state == "PASS"
    assert found["pull-list 500 x 16 KiB @0ms [tychoreg]"].state == "not run"
    at0 = named("pull-list 500 x 16 KiB @0ms")
    found = verdicts_of([row_of(at0, ClientName.TYCHOREG, tycho, layout=Layout.TYCHOREG),
                         row_of(at0, ClientName.S5CMD, s5, layout=Layout.STATION)])
    assert found["pull-list 500 x 16 KiB @0ms [tychoreg]"].state == state_at_0


def test_transfer_targets_and_failures() -> None:
    pull, push = named("pull 256 MiB"), named("push 256 MiB")
    rows = [row_of(pull, ClientName.TYCHOREG, 0.2, layout=Layout.STATION),  # not the target
            row_of(pull, ClientName.TYCHOREG, 0.5, layout=Layout.TYCHOREG),
            row_of(pull, ClientName.S5CMD, 0.4, layout=Layout.STATION),
            Row(push, ClientName.TYCHOREG, "tychoreg", None, [run(1.0, error="exit 3")]),
            row_of(push, ClientName.S5CMD, 1.2)]
    found = verdicts_of(rows)
    assert found["pull 256 MiB, SHA-256 verified"].state == "MISS"  # 1.25x, SHA-256 layout
    assert found["pull 256 MiB, SHA-256 verified"].shown == "1.25x"
    failed = found["push 256 MiB"]
    assert (failed.state, failed.measured, failed.value) == (
        "MISS", "tychoreg: every run failed", None)
    # s5cmd failing leaves nothing to compare with: not run, never a PASS
    found = verdicts_of([row_of(push, ClientName.TYCHOREG, 1.0),
                         Row(push, ClientName.S5CMD, "s5cmd", None, [run(1.0, error="x")])])
    assert (found["push 256 MiB"].state, found["push 256 MiB"].measured) == (
        "not run", "s5cmd: every run failed")


def test_long_lists_time_and_peak_rss() -> None:
    rows = [row_of(scaling(5000), ClientName.TYCHOREG, 6.0, 7.0, layout=Layout.TYCHOREG,
                   rss=71.0),
            row_of(scaling(5000), ClientName.S5CMD, 6.5, layout=Layout.TYCHOREG),
            row_of(scaling(10000), ClientName.TYCHOREG, 12.0, layout=Layout.TYCHOREG,
                   rss=151.0),
            row_of(scaling(10000), ClientName.S5CMD, 11.0, layout=Layout.TYCHOREG)]
    found = verdicts_of(rows)
    assert found["pull-list 5,000 x 4 KiB"].state == "PASS"  # median 6.5 s
    assert found["pull-list 10,000 x 4 KiB"].state == "MISS"
    assert found["pull-list 5,000 x 4 KiB: peak RSS"].shown == "71 MiB"
    assert found["pull-list 5,000 x 4 KiB: peak RSS"].state == "PASS"
    assert found["pull-list 10,000 x 4 KiB: peak RSS"].state == "MISS"
    assert found["pull-list 10,000 x 4 KiB: peak RSS"].target == "<= 150 MiB"


@pytest.mark.parametrize(("cpu", "requests", "state"), [
    (0.38, 1000, "PASS"), (0.5, 1000, "PASS"), (0.65, 1000, "MISS"), (0.38, None, "not run")])
def test_cpu_per_request_target(cpu: float, requests: int | None, state: str) -> None:
    found = verdicts_of([api_row(cpu, requests)])
    mine = found["pull_many 500 x 16 KiB (API): client CPU per request"]
    assert mine.state == state
    if requests:
        assert mine.value == pytest.approx(cpu)  # ms: seconds per 1,000 requests
        assert mine.measured == f"{cpu:.3f} s CPU, 1,000 requests (medians)"
    failed = verdicts_of([api_row(cpu, requests, error="exit 3")])
    assert failed["pull_many 500 x 16 KiB (API): client CPU per request"].state == "MISS"


def test_target_table_has_a_row_per_target() -> None:
    rows = [api_row(0.38, 1000),
            row_of(named("push 256 MiB"), ClientName.TYCHOREG, 1.0, 1.0, 1.0, 1.0, 1.0),
            row_of(named("push 256 MiB"), ClientName.S5CMD, 1.25, 1.25, 1.2, 1.3, 1.25)]
    text = target_table(issue16_verdicts(Results(rows, FULL)))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["target", "(issue", "16)"]
    assert lines[0].rstrip().endswith("result") and set(lines[1]) == {"-", " "}
    assert len(lines) == 2 + len(ISSUE16) + 1
    push = next(line for line in lines if line.startswith("push 256 MiB"))
    assert push.endswith("PASS") and "0.80x" in push and "<= 1.0x s5cmd" in push
    assert push.split()[-2] == "5/5"
    api = next(line for line in lines if line.startswith("pull_many"))
    assert api.endswith("PASS*") and "0.38 ms" in api and "<= 0.5 ms" in api
    assert sum(line.endswith("not run") for line in lines) == len(ISSUE16) - 2
    assert not any(line.endswith(("MISS", "MISS*")) for line in lines)
    assert lines[-1].startswith("* fewer than 5 runs on a side")  # the api row had one
    rows[0].runs *= 5
    assert "* fewer" not in target_table(issue16_verdicts(Results(rows, FULL)))


def test_json_has_the_verdicts_and_cpu_per_request() -> None:
    rows = [api_row(0.38, 1000)]
    data = summary(Results(rows, FULL), {}, [], [])
    assert data["rows"][0]["cpu_per_request_s"] == pytest.approx(0.00038)
    assert data["rows"][0]["requests"] == 1000
    (api,) = [verdict_summary(v) for v in issue16_verdicts(Results(rows, FULL))
              if v.spec.measure.value == "cpu"]
    assert api["result"] == "PASS" and api["limit"] == 0.5
    json.dumps(api)


README = "# B\n\n## Results\n\nprose\n\n{start}\nold figures\n{end}\n\n### Analysis\nkept\n"


def test_readme_results_block_is_replaced_and_only_it() -> None:
    readme = README.format(start=RESULTS_START, end=RESULTS_END)
    out = readme_with_results(readme, "table\nrows\n", "python benchmarks/run.py", "today")
    block = "Run of today (`python benchmarks/run.py`):\n\n```\ntable\nrows\n```"
    assert out == readme.replace("old figures", block)
    again = readme_with_results(out, "table\nrows", "python benchmarks/run.py", "today")
    assert again == out  # the markers stay: the next run replaces its own block
    for broken in (README.format(start="", end=RESULTS_END),
                   README.format(start=RESULTS_START, end=""),
                   README.format(start=RESULTS_END, end=RESULTS_START),
                   README.format(start=RESULTS_START * 2, end=RESULTS_END)):
        with pytest.raises(ValueError):
            readme_with_results(broken, "t", "c", "d")


def test_the_benchmarks_readme_has_one_results_block() -> None:
    text = (Path(__file__).resolve().parent.parent / "benchmarks" / "README.md").read_text()
    assert text.count(RESULTS_START) == text.count(RESULTS_END) == 1
    assert text.index(RESULTS_START) < text.index(RESULTS_END)


# -- A/B against another install (--baseline) ------------------------------------------------


def test_baseline_runs_where_tychoreg_runs_with_its_commands(tmp_path: Path) -> None:
    both = (Layout.STATION, Layout.TYCHOREG)
    pull_list = Scenario(Group.PULL_LIST, Action.PULL_LIST, KiB, 10, layouts=both)
    clients = (ClientName.TYCHOREG, ClientName.BASELINE, ClientName.S5CMD)
    assert pull_list.runs(clients) == [
        (ClientName.TYCHOREG, Layout.STATION), (ClientName.TYCHOREG, Layout.TYCHOREG),
        (ClientName.BASELINE, Layout.STATION), (ClientName.BASELINE, Layout.TYCHOREG),
        (ClientName.S5CMD, Layout.STATION)]
    only_tychoreg = [s for s in build_scenarios(FULL)  # the lock group runs its own sides
                     if s.clients == (ClientName.TYCHOREG,) and s.group is not Group.LOCK]
    assert only_tychoreg and all(
        [c for c, _ in s.runs(clients)] == [ClientName.TYCHOREG, ClientName.BASELINE]
        for s in only_tychoreg)
    base = make_clients((ClientName.BASELINE,), [], "/old/bin/tychoreg")[ClientName.BASELINE]
    job = Job("http://127.0.0.1:1", "b", tmp_path, "pkg")
    assert base.command(Action.PULL, job)[0] == "/old/bin/tychoreg"
    assert base.command(Action.PULL, job)[1:] == Tychoreg("x").command(Action.PULL, job)[1:]
    assert base.label(Action.PULL) == "tychoreg-base"
    notes: list[str] = []
    assert make_clients((ClientName.BASELINE,), notes) == {}
    assert notes and "--baseline" in notes[0]


def test_ab_table_compares_tychoreg_with_its_baseline() -> None:
    scenario = Scenario(Group.PUSH, Action.PUSH, MiB)
    other = Scenario(Group.PULL, Action.PULL, MiB)
    rows = [row_of(scenario, ClientName.TYCHOREG, 1.0, 2.0, 3.0, rss=40.0),
            row_of(scenario, ClientName.BASELINE, 4.0, 4.0, 4.0, rss=80.0),
            row_of(other, ClientName.TYCHOREG, 1.0)]  # no baseline: no A/B line
    lines = ab_table(Results(rows, FULL)).splitlines()
    assert len(lines) == 3 and lines[2].split()[-6:] == ["2.000", "4.000", "0.50", "0.50",
                                                          "40", "80"]
    assert ab_table(Results(rows[:1] + rows[2:], FULL)) == ""


# -- the lock group (issue 18) ---------------------------------------------------------------


def test_lock_group_alone_and_its_scenarios() -> None:
    scenarios = build_scenarios(Options(groups=Group.parse("lock")))
    assert [(s.action, s.count, s.size, s.latency_ms) for s in scenarios] == [
        (Action.PULL_LOCKED, 100, MiB, 20), (Action.PULL_CURRENT, 100, MiB, 20),
        (Action.PUSH_LIST, 50, 64 * KiB, 20)]
    assert [s.reads for s in scenarios] == [True, True, False]
    # each scenario runs two commands, the target's first; only the warm one has python
    assert [[(c, a) for c, a, _ in LOCK_SIDES[s.action]] for s in scenarios] == [
        [(ClientName.TYCHOREG, Action.PULL_LOCKED), (ClientName.TYCHOREG, Action.PULL_LIST)],
        [(ClientName.TYCHOREG, Action.PULL_CURRENT), (ClientName.PYTHON, Action.HELP)],
        [(ClientName.TYCHOREG, Action.PUSH_LIST), (ClientName.TYCHOREG, Action.PUSH_EACH)]]
    quick = [s for s in build_scenarios(QUICK) if s.group is Group.LOCK]
    assert [s.name for s in quick] == [
        "lock pull-list 20 x 1 MiB @20ms", "lock pull-list 20 x 1 MiB @20ms, all current",
        "lock push-list 20 x 64 KiB @20ms"]
    assert not any(s.group is Group.LOCK
                   for s in build_scenarios(Options(groups=Group.parse("pull-list"))))


def test_push_list_items_are_every_version_of_every_package_once() -> None:
    items = push_list_items(10, 5)
    assert len(items) == len(set(items)) == 50
    assert items[:6] == [("q000", "1.0"), ("q000", "1.1"), ("q000", "1.2"), ("q000", "1.3"),
                         ("q000", "1.4"), ("q001", "1.0")]
    assert {package for package, _ in items} == {f"q{n:03d}" for n in range(10)}


def test_lock_command_lines(tmp_path: Path) -> None:
    lock = tmp_path / "tychoreg.lock"
    job = Job("http://127.0.0.1:9", "bkt", tmp_path, "p1", packages=("p1", "p2"),
              lockfile=lock)
    tychoreg = Tychoreg("tychoreg")
    argv = tychoreg.lock(job)
    assert argv[:3] == ["tychoreg", "lock", "--from-file"] and argv[4:] == [
        "--lockfile", str(lock)]
    assert Path(argv[3]).read_text() == "p1\np2\n"
    locked = ["tychoreg", "pull-list", "--locked", "--lockfile", str(lock), "--outdir",
              str(tmp_path / "out"), "--quiet"]
    assert tychoreg.command(Action.PULL_LOCKED, job) == locked
    job.kept_outdir = tmp_path / "kept"  # all current: the outdir a first pull filled
    assert tychoreg.command(Action.PULL_CURRENT, job)[6] == str(tmp_path / "kept")
    spaced = tmp_path / "a file.bin"
    push = Job("u", "b", tmp_path, items=(("q000", "1.0", spaced), ("q001", "1.1", spaced)))
    argv = tychoreg.command(Action.PUSH_LIST, push)
    assert argv[:3] == ["tychoreg", "push-list", "--from-file"] and argv[4:] == ["--quiet"]
    lines = Path(argv[3]).read_text().splitlines()
    assert [shlex.split(line) for line in lines] == [["q000", "1.0", str(spaced)],
                                                     ["q001", "1.1", str(spaced)]]
    argv = tychoreg.command(Action.PUSH_EACH, push)
    assert argv[0].endswith("bash") and argv[1] == "-e"  # a failing push fails the run
    assert [shlex.split(line) for line in Path(argv[2]).read_text().splitlines()] == [
        ["tychoreg", "push", "q000", "1.0", str(spaced), "--quiet"],
        ["tychoreg", "push", "q001", "1.1", str(spaced), "--quiet"]]
    for other in (S5cmd("s5cmd"), Station("ts.py"), AwsCli("aws")):
        for action in (Action.PULL_LOCKED, Action.PUSH_LIST, Action.PUSH_EACH):
            with pytest.raises(NotImplementedError):
                other.command(action, push)


def lock_row(action: Action, side: int, *walls: float, requests: int | None = None,
             error: str = "", tycho_json: int | None = None) -> Row:
    """A row of one side of a lock scenario of the FULL plan, each run with ``requests``."""
    scenario = next(s for s in build_scenarios(FULL)
                    if s.group in (Group.LOCK, Group.SIGN) and s.action is action)
    client, command, label = LOCK_SIDES[action][side]
    return Row(scenario, client, label, None, [
        Run(w, 50.0, w / 2, error=error, requests=requests, tycho_json=tycho_json)
        for w in walls], side=command)


def lock_verdicts(*rows: Row) -> list[LockVerdict]:
    return issue18_verdicts(Results(list(rows), FULL))


def test_locked_pull_has_exactly_the_tycho_json_requests_fewer_and_is_faster() -> None:
    plain = lock_row(Action.PULL_LOCKED, 1, 3.0, 3.2, 3.1, requests=200, tycho_json=100)
    locked, _, _ = lock_verdicts(lock_row(Action.PULL_LOCKED, 0, 2.0, 2.1, 1.9,
                                          requests=100, tycho_json=0), plain)
    assert (locked.state, locked.shown, locked.runs) == ("PASS", "100 fewer, 0.65x", "3/3")
    assert "requests 100 vs 200 (0 vs 100 tycho.json)" in locked.measured
    assert "100 fewer requests" in locked.bound
    for mine, walls, why in ((101, (2.0,), "one request too many"),
                             (100, (3.2,), "slower"), (100, (3.1,), "as fast, not faster")):
        verdict = lock_verdicts(lock_row(Action.PULL_LOCKED, 0, *walls, requests=mine),
                                plain)[0]
        assert verdict.state == "MISS", why
    uncounted = lock_verdicts(lock_row(Action.PULL_LOCKED, 0, 2.0),
                              lock_row(Action.PULL_LOCKED, 1, 3.0))[0]
    assert uncounted.state == "not run" and "not counted" in uncounted.measured


def test_warm_locked_pull_makes_no_request_in_any_run() -> None:
    python = lock_row(Action.PULL_CURRENT, 1, 0.02, 0.02, 0.02, requests=0)
    current = lock_verdicts(lock_row(Action.PULL_CURRENT, 0, 0.11, 0.12, 0.1, requests=0),
                            python)[1]
    assert (current.state, current.shown) == ("PASS", "0 requests, 5.50x")
    assert "<= 6.0x python -c pass" in current.bound
    # two runs of three without a request: the median is 0, one request is still a miss
    rows = lock_row(Action.PULL_CURRENT, 0, 0.1, 0.1, requests=0)
    rows.runs.append(Run(0.1, 50.0, 0.05, requests=1))
    assert rows.requests() == 0 and lock_verdicts(rows, python)[1].state == "MISS"
    slow = lock_row(Action.PULL_CURRENT, 0, 0.13, requests=0)
    assert lock_verdicts(slow, python)[1].state == "MISS"  # 6.5x


def test_push_list_is_ten_times_faster_than_one_push_per_process() -> None:
    each = lock_row(Action.PUSH_LIST, 1, 50.0, 50.0)
    found = lock_verdicts(lock_row(Action.PUSH_LIST, 0, 5.0, 5.0), each)[2]
    assert (found.state, found.shown, found.bound) == ("PASS", "10.0x", ">= 10.0x")
    assert lock_verdicts(lock_row(Action.PUSH_LIST, 0, 5.1), each)[2].state == "MISS"


def test_lock_targets_not_run_or_failed() -> None:
    assert [v.state for v in lock_verdicts()] == ["not run"] * 3
    failed = lock_row(Action.PUSH_LIST, 0, 1.0, error="exit 2")
    each = lock_row(Action.PUSH_LIST, 1, 50.0)
    assert lock_verdicts(failed, each)[2].state == "MISS"  # tychoreg failed: not a pass
    assert "every run failed" in lock_verdicts(failed, each)[2].measured
    alone = lock_verdicts(lock_row(Action.PUSH_LIST, 0, 1.0))[2]
    assert alone.state == "not run"  # the other side never ran
    python_failed = lock_row(Action.PULL_CURRENT, 1, 0.02, error="exit 1")
    assert lock_verdicts(lock_row(Action.PULL_CURRENT, 0, 0.1, requests=0),
                         python_failed)[1].state == "not run"


def test_issue18_table_and_json() -> None:
    rows = [lock_row(Action.PUSH_LIST, 0, 5.0), lock_row(Action.PUSH_LIST, 1, 40.0)]
    verdicts = lock_verdicts(*rows)
    lines = issue18_table(verdicts).splitlines()
    assert lines[0].split()[:3] == ["target", "(issue", "18)"] and len(lines) == 6
    assert lines[4].startswith("push-list 50 x 64 KiB vs 50 pushes") and lines[4].endswith(
        "MISS*") and "8.0x" in lines[4]  # one run a side: indicative only
    assert [line.endswith("not run") for line in lines[2:4]] == [True, True]
    assert lines[5].startswith("* fewer than 5 runs on a side")
    data = [lock_summary(v) for v in verdicts]
    assert [(d["result"], d["few_runs"]) for d in data] == [
        ("not run", False), ("not run", False), ("MISS", True)]
    for row in rows:
        row.runs *= 5
    assert issue18_table(lock_verdicts(*rows)).splitlines()[-1].endswith(" MISS")
    json.dumps(data)
    whole = summary(Results(rows, FULL), {}, [], [])
    assert whole["rows"][0]["side"] == "push-list" and whole["rows"][1]["side"] == "push-each"
    assert whole["options"]["lock_push"] == [10, 5, 64 * KiB]


def test_requests_for_counts_the_keys_of_a_name() -> None:
    targets = ["/b/p1/tycho.json", "/b/p1/tycho_1.0.pkg?x-id=GetObject",
               "/b/p2/tycho.json?versionId=3", "/b/tycho.json.bak", "/b/p3/old-tycho.json"]
    assert requests_for(targets) == 5
    assert requests_for(targets, "tycho.json") == 2
    assert requests_for(targets, "tycho_1.0.pkg") == 1
    assert requests_for([], "tycho.json") == 0


def test_lock_rows_in_the_table() -> None:
    rows = [lock_row(Action.PULL_CURRENT, 0, 0.1, requests=0),
            lock_row(Action.PULL_CURRENT, 1, 0.02, requests=0)]
    lines = table(Results(rows, FULL)).splitlines()
    assert "tychoreg --locked" in lines[2] and "1000.0 pkg/s" in lines[2]
    assert "python -c pass" in lines[3] and "pkg/s" not in lines[3]  # it moves nothing


# -- the sign group (issue 19) ---------------------------------------------------------------


def test_sign_group_alone_its_scenarios_and_sides() -> None:
    scenarios = build_scenarios(Options(groups=Group.parse("sign")))
    assert [(s.action, s.count, s.size, s.latency_ms, s.reads) for s in scenarios] == [
        (Action.SIGN_PULL, 100, MiB, 20, True), (Action.SIGN_CURRENT, 100, MiB, 20, True)]
    assert [s.name for s in scenarios] == [
        "sign pull-list 100 x 1 MiB @20ms",
        "sign pull-list --locked 100 x 1 MiB @20ms, all current"]
    assert [[(c, a, label) for c, a, label in LOCK_SIDES[s.action]] for s in scenarios] == [
        [(ClientName.TYCHOREG, Action.SIGN_PULL, "tychoreg signed"),
         (ClientName.TYCHOREG, Action.PULL_LIST, "tychoreg unsigned")],
        [(ClientName.TYCHOREG, Action.SIGN_CURRENT, "tychoreg --locked signed"),
         (ClientName.PYTHON, Action.HELP, "python -c pass")]]
    assert not any(s.group is Group.SIGN for s in build_scenarios(Options(
        groups=Group.parse("lock"))))


def test_sign_command_lines(tmp_path: Path) -> None:
    lock, signers, key = tmp_path / "tychoreg.lock", tmp_path / "allowed", tmp_path / "key"
    job = Job("u", "bkt", tmp_path, "p1", packages=("p1", "p2"), lockfile=lock,
              allowed_signers=signers)
    tychoreg = Tychoreg("tychoreg")
    policy = ["--allowed-signers", str(signers)]
    assert tychoreg.command(Action.SIGN_PULL, job) == [*tychoreg.pull_list(job), *policy]
    assert tychoreg.command(Action.PULL_LIST, job)[-1] == "--quiet"  # the unsigned side
    assert tychoreg.command(Action.SIGN_CURRENT, job) == [*tychoreg.pull_locked(job), *policy]
    assert tychoreg.lock(job)[-2:] == policy  # the lock is made under the policy
    assert "--allowed-signers" not in tychoreg.lock(replace(job, allowed_signers=None))
    argv = tychoreg.sign_each(job, key)
    assert argv[0].endswith("bash") and argv[1] == "-e"
    assert [shlex.split(line) for line in Path(argv[2]).read_text().splitlines()] == [
        ["tychoreg", "sign", p, "1.0", "--sign-key", str(key)] for p in ("p1", "p2")]
    with pytest.raises(NotImplementedError):
        S5cmd("s5cmd").command(Action.SIGN_PULL, job)


def test_signed_pull_has_one_more_request_per_package_and_the_table() -> None:
    plain = lock_row(Action.SIGN_PULL, 1, 3.0, 3.0, 3.0, requests=200)
    signed = lock_row(Action.SIGN_PULL, 0, 3.3, 3.3, 3.3, requests=300)
    pull, current = issue19_verdicts(Results([signed, plain], FULL))
    assert (pull.state, pull.shown, pull.bound) == ("PASS", "100 more, 1.10x",
                                                    "100 more requests")
    assert "requests 300 vs 200" in pull.measured and current.state == "not run"
    extra = lock_row(Action.SIGN_PULL, 0, 3.3, requests=301)
    assert issue19_verdicts(Results([extra, plain], FULL))[0].state == "MISS"
    warm = lock_row(Action.SIGN_CURRENT, 0, 0.2, 0.2, 0.2, requests=0)
    python = lock_row(Action.SIGN_CURRENT, 1, 0.02, 0.02, 0.02, requests=0)
    rows = [signed, plain, warm, python]
    current = issue19_verdicts(Results(rows, FULL))[1]
    assert (current.state, current.shown) == ("PASS", "0 requests, 10.00x")
    warm.runs.append(Run(0.2, 50.0, 0.1, requests=1))
    assert issue19_verdicts(Results(rows, FULL))[1].state == "MISS"
    lines = sign_table(Results(rows, FULL)).splitlines()
    assert lines[0].split()[:2] == ["scenario", "side"] and len(lines) == 6
    assert "tychoreg signed" in lines[2] and lines[2].split()[-3:] == ["3.300", "300", "1.10x"]
    assert "tychoreg unsigned" in lines[3] and lines[3].split()[-2:] == ["200", "1.00x"]
    assert "python -c pass" in lines[5]
    assert sign_table(Results([], FULL)) == ""
    assert issue18_table(issue19_verdicts(Results(rows, FULL)), issue=19).startswith(
        "target (issue 19)")
