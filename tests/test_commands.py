"""Every contract command through the real CLI, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import Registry, write_file

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 1000, 9 * MiB + 17])
def test_round_trip_is_byte_identical(registry: Registry, size: int) -> None:
    blob = write_file(Path("data.bin"), size, seed=size)
    pushed = registry.cli("push", "pkg", "1.0", "data.bin", "--promote-latest",
                          "--part-size", "5MiB")
    assert pushed.exit_code == 0, pushed.output
    assert registry.get("pkg/tycho_1.0.pkg") == blob

    pulled = registry.cli("pull", "pkg")
    assert pulled.exit_code == 0, pulled.output
    out = Path("tycho_packages/data.bin")
    assert out.read_bytes() == blob
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert registry.hidden_files() == []


def test_push_initializes_a_new_package_with_the_file_name(registry: Registry) -> None:
    write_file(Path("narf.tar.gz"), 10)
    result = registry.cli("push", "narf", "1.0", "narf.tar.gz")
    assert result.exit_code == 0, result.output
    assert "initialized narf" in result.stdout
    meta = registry.meta("narf")
    assert {k: meta[k] for k in ("localname", "latest")} == {"localname": "narf.tar.gz",
                                                             "latest": None}
    assert meta["tychoreg"]["records"]["1.0"]["size"] == 10


def test_init_writes_tycho_station_format_and_refuses_twice(registry: Registry) -> None:
    assert registry.cli("init", "pkg", "thing.bin").exit_code == 0
    raw = registry.get("pkg/tycho.json")
    assert raw == json.dumps({"localname": "thing.bin", "latest": None}, indent=2).encode()
    again = registry.cli("init", "pkg", "other.bin")
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert registry.meta("pkg")["localname"] == "thing.bin"


def test_push_refuses_an_existing_version_and_keeps_the_bytes(registry: Registry) -> None:
    first = write_file(Path("a.bin"), 100, seed=1)
    write_file(Path("b.bin"), 100, seed=2)
    assert registry.cli("push", "pkg", "1.0", "a.bin").exit_code == 0
    again = registry.cli("push", "pkg", "1.0", "b.bin")
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.output
    assert registry.get("pkg/tycho_1.0.pkg") == first


def test_promote_and_pull_version(registry: Registry) -> None:
    one = write_file(Path("f.bin"), 50, seed=1)
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    two = write_file(Path("f.bin"), 60, seed=2)
    assert registry.cli("push", "pkg", "2.0", "f.bin").exit_code == 0
    assert registry.meta("pkg")["latest"] is None

    nothing = registry.cli("pull", "pkg")
    assert nothing.exit_code == 1
    assert "no latest version" in nothing.stderr

    assert registry.cli("promote", "pkg", "2.0").exit_code == 0
    assert registry.meta("pkg")["latest"] == "2.0"
    assert registry.cli("pull", "pkg", "--outfile", "latest.bin").exit_code == 0
    assert Path("latest.bin").read_bytes() == two
    assert registry.cli("pull", "pkg", "--version", "1.0", "-o", "old.bin").exit_code == 0
    assert Path("old.bin").read_bytes() == one


def test_promote_keeps_foreign_keys(registry: Registry) -> None:
    write_file(Path("f.bin"), 5)
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    meta = registry.meta("pkg")
    meta["owner"] = "team-x"
    meta["nested"] = {"a": [1, 2]}
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())
    assert registry.cli("promote", "pkg", "1.0").exit_code == 0
    meta = registry.meta("pkg")
    assert meta.pop("tychoreg")["records"].keys() == {"1.0"}
    assert meta == {"localname": "f.bin", "latest": "1.0", "owner": "team-x",
                    "nested": {"a": [1, 2]}}


def test_promote_of_a_missing_version_is_refused(registry: Registry) -> None:
    write_file(Path("f.bin"), 5)
    assert registry.cli("push", "pkg", "1.0", "f.bin", "--promote-latest").exit_code == 0
    result = registry.cli("promote", "pkg", "9.9")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert registry.meta("pkg")["latest"] == "1.0"


def test_etag_sidecar_written_honoured_and_forced(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 1234)
    assert registry.cli("push", "pkg", "1.0", "f.bin", "--promote-latest").exit_code == 0
    assert registry.cli("pull", "pkg").exit_code == 0
    out = Path("tycho_packages/f.bin")
    sidecar = Path("tycho_packages/f.bin.etag").read_text()
    assert sidecar.startswith('"') and sidecar.endswith('"') and "\n" not in sidecar

    out.write_bytes(b"x" * len(blob))  # same size, same sidecar: taken as current
    skipped = registry.cli("pull", "pkg")
    assert skipped.exit_code == 0 and "up to date" in skipped.stdout
    assert out.read_bytes() == b"x" * len(blob)

    forced = registry.cli("pull", "pkg", "--force")
    assert forced.exit_code == 0 and "pulled" in forced.stdout
    assert out.read_bytes() == blob

    out.write_bytes(b"short")  # size differs: pulled again
    assert "pulled" in registry.cli("pull", "pkg").stdout
    assert out.read_bytes() == blob


def test_pull_of_unknown_package_or_version(registry: Registry) -> None:
    missing = registry.cli("pull", "ghost")
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.output
    write_file(Path("f.bin"), 5)
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    nover = registry.cli("pull", "pkg", "--version", "2.0")
    assert nover.exit_code == 1 and "does not exist" in nover.stderr
    assert not Path("tycho_packages/f.bin").exists()


def test_exists_answers_with_its_exit_code(registry: Registry) -> None:
    write_file(Path("f.bin"), 5)
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    yes = registry.cli("exists", "pkg", "1.0")
    assert yes.exit_code == 0 and "exists" in yes.stdout
    no = registry.cli("exists", "pkg", "1.1", "--json")
    assert no.exit_code == 1
    assert json.loads(no.stdout) == {"schema": 1, "command": "exists", "package": "pkg",
                                     "version": "1.1", "exists": False}


def test_list_shows_every_package_even_without_tycho_json(registry: Registry) -> None:
    write_file(Path("a.bin"), 5)
    assert registry.cli("push", "alpha", "1.0", "a.bin", "--promote-latest").exit_code == 0
    assert registry.cli("init", "beta", "b.bin").exit_code == 0
    registry.put("orphan/tycho_0.1.pkg", b"zz")
    registry.put("broken/tycho.json", b"{not json")
    result = registry.cli("list", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["package"]: row for row in json.loads(result.stdout)["packages"]}
    assert rows["alpha"]["latest"] == "1.0"
    assert rows["beta"]["latest"] is None and rows["beta"]["localname"] == "b.bin"
    assert rows["orphan"]["problem"] == "no tycho.json"
    assert "not valid JSON" in rows["broken"]["problem"]
    plain = registry.cli("list")
    assert plain.stdout.splitlines()[0].split("\t")[:2] == ["alpha", "1.0"]


def test_list_versions_natural_order(registry: Registry) -> None:
    write_file(Path("f.bin"), 3)
    for version in ["1.10", "1.9", "2.0", "1.0rc1", "1.0", "0.9.1"]:
        assert registry.cli("push", "pkg", version, "f.bin").exit_code == 0
    result = registry.cli("list-versions", "pkg")
    assert result.stdout.split() == ["0.9.1", "1.0rc1", "1.0", "1.9", "1.10", "2.0"]
    as_json = json.loads(registry.cli("list-versions", "pkg", "--json").stdout)
    assert as_json["schema"] == 1 and as_json["package"] == "pkg"
    first = as_json["versions"][0]
    assert (first["version"], first["size"], first["format"]) == ("0.9.1", 3, "file")
    assert len(first["sha256"]) == 64 and first["latest"] is False


def test_list_versions_of_unknown_package(registry: Registry) -> None:
    result = registry.cli("list-versions", "ghost")
    assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("args", [
    ["push", "../evil", "1.0", "f.bin"],
    ["push", "pkg", "1/0", "f.bin"],
    ["push", "pkg", "", "f.bin"],
    ["promote", "pkg", ".hidden"],
    ["exists", "p kg", "1.0"],
    ["init", "pkg", "../escape.bin"],
    ["pull", "pkg", "--version", "a/b"],
    ["pull-list", "ok", "bad/name"],
])
def test_invalid_names_are_usage_errors(registry: Registry, args: list[str]) -> None:
    write_file(Path("f.bin"), 3)
    result = registry.cli(*args)
    assert result.exit_code == 2, result.output
    assert "invalid" in result.stderr
    assert registry.object_keys() == []


def test_push_of_a_missing_file(registry: Registry) -> None:
    result = registry.cli("push", "pkg", "1.0", "nope.bin")
    assert result.exit_code == 2 and "not a readable file" in result.stderr
    assert registry.object_keys() == []


def test_pull_list_pulls_everything_and_reports_every_failure(registry: Registry) -> None:
    blobs = {}
    for i in range(6):
        blobs[i] = write_file(Path(f"p{i}.bin"), 100 + i, seed=i)
        assert registry.cli("push", f"p{i}", "1.0", f"p{i}.bin", "--promote-latest").exit_code == 0
    assert registry.cli("init", "empty", "e.bin").exit_code == 0
    Path("list.txt").write_text("p3\n# comment\np4==1.0\n\np5\n")
    result = registry.cli("pull-list", "p0", "p1", "p2", "ghost", "empty", "--from-file",
                          "list.txt", "--outdir", "out")
    assert result.exit_code == 1, result.output
    for i in range(6):
        assert Path(f"out/p{i}.bin").read_bytes() == blobs[i]
    assert "ghost: package 'ghost' does not exist" in result.stderr
    assert "empty: package 'empty' has no latest version" in result.stderr
    assert "2 of 8 packages failed" in result.stderr

    again = registry.cli("pull-list", "p0", "p1")
    assert again.exit_code == 0
    assert again.stdout.count("pulled") == 2


def test_pull_list_refuses_two_items_with_one_destination(registry: Registry) -> None:
    write_file(Path("same.bin"), 10)
    assert registry.cli("push", "a", "1.0", "same.bin", "--promote-latest").exit_code == 0
    assert registry.cli("push", "b", "1.0", "same.bin", "--promote-latest").exit_code == 0
    result = registry.cli("pull-list", "a", "b")
    assert result.exit_code == 2
    assert "both write" in result.stderr


def test_pull_list_needs_items(registry: Registry) -> None:
    result = registry.cli("pull-list")
    assert result.exit_code == 2 and "at least one package" in result.stderr


@pytest.mark.parametrize("command", ["pull-list", "lock"])
def test_an_unreadable_item_list_is_a_usage_error(registry: Registry, command: str) -> None:
    Path("items.txt").write_bytes(b"pkg\n\xff\xfe not text\n")
    binary = registry.cli(command, "--from-file", "items.txt")
    assert binary.exit_code == 2 and "cannot read items.txt: not UTF-8 text" in \
        binary.stderr, binary.stderr
    absent = registry.cli(command, "--from-file", "absent.txt")
    assert absent.exit_code == 2 and "cannot read absent.txt" in absent.stderr


def test_plain_progress_is_short(registry: Registry) -> None:
    for i in range(5):
        write_file(Path(f"f{i}.bin"), 10)
        assert registry.cli("push", f"p{i}", "1", f"f{i}.bin", "--promote-latest",
                            "-q").exit_code == 0
    result = registry.cli("pull-list", "p0", "p1", "p2", "p3", "p4", "--no-progress")
    assert result.stdout.count("pulled") == 5  # the results, on stdout only
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pulled 5 files, 50 B in ")  # a summary
    quiet = registry.cli("pull-list", "p0", "p1", "--force", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_forced_progress_bars_render_and_sum_up(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 6 * MiB)
    pushed = registry.cli("push", "pkg", "1", "f.bin", "--promote-latest", "--progress")
    assert pushed.exit_code == 0, pushed.output
    assert "pushed 1 file, 6.0 MiB" in pushed.stderr
    pulled = registry.cli("pull", "pkg", "--progress")
    assert pulled.exit_code == 0 and "pulled 1 file" in pulled.stderr
    assert Path("tycho_packages/f.bin").read_bytes() == blob


def test_pull_list_pulls_an_item_listed_twice_once(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 10)
    assert registry.cli("push", "a", "1.0", "f.bin", "--promote-latest").exit_code == 0
    twice = registry.cli("pull-list", "a", "a")
    assert twice.exit_code == 0 and twice.stdout.splitlines() == [
        "pulled a 1.0 -> tycho_packages/f.bin (10 B)"]
    assert Path("tycho_packages/f.bin").read_bytes() == blob
    both = registry.cli("pull-list", "a", "a==1.0")  # two items, one file
    assert both.exit_code == 2 and "both write" in both.stderr
