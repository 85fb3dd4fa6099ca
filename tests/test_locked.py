"""pull-list --locked: exactly the locked bytes, with no tycho.json request, zero
requests when everything is current, fail closed (exit 3 on a mismatch, nothing
replaced), and a hostile lock file refused before any request."""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

import tycho_async
from tycho_async.api import resolve_settings
from tycho_async.errors import PartialFailure, UsageError
from tycho_async.layout import version_key
from tycho_async.lockfile import DEFAULT_LOCKFILE, Lock, Locked, dump
from tycho_async.storage import open_store

from .httpproxy import FaultProxy
from .support import (
    Registry,
    contents,
    make_tree,
    ok,
    put_station,
    remove_object,
    write_file,
)

OUT = "tycho_packages"


def _settings(registry: Registry) -> Any:
    return resolve_settings(config=str(registry.workdir / ".tychoreg.json"))


def lock_of(registry: Registry, *items: tuple[str, str]) -> Lock:
    """The lock `tychoreg lock` would write for ``items``, built from what the pushes
    recorded (tycho.json's copies; a tycho-station version has none) and a HEAD of each
    object (its ETag)."""
    settings = _settings(registry)

    async def heads() -> list[Any]:
        async with open_store(settings.store) as store:
            return [await store.head(version_key(p, v)) for p, v in items]

    infos = anyio.run(heads)
    entries = []
    for (package, version), info in zip(items, infos, strict=True):
        meta = registry.meta(package)
        record = meta.get("tychoreg", {}).get("records", {}).get(version, {})  # none: station
        entries.append(Locked(package, version, meta["localname"], info.size, info.etag,
                              sha256=record.get("sha256"),
                              format=record.get("format", "file"),
                              tree_sha256=record.get("tree_sha256"),
                              tree_size=record.get("tree_size")))
    return Lock(settings.location, entries)


def write_lock(lock: Lock, path: str = DEFAULT_LOCKFILE) -> Path:
    Path(path).write_bytes(dump(lock))
    return Path(path)


def push(registry: Registry, package: str, version: str, size: int, seed: int,
         *, promote: bool = True) -> bytes:
    source = Path(f"src-{package}-{version}.bin")
    blob = write_file(source, size, seed)
    ok(registry.cli("push", package, version, str(source), "--localname", f"{package}.bin",
                    *(["--promote-latest"] if promote else [])))
    return blob


