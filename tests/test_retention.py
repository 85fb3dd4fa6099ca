"""Delete and prune, deletions cut short, and the JSON documents, through the CLI on every
backend (save-if-missing is in test_publish.py, fallback keys in test_pull.py)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from tycho_async.config import load_settings
from tycho_async.errors import StoreError
from tycho_async.registry import Registry as Reg
from tycho_async.storage import open_store
from tycho_async.transfer import Engine

from .faults import FaultyStore
from .support import (
    Registry,
    dead_holder,
    make_tree,
    ok,
    put_version,
    remove_object,
    versions_stored,
    write_file,
)

MiB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("one_raw_client")


# -- helpers ---------------------------------------------------------------------------------


def let_time_pass(registry: Registry, seconds: float) -> None:
    """Make every version stored so far ``seconds`` older: the local backend's versions
    are backdated (their mtime is their Last-Modified), an S3 store's are waited for."""
    if registry.kind == "s3":
        time.sleep(seconds)
        return
    for path in Path(registry.root).rglob("*.pkg"):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def copies(registry: Registry, package: str) -> dict[str, Any]:
    return dict(registry.meta(package).get("tychoreg", {}).get("records", {}))


def assert_gone(registry: Registry, package: str, version: str) -> None:
    keys = registry.object_keys()
    assert f"{package}/tycho_{version}.pkg" not in keys
    assert f"{package}/tycho_{version}.meta.json" not in keys
    assert version not in copies(registry, package)


# -- delete ----------------------------------------------------------------------------------

def test_delete_checks_every_version_first(registry: Registry) -> None:
    for version in ("1", "2", "3"):
        put_version(registry, "pkg", version, f"v{version}".encode(), latest=version == "1")
    everything = registry.object_keys()

    missing = registry.cli("delete", "pkg", "2", "3", "9")
    assert missing.exit_code == 1
    assert "9" in missing.stderr and "does not exist" in missing.stderr
    latest = registry.cli("delete", "pkg", "2", "1")
    assert latest.exit_code == 1
    assert "latest" in latest.stderr
    dry = ok(registry.cli("delete", "pkg", "2", "3", "--dry-run"))
    assert "would delete pkg 2" in dry.stdout and "would delete pkg 3" in dry.stdout
    assert registry.object_keys() == everything
    assert set(copies(registry, "pkg")) == {"1", "2", "3"}

    done = ok(registry.cli("delete", "pkg", "2", "3"))
    assert "deleted pkg 2" in done.stdout and "deleted pkg 3" in done.stdout
    for version in ("2", "3"):
        assert_gone(registry, "pkg", version)
    assert registry.cli("pull", "pkg", "--version", "2").exit_code == 1

    forced = ok(registry.cli("delete", "pkg", "1", "--force"))
    assert "no latest" in forced.stdout
    assert registry.meta("pkg")["latest"] is None
    assert registry.object_keys() == ["pkg/tycho.json"]
    assert registry.hidden_files() == []


# -- prune -----------------------------------------------------------------------------------

def test_prune_keeps_the_newest_and_latest(registry: Registry) -> None:
    for version in ("1", "2", "3", "4"):  # in this order: Last-Modified never decreases
        put_version(registry, "pkg", version, f"v{version}".encode(), latest=version == "1")
    everything = registry.object_keys()
    dry = ok(registry.cli("prune", "pkg", "--keep", "2", "--dry-run"))
    assert "would delete pkg 2" in dry.stdout
    assert "pkg 1" not in dry.stdout and "pkg 3" not in dry.stdout
    assert registry.object_keys() == everything

    ok(registry.cli("prune", "pkg", "--keep", "2"))
    assert_gone(registry, "pkg", "2")
    assert versions_stored(registry, "pkg") == ["1", "3", "4"]

    ok(registry.cli("prune", "pkg", "--keep", "0"))
    assert versions_stored(registry, "pkg") == ["1"]  # latest is always kept
    assert set(copies(registry, "pkg")) == {"1"}


def test_prune_older_than(registry: Registry) -> None:
    for version in ("1", "2", "3"):
        put_version(registry, "pkg", version, f"v{version}".encode(), latest=version == "1")
    let_time_pass(registry, 2.3)
    put_version(registry, "pkg", "4", b"v4")
    bad = registry.cli("prune", "pkg", "--keep", "0", "--older-than", "2 fortnights")
    assert bad.exit_code == 2
    assert versions_stored(registry, "pkg") == ["1", "2", "3", "4"]

    pruned = ok(registry.cli("prune", "pkg", "--keep", "0", "--older-than", "2s"))
    assert "deleted pkg 2" in pruned.stdout and "deleted pkg 3" in pruned.stdout
    assert versions_stored(registry, "pkg") == ["1", "4"]  # latest, and one too young


