"""Signed versions in lock files: ``tychoreg lock`` under allowed signers records who
signed each version (signed_by) and what (statement_sha256); ``pull-list --locked``
under the policy refuses an entry without an allowed signer or whose digest is not its
own fields' (exit 3, nothing written), checks a current copy with zero requests (the
lean entry too), and reads the ``.sig`` of a version it downloads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tycho_async.layout import signature_key
from tycho_async.lockfile import read

from .httpproxy import FaultProxy
from .signing import Keys, allowed_signers, sign_by_hand, statement_of
from .support import Registry, contents, make_tree, ok, put_station, remove_object
from .test_locked import OUT, push, unreachable

TYCHOREG = str(Path(sys.executable).with_name("tychoreg"))


def signed_pair(registry: Registry, keys: Keys) -> dict[str, bytes]:
    """Packages a and b pushed and signed by alice (an allowed signer)."""
    blobs = {name: push(registry, name, "1.0", 3000, seed)
             for seed, name in enumerate(("a", "b"), 1)}
    for name in blobs:
        sign_by_hand(registry, name, "1.0", keys.alice)
    return blobs


def packages(lockfile: str = "tychoreg.lock") -> dict[str, dict[str, object]]:
    """The lock file's [[package]] tables, by name, as written."""
    return {entry.name: entry.to_table() for entry in read(Path(lockfile)).packages}


def test_lock_under_a_policy_records_the_signer(s3_registry: Registry, keys: Keys) -> None:
    signed_pair(s3_registry, keys)
    ok(s3_registry.cli("lock", "a", "b", "--lockfile", "plain.lock"))
    assert not {"signed_by", "statement_sha256"} & set(packages("plain.lock")["a"])
    result = ok(s3_registry.cli("lock", "a", "b", "--allowed-signers", str(keys.allowed)))
    assert "signed by alice@example.com" in result.stdout
    for name, entry in packages().items():
        assert entry["signed_by"] == "alice@example.com"
        assert entry["statement_sha256"] == statement_of(s3_registry, name, "1.0").digest()
    ok(s3_registry.cli("lock", "--check", "--allowed-signers", str(keys.allowed)))
    drift = s3_registry.cli("lock", "--check", "--lockfile", "plain.lock",
                            "--allowed-signers", str(keys.allowed))
    assert drift.exit_code == 1 and "the lock records no signer" in drift.stdout
    ok(s3_registry.cli("lock", "--update", "--lockfile", "plain.lock",
                       "--allowed-signers", str(keys.allowed)))
    assert packages("plain.lock") == packages()


def test_an_unsigned_version_is_exit_3_and_no_lock(s3_registry: Registry,
                                                   keys: Keys) -> None:
    push(s3_registry, "a", "1.0", 3000, 1)
    sign_by_hand(s3_registry, "a", "1.0", keys.alice)
    push(s3_registry, "b", "1.0", 3000, 2)
    result = s3_registry.cli("lock", "a", "b", "--allowed-signers", str(keys.allowed))
    assert result.exit_code == 3, result.output
    assert "b 1.0 is not signed" in result.stderr
    assert not Path("tychoreg.lock").exists()
    sign_by_hand(s3_registry, "b", "1.0", keys.eve)  # signed, but not by an allowed signer
    result = s3_registry.cli("lock", "a", "b", "--allowed-signers", str(keys.allowed))
    assert result.exit_code == 3 and "no valid signature" in result.stderr
    assert not Path("tychoreg.lock").exists()


