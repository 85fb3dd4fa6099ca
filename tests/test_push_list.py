"""push-list: many artifacts published in one process, every failure reported at the end,
the list file's lines checked whole before anything is pushed."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tycho_async
from tycho_async.cli import app
from tycho_async.errors import UsageError
from tycho_async.lockfile import read as read_lock
from tycho_async.results import PushRequest

from .support import Registry, contents, ok, versions_stored, write_file


def _tree(root: Path, seed: int) -> dict[str, bytes]:
    files = {"a/text.txt": f"text {seed}\n".encode(), "top.bin": bytes([seed]) * 300}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_files_and_a_directory_pushed_in_one_process_pull_back_byte_identical(
        registry: Registry) -> None:
    one = write_file(Path("one.bin"), 70_000, seed=1)
    two = write_file(Path("two.bin"), 10, seed=2)
    tree = _tree(Path("site"), 3)
    Path("list.txt").write_text("# what the build made\n\none 1.0 one.bin\n"
                                "two 2.0 two.bin   # a comment after the item\n"
                                "site 0.1 site\n")
    pushed = ok(registry.cli("push-list", "--from-file", "list.txt", "--promote-latest"))
    assert "pushed one 1.0" in pushed.stdout and "pushed site 0.1 (a directory" in pushed.stdout
    ok(registry.cli("pull-list", "one", "two", "site", "--outdir", "out"))
    assert Path("out/one.bin").read_bytes() == one
    assert Path("out/two.bin").read_bytes() == two
    assert contents(Path("out/site")) == tree


def test_items_as_arguments_and_the_api_push_many(registry: Registry) -> None:
    blob = write_file(Path("tool.tgz"), 500, seed=4)
    ok(registry.cli("push-list", "tool 1.0 tool.tgz --localname tool-bin.tgz"))
    assert registry.get("tool/tycho_1.0.pkg") == blob
    assert registry.meta("tool")["localname"] == "tool-bin.tgz"
    write_file(Path("x.bin"), 40, seed=5)
    with tycho_async.Client(config=str(registry.workdir / ".tychoreg.json")) as client:
        results = client.push_many([PushRequest("tool", "1.1", Path("tool.tgz")),
                                    PushRequest("x", "1", "x.bin")],  # type: ignore[arg-type]
                                   promote=True)
        with pytest.raises(tycho_async.PartialFailure) as failed:
            client.push_many([PushRequest("x", "1", Path("x.bin")),
                              PushRequest("x", "2", Path("x.bin"))])
    assert [(r.package, r.version, r.promoted) for r in results] == [
        ("tool", "1.1", True), ("x", "1", True)]
    assert registry.meta("x")["localname"] == "x.bin"  # a string source is a path
    assert failed.value.exit_code == 1
    assert [item for item, _ in failed.value.failures] == ["x==1"]
    assert [r.version for r in failed.value.results] == ["2"]


def test_one_failing_line_pushes_the_rest_and_exits_with_the_worst_code(
        registry: Registry) -> None:
    write_file(Path("old.bin"), 30, seed=6)
    ok(registry.cli("push", "kept", "1.0", "old.bin"))
    blob = write_file(Path("good.bin"), 2000, seed=7)
    Path("list.txt").write_text("kept 1.0 old.bin\nmissing 1.0 nowhere.bin\n"
                                "good 1.0 good.bin\n")
    done = registry.cli("push-list", "--from-file", "list.txt")
    assert done.exit_code == 2, (done.stdout, done.stderr)  # the missing path: usage
    assert "pushed good 1.0" in done.stdout
    assert "kept==1.0:" in done.stderr and "already exists" in done.stderr
    assert "missing==1.0:" in done.stderr and "nowhere.bin" in done.stderr
    assert "2 of 3 items failed (1 pushed)" in done.stderr
    assert registry.get("good/tycho_1.0.pkg") == blob
    assert versions_stored(registry, "missing") == []
    Path("list.txt").write_text("kept 1.0 old.bin\ngood 1.1 good.bin\n")
    only_exists = registry.cli("push-list", "--from-file", "list.txt")
    assert only_exists.exit_code == 1, only_exists.stderr
    assert versions_stored(registry, "good") == ["1.0", "1.1"]


def test_promote_latest_makes_the_last_line_of_each_package_its_latest(
        registry: Registry) -> None:
    for seed in range(3):
        write_file(Path(f"f{seed}.bin"), 100 + seed, seed=seed)
    lines = ["tool 1.0 f0.bin", "other 3.0 f1.bin", "tool 2.0 f1.bin", "tool 1.5 f2.bin",
             "other 2.0 f2.bin"]
    ok(registry.cli("push-list", *lines, "--promote-latest"))
    assert registry.meta("tool")["latest"] == "1.5"
    assert registry.meta("other")["latest"] == "2.0"
    ok(registry.cli("pull", "tool", "--outdir", "out"))
    assert Path("out/f0.bin").read_bytes() == Path("f2.bin").read_bytes()


def test_skip_existing_leaves_existing_versions_and_pushes_the_others(
        registry: Registry) -> None:
    first = write_file(Path("a.bin"), 60, seed=8)
    ok(registry.cli("push", "a", "1.0", "a.bin"))
    write_file(Path("a.bin"), 61, seed=9)
    blob = write_file(Path("b.bin"), 62, seed=10)
    done = ok(registry.cli("push-list", "a 1.0 a.bin", "b 1.0 b.bin", "--skip-existing"))
    assert "a 1.0 is already there with other content" in done.stdout
    assert registry.get("a/tycho_1.0.pkg") == first
    assert registry.get("b/tycho_1.0.pkg") == blob


def test_level_applies_to_the_directories_skip_identical_and_quiet(
        registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 5000, seed=14)
    tree = _tree(Path("d"), 15)
    quiet = registry.cli("push-list", "f 1.0 f.bin", "d 1.0 d", "--level", "19", "--quiet",
                         "--promote-latest")
    assert ok(quiet).stdout == ""
    again = registry.cli("push-list", "f 1.0 f.bin", "d 1.0 d", "--skip-identical")
    assert "f 1.0 is already there with the same content" in ok(again).stdout
    write_file(Path("f.bin"), 5000, seed=16)
    other = registry.cli("push-list", "f 1.0 f.bin", "d 1.0 d", "--skip-identical")
    assert other.exit_code == 1 and "f==1.0:" in other.stderr, other.stderr
    assert "1 of 2 items failed (1 pushed)" in other.stderr
    ok(registry.cli("pull-list", "f", "d", "--outdir", "out"))
    assert Path("out/f.bin").read_bytes() == blob
    assert contents(Path("out/d")) == tree


def test_the_list_from_standard_input_with_quoted_paths_holding_spaces(
        registry: Registry) -> None:
    Path("my build").mkdir()
    blob = write_file(Path("my build/the tool.tgz"), 300, seed=11)
    tree = _tree(Path("my build/a site"), 12)
    odd = write_file(Path("odd\u2028name\x85.bin"), 30, seed=17)  # not line ends here
    text = ("tool 1.0 'my build/the tool.tgz' --localname 'tool file.tgz'\n"
            'site 1.0 "my build/a site"\n'
            "odd 1.0 'odd\u2028name\x85.bin'\r\n")
    done = registry.runner.invoke(app, ["push-list", "--from-file", "-", "--promote-latest"],
                                  input=text, catch_exceptions=False)
    ok(done)
    ok(registry.cli("pull-list", "tool", "site", "odd", "--outdir", "out"))
    assert Path("out/tool file.tgz").read_bytes() == blob
    assert Path("out/odd\u2028name\x85.bin").read_bytes() == odd
    assert contents(Path("out/a site")) == tree


@pytest.mark.parametrize(("line", "says"), [
    ("pkg 1.0", "PKG VERSION PATH"),
    ("pkg 1.0 a.bin extra", "PKG VERSION PATH"),
    ("pkg 1.0 a.bin --level 3", "unknown option '--level'"),
    ("pkg 1.0 a.bin --localname", "--localname needs a NAME"),
    ("bad/name 1.0 a.bin", "invalid package name"),
    ("pkg 1..0? a.bin", "invalid version"),
    ("pkg latest a.bin", "cannot name a version"),
    ("pkg 1.0 'a.bin", "quotation"),
    ("ok 1.0 a.bin", "ok 1.0 is on line 1 too"),
])
def test_a_malformed_line_is_exit_2_naming_it_and_nothing_is_pushed(
        registry: Registry, line: str, says: str) -> None:
    write_file(Path("a.bin"), 10)
    Path("list.txt").write_text(f"ok 1.0 a.bin\n# fine so far\n{line}\nlast 1.0 a.bin\n")
    done = registry.cli("push-list", "--from-file", "list.txt")
    assert done.exit_code == 2, (done.stdout, done.stderr)
    assert "list.txt line 3:" in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr
    assert registry.object_keys() == []
    item = registry.cli("push-list", "ok 1.0 a.bin", line)
    assert item.exit_code == 2 and "item 2:" in item.stderr, item.stderr
    assert registry.object_keys() == []


def test_no_items_and_an_unreadable_list_are_usage_errors(registry: Registry) -> None:
    Path("empty.txt").write_text("# nothing\n\n")
    for args in (["push-list"], ["push-list", "--from-file", "empty.txt"],
                 ["push-list", "--from-file", "absent.txt"]):
        done = registry.cli(*args)
        assert done.exit_code == 2, (args, done.stderr)
    assert "cannot read absent.txt" in registry.cli(
        "push-list", "--from-file", "absent.txt").stderr


def test_json_has_one_entry_per_item_failures_included(registry: Registry) -> None:
    blob_size = len(write_file(Path("a.bin"), 123, seed=13))
    done = registry.cli("push-list", "a 1.0 a.bin", "b 1.0 gone.bin", "--json",
                        "--promote-latest")
    assert done.exit_code == 2, done.stderr
    data = json.loads(done.stdout)
    assert {k: data[k] for k in ("schema", "command", "pushed", "failed", "exit_code")} == {
        "schema": 1, "command": "push-list", "pushed": 1, "failed": 1, "exit_code": 2}
    good, bad = data["items"]
    assert good["item"] == "a==1.0" and good["package"] == "a" and good["version"] == "1.0"
    assert good["source"] == "a.bin" and good["size"] == blob_size
    assert good["promoted"] is True and good["error"] is None and good["exit_code"] == 0
    assert len(good["sha256"]) == 64 and good["format"] == "file"
    assert bad["item"] == "b==1.0" and bad["package"] == "b" and bad["source"] == "gone.bin"
    assert bad["size"] is None and bad["exit_code"] == 2 and "gone.bin" in bad["error"]
    assert set(good) == set(bad)


def test_help_explains_every_option(registry: Registry) -> None:
    text = " ".join(ok(registry.cli("push-list", "--help")).stdout.split())
    for option in ("--from-file", "--promote-latest", "--skip-existing", "--skip-identical",
                   "--level", "--json", "--quiet", "--progress", "--concurrency",
                   "--part-size", "--config", "--registry"):
        assert option in text
    assert "PKG VERSION PATH [--localname NAME]" in text


# -- the line parser ----------------------------------------------------------------------------

SEGMENTS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,30}", fullmatch=True).filter(
    lambda v: v != "latest")
PATHS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                max_size=40).filter(lambda p: not p.startswith("-") and p.strip() != "")
LOCALNAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                   blacklist_characters="/\\"), min_size=1,
                     max_size=40).filter(lambda n: n not in {".", ".."})


@settings(max_examples=200, deadline=None)
@given(package=SEGMENTS, version=SEGMENTS, path=PATHS,
       localname=st.none() | LOCALNAMES, spaces=st.sampled_from([" ", "  ", "\t"]))
def test_a_quoted_line_parses_back_to_its_fields(package: str, version: str, path: str,
                                                 localname: str | None, spaces: str) -> None:
    fields = [package, version, path] + ([] if localname is None else ["--localname",
                                                                        localname])
    parsed = PushRequest.parse(spaces.join(shlex.quote(f) for f in fields) + " # note")
    assert parsed == PushRequest(package, version, Path(path), localname)
    assert str(parsed) == f"{package}=={version}"


@settings(max_examples=100, deadline=None)
@given(fields=st.lists(SEGMENTS, max_size=6).filter(lambda f: len(f) != 3))
def test_a_line_without_three_fields_is_refused(fields: list[str]) -> None:
    with pytest.raises(UsageError, match="PKG VERSION PATH"):
        PushRequest.parse(" ".join(fields))



def test_lock_writes_the_lock_of_exactly_what_was_pushed(registry: Registry) -> None:
    write_file(Path("a.bin"), 900, seed=11)
    tree = _tree(Path("site"), 12)
    write_file(Path("old.bin"), 50, seed=13)
    ok(registry.cli("push", "kept", "0.9", "old.bin", "--promote-latest"))
    Path("list.txt").write_text("a 1.0 a.bin\nsite 2.0 site\nkept 0.9 old.bin\n")
    pushed = ok(registry.cli("push-list", "--from-file", "list.txt", "--skip-existing",
                             "--lock", "build.lock"))
    assert "wrote build.lock (3 packages locked)" in pushed.stderr
    made = Path("build.lock").read_bytes()
    ok(registry.cli("lock", "a==1.0", "site==2.0", "kept==0.9", "--lockfile", "again.lock"))
    assert Path("again.lock").read_bytes() == made  # as `tychoreg lock` pins them
    lock = read_lock(Path("build.lock"))
    assert [(e.name, e.version, e.tree_sha256 is not None) for e in lock.packages] == [
        ("a", "1.0", False), ("kept", "0.9", False), ("site", "2.0", True)]
    assert contents(Path("site")) == tree
    again = json.loads(ok(registry.cli("push-list", "--from-file", "list.txt",
                                       "--skip-existing", "--lock", "build.lock",
                                       "--json")).stdout)
    assert again["lockfile"] == "build.lock" and Path("build.lock").read_bytes() == made


def test_lock_is_not_written_when_an_item_fails_or_a_package_is_named_twice(
        registry: Registry) -> None:
    write_file(Path("a.bin"), 100, seed=14)
    failed = registry.cli("push-list", "a 1.0 a.bin", "b 1.0 nowhere.bin",
                          "--lock", "build.lock")
    assert failed.exit_code == 2, failed.stderr
    assert "no lock written to build.lock" in failed.stderr
    assert not Path("build.lock").exists()
    assert versions_stored(registry, "a") == ["1.0"]
    twice = registry.cli("push-list", "c 1.0 a.bin", "c 2.0 a.bin", "--lock", "build.lock")
    assert twice.exit_code == 2 and "a lock holds one version of each package" in \
        twice.stderr, twice.stderr
    assert versions_stored(registry, "c") == [] and not Path("build.lock").exists()