def closed_port() -> int:
    """A port on 127.0.0.1 that was bound and closed: a connection there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable(registry: Registry) -> None:
    """The registry's config now points at a closed port (S3) or a missing directory,
    under the same identity for an S3 registry."""
    config = json.loads((registry.workdir / ".tychoreg.json").read_text())
    if registry.kind == "s3":
        config["s3"]["endpoint_url"] = f"http://127.0.0.1:{closed_port()}"
    (registry.workdir / ".tychoreg.json").write_text(json.dumps(config))


def test_the_locked_version_is_pulled_after_a_newer_latest(registry: Registry) -> None:
    old = push(registry, "a", "1.0", 3000, 1)
    write_lock(lock_of(registry, ("a", "1.0")))
    push(registry, "a", "2.0", 3000, 2)  # promoted elsewhere, after the lock
    result = ok(registry.cli("pull-list", "--locked"))
    assert Path(OUT, "a.bin").read_bytes() == old
    assert "pulled a 1.0" in result.stdout


@pytest.mark.parametrize("other_size", [False, True])
def test_a_tampered_object_is_exit_3_and_the_others_are_pulled(
        registry: Registry, other_size: bool) -> None:
    a = push(registry, "a", "1.0", 3000, 1)
    b = push(registry, "b", "1.0", 3000, 2)
    write_lock(lock_of(registry, ("a", "1.0"), ("b", "1.0")))
    tampered = bytes(reversed(a)) + (b"x" if other_size else b"")
    registry.put("a/tycho_1.0.pkg", tampered)
    Path(OUT).mkdir()
    Path(OUT, "a.bin").write_bytes(b"the old copy")
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 3, result.output
    assert "a" in result.stderr and "1 of 2 packages failed" in result.stderr
    assert Path(OUT, "a.bin").read_bytes() == b"the old copy"
    assert Path(OUT, "b.bin").read_bytes() == b
    assert sorted(p.name for p in Path(OUT).iterdir()) == ["a.bin", "b.bin", "b.bin.etag"]


def test_a_deleted_locked_version_is_exit_1_naming_it(registry: Registry) -> None:
    push(registry, "a", "1.0", 3000, 1)
    b = push(registry, "b", "1.0", 3000, 2)
    write_lock(lock_of(registry, ("a", "1.0"), ("b", "1.0")))
    remove_object(registry, "a/tycho_1.0.pkg")
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 1, result.output
    assert "a 1.0 does not exist" in result.stderr
    assert Path(OUT, "b.bin").read_bytes() == b
    assert not Path(OUT, "a.bin").exists()


def test_a_station_version_is_checked_by_size_and_etag(registry: Registry) -> None:
    blob = b"pushed by tycho-station\n" * 100
    put_station(registry, "s", {"1.0": blob}, latest="1.0")
    lock = lock_of(registry, ("s", "1.0"))
    assert lock.packages[0].station
    write_lock(lock)
    ok(registry.cli("pull-list", "--locked"))
    assert Path(OUT, "s.bin").read_bytes() == blob
    assert "is up to date" in ok(registry.cli("pull-list", "--locked")).stdout
    registry.put("s/tycho_1.0.pkg", bytes(reversed(blob)))  # same size, another ETag
    result = registry.cli("pull-list", "--locked", "--outdir", "fresh")
    assert result.exit_code == 3, result.output
    assert "s==1.0" in result.stderr and "not the locked one" in result.stderr
    assert not Path("fresh", "s.bin").exists()


def test_a_warm_rerun_needs_no_store(registry: Registry) -> None:
    blob = push(registry, "a", "1.0", 3000, 1)
    write_lock(lock_of(registry, ("a", "1.0")))
    ok(registry.cli("pull-list", "--locked"))
    unreachable(registry)
    if registry.kind == "local":
        Path(registry.root, "a", "tycho_1.0.pkg").unlink()  # nothing may read it
    result = ok(registry.cli("pull-list", "--locked"))
    assert "a 1.0 is up to date" in result.stdout
    assert Path(OUT, "a.bin").read_bytes() == blob


def test_a_warm_rerun_makes_zero_requests(proxy: FaultProxy, s3_registry: Registry) -> None:
    s3_registry.endpoint = proxy.url
    s3_registry.write_config()
    push(s3_registry, "a", "1.0", 3000, 1)
    push(s3_registry, "b", "1.0", 3000, 2)
    write_lock(lock_of(s3_registry, ("a", "1.0"), ("b", "1.0")))
    proxy.clear()
    ok(s3_registry.cli("pull-list", "--locked"))
    cold = proxy.requests
    assert [r.method for r in cold] == ["GET", "GET"]  # one GET each, no tycho.json
    assert not any("tycho.json" in r.path for r in cold)
    proxy.clear()
    ok(s3_registry.cli("pull-list", "--locked"))
    assert proxy.requests == []
    with tycho_async.Client(config=str(s3_registry.workdir / ".tychoreg.json")) as client:
        assert all(r.skipped for r in client.pull_locked())  # the API's own pass
    assert proxy.requests == []


def test_a_warm_rerun_resolves_no_credentials(s3_registry: Registry, tmp_path: Path) -> None:
    """Credentials from a credential_process (as SSO, a vault or an instance role give
    them: each costs a process or a request): a warm run never asks for them."""
    marker = tmp_path / "credentials-asked"
    answer = json.dumps({"Version": 1, "AccessKeyId": "testing",
                         "SecretAccessKey": "testing"})
    process = tmp_path / "credentials.sh"
    process.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\n"
                       f"echo {shlex.quote(answer)}\n")
    process.chmod(0o755)
    Path(os.environ["AWS_CONFIG_FILE"]).write_text(
        f"[default]\ncredential_process = {process}\n")
    config = json.loads((s3_registry.workdir / ".tychoreg.json").read_text())
    for key in ("aws_access_key_id", "aws_secret_access_key"):
        del config["s3"][key]
    (s3_registry.workdir / ".tychoreg.json").write_text(json.dumps(config))
    blob = push(s3_registry, "a", "1.0", 3000, 1)
    write_lock(lock_of(s3_registry, ("a", "1.0")))
    assert marker.exists()  # the chain is the one in use
    marker.unlink()
    ok(s3_registry.cli("pull-list", "--locked"))
    assert marker.exists()
    marker.unlink()
    unreachable(s3_registry)
    assert "a 1.0 is up to date" in ok(s3_registry.cli("pull-list", "--locked")).stdout
    assert not marker.exists()
    assert Path(OUT, "a.bin").read_bytes() == blob


def test_a_directory_package_is_restored_by_its_tree_sha256(registry: Registry) -> None:
    tree = make_tree(Path("venv"))
    ok(registry.cli("push", "deps", "1.0", str(tree), "--promote-latest"))
    lock = lock_of(registry, ("deps", "1.0"))
    assert lock.packages[0].tree_sha256 is not None
    write_lock(lock)
    ok(registry.cli("pull-list", "--locked"))
    assert contents(Path(OUT, "venv")) == contents(tree)
    unreachable(registry)
    result = ok(registry.cli("pull-list", "--locked"))
    assert "deps 1.0 is up to date" in result.stdout
    with tycho_async.Client(config=str(registry.workdir / ".tychoreg.json")) as client:
        assert client.pull_locked()[0].skipped  # the registry's own pass: no HEAD either


def test_a_wrong_tree_sha256_is_exit_3_and_replaces_nothing(registry: Registry) -> None:
    tree = make_tree(Path("venv"))
    ok(registry.cli("push", "deps", "1.0", str(tree), "--promote-latest"))
    ok(registry.cli("pull", "deps"))
    before = contents(Path(OUT, "venv"))
    entry = lock_of(registry, ("deps", "1.0")).packages[0]
    entry.tree_sha256 = "0" * 64
    entry.version = "1.0"
    write_lock(Lock(_settings(registry).location, [entry]))
    Path(OUT, "venv", "extra").write_bytes(b"a local edit")  # so it is not current
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 3, result.output
    assert "tree_sha256" in result.stderr
    assert contents(Path(OUT, "venv")) == {**before, "extra": b"a local edit"}


ENTRY = ('[[package]]\nname = "{name}"\nversion = "1.0"\nlocalname = "{localname}"\n'
         'format = "file"\nsize = {size}\nsha256 = "{sha256}"\netag = "\\"e\\""\n')


@pytest.mark.parametrize(("fields", "named"), [
    ({"localname": "../x.bin"}, "x"),
    ({"localname": "d/x.bin"}, "x"),
    ({"name": "no/name"}, "package #1"),
    ({"size": -1}, "x"),
    ({"sha256": "z" * 64}, "x"),
])
def test_a_hostile_lock_is_exit_2_before_any_request(
        registry: Registry, fields: dict[str, Any], named: str) -> None:
    values = {"name": "x", "localname": "x.bin", "size": 3, "sha256": "a" * 64, **fields}
    Path(DEFAULT_LOCKFILE).write_text(
        f'version = 1\n[lock]\nregistry = "{_settings(registry).location}"\n'
        + ENTRY.format(**values))
    unreachable(registry)
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 2, result.output
    assert named in result.stderr and "Traceback" not in result.output
    assert not Path(OUT).exists()


def test_a_nesting_bomb_is_exit_2(registry: Registry) -> None:
    Path(DEFAULT_LOCKFILE).write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    unreachable(registry)
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 2, result.output
    assert DEFAULT_LOCKFILE in result.stderr and "Traceback" not in result.output


def test_a_reserved_localname_is_exit_2_naming_the_entry(registry: Registry) -> None:
    lock = Lock(_settings(registry).location, [
        Locked("x", "1.0", ".tychoreg.json", 3, '"e"', sha256="a" * 64)])
    write_lock(lock)
    unreachable(registry)
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 2, result.output
    assert "x==1.0" in result.stderr and ".tychoreg.json" in result.stderr


def test_a_lock_of_another_registry_needs_registry_on_the_command_line(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = push(registry, "a", "1.0", 3000, 1)
    lock = lock_of(registry, ("a", "1.0"))
    write_lock(Lock("s3://elsewhere/prefix", lock.packages))
    refused = registry.cli("pull-list", "--locked")
    assert refused.exit_code == 2, refused.output
    assert "s3://elsewhere/prefix" in refused.stderr
    assert _settings(registry).location in refused.stderr
    here = _settings(registry).location if registry.kind == "local" else \
        f"s3://{registry.root}"
    monkeypatch.setenv("TYCHOREG_REGISTRY", here)  # not the command line: still refused
    from_env = registry.cli("pull-list", "--locked")
    assert from_env.exit_code == 2 and "s3://elsewhere/prefix" in from_env.stderr
    monkeypatch.delenv("TYCHOREG_REGISTRY")
    ok(registry.cli("pull-list", "--locked", "--registry", here))
    assert Path(OUT, "a.bin").read_bytes() == blob
    Path(OUT, "a.bin").unlink()
    ok(registry.cli("--registry", here, "pull-list", "--locked"))


def test_json_and_a_lockfile_path(registry: Registry) -> None:
    push(registry, "a", "1.0", 3000, 1)
    push(registry, "b", "1.0", 3000, 2)
    write_lock(lock_of(registry, ("a", "1.0"), ("b", "1.0")), "pins.lock")
    remove_object(registry, "b/tycho_1.0.pkg")
    result = registry.cli("pull-list", "--locked", "--lockfile", "pins.lock", "--json",
                          "--outdir", "deps")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["command"] == "pull-list" and document["exit_code"] == 1
    assert [item["item"] for item in document["items"]] == ["a==1.0", "b==1.0"]
    assert (document["pulled"], document["failed"]) == (1, 1)
    assert Path("deps", "a.bin").exists()


def test_locked_refuses_items_beside_it(registry: Registry) -> None:
    for args in (["a"], ["--from-file", "x"]):
        result = registry.cli("pull-list", "--locked", *args)
        assert result.exit_code == 2, result.output
        assert "--locked" in result.stderr
    result = registry.cli("pull-list", "--lockfile", "x.lock")
    assert result.exit_code == 2 and "--locked" in result.stderr
    missing = registry.cli("pull-list", "--locked")
    assert missing.exit_code == 2 and DEFAULT_LOCKFILE in missing.stderr


def test_the_api_pulls_a_lock(registry: Registry) -> None:
    blob = push(registry, "a", "1.0", 3000, 1)
    push(registry, "b", "1.0", 3000, 2)
    write_lock(lock_of(registry, ("a", "1.0"), ("b", "1.0")))
    remove_object(registry, "b/tycho_1.0.pkg")
    with tycho_async.Client(config=str(registry.workdir / ".tychoreg.json")) as client:
        with pytest.raises(PartialFailure) as caught:
            client.pull_locked(outdir="api")
        assert [r.package for r in caught.value.results] == ["a"]
        assert Path("api", "a.bin").read_bytes() == blob
        write_lock(Lock("s3://elsewhere/", lock_of(registry, ("a", "1.0")).packages),
                   "other.lock")
        with pytest.raises(UsageError):
            client.pull_locked("other.lock", outdir="api")
        assert client.pull_locked("other.lock", outdir="api", other_registry=True)[0] \
            .skipped


def test_a_station_directory_entry_is_exit_2(registry: Registry) -> None:
    write_lock(Lock(_settings(registry).location, [
        Locked("d", "1.0", "d.tar.zst", 3, '"e"', sha256=None, format="tar+zstd")]))
    unreachable(registry)
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 2, result.output
    assert "d==1.0" in result.stderr and "sha256" in result.stderr


def test_two_entries_writing_one_file_are_refused(registry: Registry) -> None:
    for package, seed in (("a", 1), ("b", 2)):
        write_file(Path(f"{package}.src"), 3000, seed)
        ok(registry.cli("push", package, "1.0", f"{package}.src", "--localname", "same.bin",
                        "--promote-latest"))
    write_lock(lock_of(registry, ("a", "1.0"), ("b", "1.0")))
    result = registry.cli("pull-list", "--locked")
    assert result.exit_code == 2, result.output
    assert "both write" in result.stderr
    assert Path(OUT, "same.bin").read_bytes() == Path("a.src").read_bytes()
    assert "1 of 2 packages failed" in result.stderr


def test_what_tychoreg_lock_wrote_is_pulled_exactly(registry: Registry) -> None:
    a = push(registry, "a", "1.0", 3000, 1)
    tree = make_tree(Path("venv"))
    ok(registry.cli("push", "deps", "1.0", str(tree), "--promote-latest"))
    ok(registry.cli("lock", "a", "deps"))
    push(registry, "a", "2.0", 3000, 2)
    result = ok(registry.cli("pull-list", "--locked", "--json"))
    assert [item["item"] for item in json.loads(result.stdout)["items"]] == \
        ["a==1.0", "deps==1.0"]
    assert Path(OUT, "a.bin").read_bytes() == a
    assert contents(Path(OUT, "venv")) == contents(tree)
    unreachable(registry)
    document = json.loads(ok(registry.cli("pull-list", "--locked", "--json")).stdout)
    assert [item["skipped"] for item in document["items"]] == [True, True]