def test_a_signed_lock_is_pulled_cold_with_one_sig_each_and_warm_with_none(
        proxy: FaultProxy, s3_registry: Registry, keys: Keys) -> None:
    s3_registry.endpoint = proxy.url
    s3_registry.write_config()
    blobs = signed_pair(s3_registry, keys)
    tree = make_tree(Path("venv"))
    ok(s3_registry.cli("push", "deps", "1.0", str(tree), "--promote-latest"))
    sign_by_hand(s3_registry, "deps", "1.0", keys.alice)
    policy = ["--allowed-signers", str(keys.allowed)]
    ok(s3_registry.cli("lock", "a", "b", "deps", *policy))
    proxy.clear()
    ok(s3_registry.cli("pull-list", "--locked", *policy))
    sigs = [r for r in proxy.requests if r.path.endswith(".sig")]
    assert len(sigs) == 3 and len(proxy.requests) == 6
    assert {name: Path(OUT, f"{name}.bin").read_bytes() for name in blobs} == blobs
    assert contents(Path(OUT, "venv")) == contents(tree)
    proxy.clear()
    result = ok(s3_registry.cli("pull-list", "--locked", *policy))
    assert proxy.requests == [] and result.stdout.count("is up to date") == 3
    Path(OUT, "a.bin").write_bytes(b"edited")  # only a is stale: only a's .sig is read
    ok(s3_registry.cli("pull-list", "--locked", *policy))
    assert sorted(r.path.rsplit("/", 1)[-1] for r in proxy.requests) == \
        ["tycho_1.0.pkg", "tycho_1.0.sig"]
    assert all("/a/" in r.path for r in proxy.requests)
    proxy.clear()
    unreachable(s3_registry)  # the lean entry: no store, no typer, the same check
    done = subprocess.run([sys.executable, "-X", "importtime", TYCHOREG, "pull-list",
                           "--locked", *policy], capture_output=True, text=True, timeout=60,
                          check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "a 1.0 is up to date" in done.stdout and " typer" not in done.stderr
    bob_only = allowed_signers(Path("bob-only"), ("bob@example.com", keys.bob, ""))
    done = subprocess.run([TYCHOREG, "pull-list", "--locked"], capture_output=True,
                          text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TYCHOREG_ALLOWED_SIGNERS": str(bob_only)})
    assert done.returncode == 3 and "do not allow" in done.stderr, done.stderr


@pytest.mark.parametrize("change", ["no signer", "tampered digest", "signer removed",
                                    "station"])
def test_a_lock_the_policy_does_not_vouch_for_is_exit_3_and_writes_nothing(
        s3_registry: Registry, keys: Keys, change: str) -> None:
    signed_pair(s3_registry, keys)
    policy = ["--allowed-signers", str(keys.allowed)]
    if change == "station":
        put_station(s3_registry, "s", {"1.0": b"pushed by tycho-station\n"}, latest="1.0")
        ok(s3_registry.cli("lock", "s"))
    else:
        ok(s3_registry.cli("lock", "a", "b", *([] if change == "no signer" else policy)))
    lock = Path("tychoreg.lock")
    if change == "tampered digest":
        digest = str(packages()["b"]["statement_sha256"])
        lock.write_text(lock.read_text().replace(digest, "0" * 64))
    if change == "signer removed":
        policy = ["--allowed-signers", str(allowed_signers(
            Path("bob-only"), ("bob@example.com", keys.bob, "")))]
    result = s3_registry.cli("pull-list", "--locked", *policy)
    assert result.exit_code == 3, result.output
    assert {"no signer": "records no signer", "tampered digest": "lock was changed",
            "signer removed": "do not allow", "station": "tycho-station"}[change] \
        in result.stderr
    assert not Path(OUT).exists()


def test_a_sig_gone_after_locking_refuses_the_download(s3_registry: Registry,
                                                       keys: Keys) -> None:
    signed_pair(s3_registry, keys)
    policy = ["--allowed-signers", str(keys.allowed)]
    ok(s3_registry.cli("lock", "a", "b", *policy))
    remove_object(s3_registry, signature_key("b", "1.0"))
    result = s3_registry.cli("pull-list", "--locked", *policy)
    assert result.exit_code == 3, result.output
    assert "b 1.0 is not signed" in result.stderr
    assert Path(OUT, "a.bin").exists() and not Path(OUT, "b.bin").exists()
    result = s3_registry.cli("lock", "--check", *policy)
    assert result.exit_code == 3 and "b 1.0 is not signed" in result.stderr