# -- a deletion cut short --------------------------------------------------------------------

CRASHES = {  # a version for each point a crash can cut a deletion at
    "v-copy-marked": "after step 1: its copy in tycho.json marked",
    "v-marked": "after step 2: its record object marked too",
    "v-object-gone": "after step 3: the object deleted",
    "v-record-gone": "after step 4: the record object deleted, the copy still there",
}


@pytest.mark.parametrize("finisher", ["delete", "prune"])
def test_a_deletion_cut_short_is_never_trusted_and_finished_later(
        registry: Registry, finisher: str) -> None:
    put_version(registry, "pkg", "intact", b"untouched")
    for version in CRASHES:
        put_version(registry, "pkg", version, f"bytes of {version}".encode())
    meta = registry.meta("pkg")
    for version in CRASHES:
        record = json.loads(registry.get(f"pkg/tycho_{version}.meta.json") or b"")
        marked = {**record, "state": "deleting",
                  "deleting_since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "deleted_by": "tychoreg 0.1.0"}
        meta["tychoreg"]["records"][version] = marked
        if version != "v-copy-marked":
            registry.put(f"pkg/tycho_{version}.meta.json", json.dumps(marked).encode())
        if version in ("v-object-gone", "v-record-gone"):
            remove_object(registry, f"pkg/tycho_{version}.pkg")
        if version == "v-record-gone":
            remove_object(registry, f"pkg/tycho_{version}.meta.json")
    registry.put("pkg/tycho.json", json.dumps(meta, indent=2).encode())

    first = "v-copy-marked" if finisher == "delete" else "v-record-gone"
    pulled = registry.cli("pull", "pkg", "--version", first)
    assert pulled.exit_code == 3, (pulled.stdout, pulled.stderr)
    assert "being deleted" in pulled.stderr
    every = registry.cli("pull-list", *(f"pkg=={v}" for v in CRASHES), "--json")
    assert every.exit_code == 3
    for item in json.loads(every.stdout)["items"]:
        assert item["exit_code"] == 3 and "being deleted" in item["error"], \
            (CRASHES[item["version"]], item)
    assert not Path("tycho_packages/pkg.bin").exists()
    if finisher == "delete":  # never made the latest, never said to exist
        promoted = registry.cli("promote", "pkg", "v-marked")
        assert promoted.exit_code == 3 and "being deleted" in promoted.stderr
        assert registry.meta("pkg")["latest"] is None
        assert registry.cli("exists", "pkg", "v-object-gone").exit_code == 1

    args = ["delete", "pkg", *CRASHES] if finisher == "delete" else \
        ["prune", "pkg", "--keep", "9"]
    finished = ok(registry.cli(*args))
    for version in CRASHES:
        assert f"pkg {version}" in finished.stdout
        assert_gone(registry, "pkg", version)
    assert registry.object_keys() == ["pkg/tycho.json", "pkg/tycho_intact.meta.json",
                                      "pkg/tycho_intact.pkg"]
    assert set(copies(registry, "pkg")) == {"intact"}


# -- JSON documents --------------------------------------------------------------------------

def document(result: Any, command: str, keys: set[str]) -> dict[str, Any]:
    doc = json.loads(result.stdout)  # one document, nothing else on stdout
    assert isinstance(doc, dict)
    assert doc["schema"] == 1 and doc["command"] == command
    assert keys <= set(doc), keys - set(doc)
    return doc


PULLED = {"item", "package", "version", "path", "size", "skipped", "exact", "format",
          "error", "exit_code"}


def test_json_documents(registry: Registry) -> None:
    blob = write_file(Path("f.bin"), 300)
    push_keys = {"package", "version", "size", "sha256", "format", "tree_sha256", "skipped",
                 "same_content", "initialized", "promoted", "warnings"}
    pushed = document(ok(registry.cli("push", "pkg", "1", "f.bin", "--promote-latest",
                                      "--json")), "push", push_keys)
    assert pushed == {**pushed, "package": "pkg", "version": "1", "size": 300,
                      "sha256": hashlib.sha256(blob).hexdigest(), "format": "file",
                      "tree_sha256": None, "skipped": False, "initialized": True,
                      "promoted": True}
    skipped = document(ok(registry.cli("push", "pkg", "1", "f.bin", "--skip-existing",
                                       "--json")), "push", push_keys)
    assert skipped["skipped"] is True and skipped["sha256"] == pushed["sha256"]
    assert skipped["same_content"] is True and pushed["same_content"] is None
    assert pushed["warnings"] == [] == skipped["warnings"]
    make_tree(Path("tree"))
    tree = document(ok(registry.cli("push", "dirs", "1", "tree", "--json")), "push",
                    push_keys)
    assert tree["format"] == "tar+zstd" and len(tree["tree_sha256"]) == 64

    pulled = document(ok(registry.cli("pull", "pkg", "--json")), "pull", PULLED)
    assert pulled == {**pulled, "package": "pkg", "version": "1", "size": 300,
                      "path": "tycho_packages/f.bin", "skipped": False, "exact": True,
                      "format": "file", "error": None, "exit_code": 0}

    many = registry.cli("pull-list", "pkg", "ghost==1", "--json")
    assert many.exit_code == 1
    assert "ghost" in many.stderr  # the failure still goes to stderr as text
    listed = document(many, "pull-list", {"items", "pulled", "failed", "exit_code"})
    assert (listed["pulled"], listed["failed"], listed["exit_code"]) == (1, 1, 1)
    good, bad = listed["items"]
    assert set(good) >= PULLED and set(bad) >= PULLED
    assert (good["item"], good["skipped"], good["error"], good["exit_code"]) == \
        ("pkg", True, None, 0)
    assert (bad["item"], bad["package"], bad["version"], bad["path"], bad["exit_code"]) == \
        ("ghost==1", "ghost", "1", None, 1)
    assert isinstance(bad["error"], str) and bad["error"]

    version_keys = {"version", "size", "sha256", "pushed_at", "format", "latest", "state"}
    versions = document(ok(registry.cli("list-versions", "dirs", "--json")),
                        "list-versions", {"package", "versions"})
    (only,) = versions["versions"]
    assert version_keys <= set(only)
    assert (only["version"], only["format"], only["latest"], only["state"]) == \
        ("1", "tar+zstd", False, "ok")
    assert only["sha256"] == tree["sha256"] and only["pushed_at"]

    shown = document(ok(registry.cli("show", "pkg", "--json")), "show",
                     {"package", "localname", "latest", "versions", "size"})
    assert (shown["localname"], shown["latest"], shown["versions"], shown["size"]) == \
        ("f.bin", "1", 1, 300)
    one = document(ok(registry.cli("show", "dirs", "--version", "1", "--json")), "show",
                   {"package", "localname", "latest", "versions", "size", "version"})
    assert version_keys | {"tool", "tree_sha256"} <= set(one["version"])
    assert one["version"]["tree_sha256"] == tree["tree_sha256"]
    assert one["version"]["tool"].startswith("tychoreg")

    put_version(registry, "pkg", "2", b"two")
    deleted = document(ok(registry.cli("delete", "pkg", "2", "--dry-run", "--json")),
                       "delete", {"package", "deleted", "latest_cleared", "dry_run"})
    assert (deleted["deleted"], deleted["latest_cleared"], deleted["dry_run"]) == \
        (["2"], False, True)
    pruned = document(ok(registry.cli("prune", "pkg", "--keep", "0", "--json")), "prune",
                      {"package", "deleted", "kept", "finished", "aborted_uploads",
                       "dry_run"})
    assert (pruned["deleted"], pruned["kept"], pruned["finished"], pruned["aborted_uploads"],
            pruned["dry_run"]) == (["2"], ["1"], [], 0, False)


# -- a multi-version delete cut short, then run again ----------------------------------------

def _on_store(registry: Registry, work: Callable[[FaultyStore, Reg], Awaitable[None]]
              ) -> None:
    """Run ``work`` through the API, on the registry's store wrapped in a FaultyStore."""
    async def main() -> None:
        settings = load_settings(str(registry.workdir / ".tychoreg.json"))
        async with open_store(settings.store) as store:
            faulty = FaultyStore(store)
            await work(faulty, Reg(Engine(faulty, settings.transfer), settings.outdir))

    anyio.run(main)


def _cut_delete(registry: Registry, package: str, versions: list[str], cut_at: int, *,
                everything: bool = False) -> None:
    """Run ``delete`` on a store that fails its ``cut_at``-th object deletion (what a
    kill between two steps leaves, on every backend)."""
    async def work(faulty: FaultyStore, reg: Reg) -> None:
        faulty.inject("delete", *[None] * (cut_at - 1), StoreError("cut here"))
        with pytest.raises(StoreError, match="cut here"):
            await reg.delete(package, versions, everything=everything)

    _on_store(registry, work)


@pytest.mark.parametrize("cut_at", [2, 3])  # deletions: 0's object, 0's record, 1's object
def test_an_interrupted_multi_version_delete_is_finished_by_the_same_command(
        registry: Registry, cut_at: int) -> None:
    for version in ("0", "1", "2", "keep"):
        put_version(registry, "pkg", version, f"v{version}".encode())
    _cut_delete(registry, "pkg", ["0", "1", "2"], cut_at=cut_at)
    assert "pkg/tycho_0.pkg" not in registry.object_keys()
    for version in ("0", "1", "2"):
        pulled = registry.cli("pull", "pkg", "--version", version)
        assert pulled.exit_code in (1, 3), pulled.output
        assert registry.cli("exists", "pkg", version).exit_code == 1
    again = ok(registry.cli("delete", "pkg", "0", "1", "2"))
    for version in ("0", "1", "2"):
        assert f"deleted pkg {version}" in again.stdout
        assert_gone(registry, "pkg", version)
    assert set(copies(registry, "pkg")) == {"keep"}
    typo = registry.cli("delete", "pkg", "0")
    assert typo.exit_code == 1 and "pkg 0 does not exist" in typo.stderr
    assert versions_stored(registry, "pkg") == ["keep"]


def test_delete_all_removes_the_whole_package(registry: Registry) -> None:
    for version in ("1", "2", "3"):
        put_version(registry, "pkg", version, f"v{version}".encode(), latest=version == "2")
    put_version(registry, "other", "1", b"stays")
    registry.put("pkg/tycho_4.meta.json", json.dumps(  # a push that died long ago
        {"state": "pending", "started_at": "2020-01-01T00:00:00+00:00",
         "localname": "pkg.bin", "holder": dead_holder()}).encode())

    async def upload(faulty: FaultyStore, reg: Reg) -> None:
        await faulty.create_multipart("pkg/tycho_5.pkg", 10 * MiB)

    _on_store(registry, upload)
    everything = registry.object_keys()
    both = registry.cli("delete", "pkg", "1", "--all")
    assert both.exit_code == 2 and "--all" in both.stderr
    ghost = registry.cli("delete", "ghost", "--all")
    assert ghost.exit_code == 1 and "does not exist" in ghost.stderr
    dry = ok(registry.cli("delete", "pkg", "--all", "--dry-run"))
    assert dry.stdout.splitlines() == ["would delete pkg 1", "would delete pkg 2",
                                       "would delete pkg 3", "would delete pkg 4",
                                       "would remove package pkg"]
    assert registry.object_keys() == everything

    done = ok(registry.cli("delete", "pkg", "--all", "--json"))
    doc = json.loads(done.stdout)
    assert (doc["deleted"], doc["latest_cleared"], doc["package_removed"], doc["dry_run"]) \
        == (["1", "2", "3", "4"], True, True, False)
    assert [k for k in registry.object_keys() if k.startswith("pkg/")] == []
    assert registry.multipart_uploads() == []
    listed = ok(registry.cli("list"))
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["other"]
    assert registry.cli("pull", "other", "--version", "1").exit_code == 0
    again = registry.cli("delete", "pkg", "--all")
    assert again.exit_code == 1 and "does not exist" in again.stderr


def test_delete_all_cut_short_is_finished_by_the_same_command(registry: Registry) -> None:
    for version in ("1", "2"):
        put_version(registry, "pkg", version, f"v{version}".encode(), latest=version == "1")
    _cut_delete(registry, "pkg", [], cut_at=3, everything=True)
    assert registry.cli("pull", "pkg", "--version", "2").exit_code == 3
    assert registry.cli("pull", "pkg").exit_code == 1  # latest was unset first
    ok(registry.cli("delete", "pkg", "--all"))
    assert [k for k in registry.object_keys() if k.startswith("pkg/")] == []
    assert ok(registry.cli("list")).stdout == ""


def test_delete_all_never_cuts_a_live_push_short(registry: Registry) -> None:
    put_version(registry, "pkg", "1", b"v1")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    registry.put("pkg/tycho_2.meta.json", json.dumps(
        {"state": "pending", "started_at": started, "localname": "pkg.bin"}).encode())
    everything = registry.object_keys()
    busy = registry.cli("delete", "pkg", "--all")
    assert busy.exit_code == 1 and "being pushed" in busy.stderr
    assert registry.object_keys() == everything


def test_delete_all_removes_a_new_package_whose_first_push_died(registry: Registry) -> None:
    """The first push of a new package killed after its upload: a pending record and
    the object, no tycho.json yet. delete --all removes it (there are no marks to keep
    in a tycho.json that does not exist, and no pull trusts a package without one)."""
    registry.put("fresh/tycho_1.pkg", b"v1")
    registry.put("fresh/tycho_1.meta.json", json.dumps(
        {"state": "pending", "started_at": "2020-01-01T00:00:00+00:00",
         "localname": "fresh.bin", "push_id": "dead", "holder": dead_holder()}).encode())
    assert "fresh" in ok(registry.cli("list")).stdout
    done = ok(registry.cli("delete", "fresh", "--all"))
    assert done.stdout.splitlines() == ["deleted fresh 1", "removed package fresh"]
    assert [k for k in registry.object_keys() if k.startswith("fresh/")] == []
    assert ok(registry.cli("list")).stdout == ""
