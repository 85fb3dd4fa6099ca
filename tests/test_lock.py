"""``tychoreg lock`` as a user meets it, on every backend: the lock file it writes, what
``--check`` and ``--update`` say about it, tycho-station versions, and the API's
``Client.lock`` / ``lock_check``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import tycho_async
from tycho_async.cli.lock import LOCKFILE as CLI_DEFAULT
from tycho_async.lockfile import DEFAULT_LOCKFILE, Lock, parse

from .support import Registry, make_tree, ok, put_station, put_version, write_file

LOCKFILE = Path("tychoreg.lock")


def read_lock(path: Path = LOCKFILE) -> Lock:
    return parse(path.read_bytes(), str(path))


def test_a_lock_pins_what_the_items_resolve_to_and_twice_is_byte_identical(
        registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 3000)
    ok(registry.cli("push", "tool", "1.2", "f.bin", "--promote-latest"))
    put_version(registry, "other", "3.0", b"three", latest=True)
    put_version(registry, "other", "3.1", b"three point one")
    first = ok(registry.cli("lock", "tool", "other==3.1"))
    sha = hashlib.sha256(blob).hexdigest()
    assert f"locked tool 1.2 (sha256 {sha[:12]}…)" in first.stdout
    assert "locked other 3.1 (sha256" in first.stdout
    data = LOCKFILE.read_bytes()
    lock = read_lock()
    assert [(e.name, e.version, e.size, e.sha256) for e in lock.packages] == [
        ("other", "3.1", 15, hashlib.sha256(b"three point one").hexdigest()),
        ("tool", "1.2", 3000, sha)]
    assert lock.packages[1].localname == "f.bin" and lock.packages[1].format == "file"
    second = ok(registry.cli("lock", "other==3.1", "tool"))
    assert LOCKFILE.read_bytes() == data
    assert "unchanged" in second.stderr


def test_a_directory_package_is_locked_with_its_tree_digest_and_size(
        registry: Registry) -> None:
    make_tree(Path("tree"))
    pushed = json.loads(ok(registry.cli("push", "cache", "1", "tree", "--json")).stdout)
    ok(registry.cli("lock", "cache==1"))
    entry = read_lock().packages[0]
    assert (entry.format, entry.localname, entry.tree_sha256) == (
        "tar+zstd", "tree.tar.zst", pushed["tree_sha256"])
    assert entry.sha256 == pushed["sha256"] and entry.size == pushed["size"]
    assert entry.tree_size is not None and entry.tree_size > 0


def test_a_promote_after_the_lock_changes_nothing_and_check_reports_latest_moved(
        registry: Registry) -> None:
    put_version(registry, "pkg", "1.0", b"one", latest=True)
    ok(registry.cli("lock", "pkg"))
    data = LOCKFILE.read_bytes()
    put_version(registry, "pkg", "2.0", b"two", latest=True)
    checked = ok(registry.cli("lock", "--check"))
    assert "pkg 1.0: latest is now 2.0" in checked.stdout
    stale = registry.cli("lock", "--check", "--latest")
    assert stale.exit_code == 1, stale.output
    assert "pkg 1.0: latest is now 2.0" in stale.stdout and "drifted" in stale.stderr
    assert LOCKFILE.read_bytes() == data
    assert read_lock().packages[0].version == "1.0"


def test_a_deleted_or_changed_locked_version_fails_the_check_naming_it(
        registry: Registry) -> None:
    put_version(registry, "pkg", "1.0", b"one")
    put_version(registry, "pkg", "2.0", b"two", latest=True)
    put_version(registry, "keep", "1.0", b"kept", latest=True)
    ok(registry.cli("lock", "pkg==1.0", "keep"))
    ok(registry.cli("delete", "pkg", "1.0"))
    checked = registry.cli("lock", "--check")
    assert checked.exit_code == 1, checked.output
    assert "pkg 1.0: deleted" in checked.stdout and "keep" not in checked.stdout
    registry.put("keep/tycho_1.0.pkg", b"KEPT, other bytes")  # by hand, past the rules
    changed = registry.cli("lock", "--check", "--json")
    assert changed.exit_code == 1
    states = {p["package"]: p["state"] for p in json.loads(changed.stdout)["packages"]}
    assert states == {"keep": "changed", "pkg": "deleted"}


def test_update_re_resolves_to_latest_and_prints_old_to_new(registry: Registry) -> None:
    put_version(registry, "pkg", "1.0", b"one", latest=True)
    put_version(registry, "other", "3.0", b"three", latest=True)
    ok(registry.cli("lock", "pkg", "other"))
    put_version(registry, "pkg", "2.0", b"two", latest=True)
    updated = ok(registry.cli("lock", "--update"))
    assert "pkg 1.0 -> 2.0" in updated.stdout
    assert "other 3.0 (unchanged)" in updated.stdout
    assert [(e.name, e.version) for e in read_lock().packages] == [("other", "3.0"),
                                                                     ("pkg", "2.0")]
    unknown = registry.cli("lock", "--update", "nosuch")
    assert unknown.exit_code == 2 and "nosuch" in unknown.stderr
    put_version(registry, "other", "4.0", b"four", latest=True)
    one = json.loads(ok(registry.cli("lock", "--update", "pkg", "--json")).stdout)
    assert one["command"] == "lock-update" and one["schema"] == 1
    assert one["changes"] == [{"package": "pkg", "old": "2.0", "new": "2.0",
                               "changed": False}]
    assert one["written"] is False  # nothing changed: the file is left as it was
    assert read_lock().get("other").version == "3.0"  # type: ignore[union-attr]
    before = LOCKFILE.read_bytes()
    registry.put("pkg/tycho.json", b"{not json")
    broken = registry.cli("lock", "--update")
    assert broken.exit_code == 3 and "pkg" in broken.stderr
    assert LOCKFILE.read_bytes() == before  # a failed update leaves the lock as it was


def test_a_tycho_station_version_is_locked_by_size_and_etag_unless_sha256_is_required(
        registry: Registry) -> None:
    put_station(registry, "old", {"1.0": b"station bytes"}, latest="1.0")
    refused = registry.cli("lock", "old", "--require-sha256")
    assert refused.exit_code == 3, refused.output
    assert "old 1.0" in refused.stderr and "tycho-station" in refused.stderr
    assert not LOCKFILE.exists()
    locked = ok(registry.cli("lock", "old"))
    assert "locked old 1.0 (pushed by tycho-station: by size and ETag)" in locked.stdout
    entry = read_lock().packages[0]
    assert entry.sha256 is None and entry.station and entry.size == 13 and entry.etag
    assert "sha256" not in LOCKFILE.read_text()
    ok(registry.cli("lock", "--check"))


def test_versions_a_pull_would_refuse_are_not_locked_and_no_file_is_written(
        registry: Registry) -> None:
    put_version(registry, "pkg", "1.0", b"one", latest=True)
    registry.put("pkg/tycho_1.1.pkg", b"uploading")
    registry.put("pkg/tycho_1.1.meta.json", json.dumps(
        {"state": "pending", "tool": "tychoreg test", "started_at": "2099-01-01T00:00:00",
         "localname": "pkg.bin"}).encode())
    put_version(registry, "bad", "1.0", b"recorded", latest=True)
    registry.put("bad/tycho_1.0.pkg", b"other size")
    result = registry.cli("lock", "pkg==1.1", "bad", "nosuch", "pkg==9")
    assert result.exit_code == 2, result.output  # pkg named twice: before any request
    result = registry.cli("lock", "pkg==1.1", "bad", "nosuch")
    assert result.exit_code == 3, result.output
    assert "pkg==1.1: pkg 1.1: its push was cut short" in result.stderr
    assert "bad: bad 1.0: its record says 8 bytes, the object holds 10" in result.stderr
    assert "nosuch: package 'nosuch' does not exist" in result.stderr
    assert not LOCKFILE.exists()
    missing = registry.cli("lock", "pkg==7")
    assert missing.exit_code == 1 and "pkg 7 does not exist" in missing.stderr


def test_a_lock_of_another_registry_is_checked_only_when_named(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    put_version(registry, "pkg", "1.0", b"one", latest=True)
    ok(registry.cli("lock", "pkg"))
    here = read_lock().registry
    assert here == (registry.root if registry.kind == "local" else f"s3://{registry.root}/")
    text = LOCKFILE.read_text().replace(json.dumps(here), '"s3://elsewhere/prefix"')
    Path("other.lock").write_text(text)
    refused = registry.cli("lock", "--check", "--lockfile", "other.lock")
    assert refused.exit_code == 2 and "s3://elsewhere/prefix" in refused.stderr
    named = registry.root if registry.kind == "local" else f"s3://{registry.root}"
    ok(registry.cli("lock", "--check", "--lockfile", "other.lock", "--registry", named))
    ok(registry.cli("--registry", named, "lock", "--check", "--lockfile", "other.lock"))
    monkeypatch.setenv("TYCHOREG_REGISTRY", named)  # not named on the command line
    from_env = registry.cli("lock", "--check", "--lockfile", "other.lock")
    assert from_env.exit_code == 2 and "--registry" in from_env.stderr
    update = registry.cli("lock", "--update", "--lockfile", "other.lock")
    assert update.exit_code == 2


def test_json_documents_of_lock_and_check(registry: Registry) -> None:
    put_version(registry, "pkg", "1.0", b"one", latest=True)
    put_station(registry, "old", {"2.0": b"station"}, latest="2.0")
    Path("items.txt").write_text("# what the build needs\npkg  # latest\n\nold==2.0\n")
    made = json.loads(ok(registry.cli("lock", "--from-file", "items.txt", "--json",
                                      "--lockfile", "ci.lock")).stdout)
    assert {k: made[k] for k in ("schema", "command", "lockfile", "written", "failures",
                                 "exit_code")} == {
        "schema": 1, "command": "lock", "lockfile": "ci.lock", "written": True,
        "failures": [], "exit_code": 0}
    assert [(p["package"], p["version"], p["station"], p["sha256"] is None)
            for p in made["packages"]] == [("old", "2.0", True, True),
                                           ("pkg", "1.0", False, False)]
    assert set(made["packages"][0]) == {"package", "version", "localname", "format", "size",
                                        "sha256", "etag", "tree_sha256", "tree_size",
                                        "station", "signed_by", "statement_sha256"}
    check = json.loads(ok(registry.cli("lock", "--check", "--json", "--lockfile",
                                       "ci.lock")).stdout)
    assert check["command"] == "lock-check" and check["exit_code"] == 0
    assert check["packages"][1] == {"package": "pkg", "version": "1.0", "state": "ok",
                                    "latest": "1.0", "detail": None, "failed": False}
    failed = registry.cli("lock", "nosuch", "--json")
    assert failed.exit_code == 1
    document = json.loads(failed.stdout)
    assert document["written"] is False and document["packages"] == []
    assert document["failures"][0]["item"] == "nosuch"


def test_the_api_locks_and_checks(registry: Registry) -> None:
    put_version(registry, "pkg", "1.0", b"one", latest=True)
    with tycho_async.Client(config=".tychoreg.json") as client:
        made = client.lock(["pkg"])
        assert made.path == LOCKFILE and made.written
        assert made.lock.packages[0].sha256 == hashlib.sha256(b"one").hexdigest()
        assert not client.lock(["pkg"]).written  # the same bytes: left as it is
        check = client.lock_check()
        assert check.exit_code == 0 and [s.state for s in check.packages] == ["ok"]
        put_version(registry, "pkg", "2.0", b"two", latest=True)
        assert client.lock_check(latest=True).exit_code == 1
        updated = client.lock_update(packages=["pkg"])
        assert [(c.old, c.new, c.changed) for c in updated.changes] == [("1.0", "2.0", True)]
        with pytest.raises(tycho_async.UsageError):
            client.lock_check("nothing-here.lock")


def test_help_explains_every_option(registry: Registry) -> None:
    assert CLI_DEFAULT == DEFAULT_LOCKFILE
    shown = ok(registry.cli("lock", "--help")).stdout
    for option in ("--from-file", "--lockfile", "--require-sha256", "--check", "--latest",
                   "--update", "--json", "--config", "--registry", "--concurrency",
                   "--quiet", "Exit codes"):
        assert option in shown
    misuse: list[tuple[str, ...]] = [("lock",), ("lock", "--latest"),
                                     ("lock", "--check", "pkg")]
    for args in misuse:
        result = registry.cli(*args)
        assert result.exit_code == 2 and "Traceback" not in result.output
    bad = Path("bad.lock")
    bad.write_text('version = 1\n[lock]\nregistry = "x"\n[[package]]\nname = "../x"\n')
    result = registry.cli("lock", "--check", "--lockfile", "bad.lock")
    assert result.exit_code == 2 and re.search(r"bad\.lock: package #1", result.stderr)
