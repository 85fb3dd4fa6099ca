"""The write side of signed versions, on every backend: push --sign-key (the signature
written after the object and before the full record, checked by ``ssh-keygen -Y
verify``), encrypted keys, a push cut short before its signature and its repair,
``tychoreg sign`` (a second signer), and delete / prune taking the ``.sig`` with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from tycho_async.config import load_settings
from tycho_async.errors import StoreError, TransferError
from tycho_async.layout import record_key, signature_key, version_key
from tycho_async.registry import Registry as Reg
from tycho_async.registry.signing import Signer
from tycho_async.storage import open_store
from tycho_async.transfer import Engine

from .faults import FaultyStore
from .signing import Keys, ssh_verify, statement_of
from .support import Registry, dead_holder, ok, put_station, write_file


def sig_of(registry: Registry, package: str, version: str) -> dict[str, Any] | None:
    """The version's .sig as the raw API reads it."""
    data = registry.get(signature_key(package, version))
    return None if data is None else dict(json.loads(data))


def verified_by(registry: Registry, keys: Keys, package: str, version: str,
                principals: list[str], folder: Path) -> None:
    """Every signature of the version's .sig, checked by ``ssh-keygen -Y verify``
    against the statement its record makes, one principal each, in order."""
    sig = sig_of(registry, package, version)
    assert sig is not None
    statement = statement_of(registry, package, version)
    assert sig["statement"] == statement.text()
    assert len(sig["signatures"]) == len(principals)
    for principal, item in zip(principals, sig["signatures"], strict=True):
        checked = ssh_verify(keys.allowed, principal, statement.data(), item["signature"],
                             folder)
        assert checked.returncode == 0, checked.stderr


class SigFails(FaultyStore):
    """A store on which every write of a ``.sig`` fails: a push that dies between its
    object and its signature."""

    async def __aenter__(self) -> SigFails:
        await super().__aenter__()
        return self

    async def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                        if_match: str | None = None) -> str:
        if key.endswith(".sig"):
            raise StoreError("injected: the signature write failed")
        return await super().put_bytes(key, data, if_none_match=if_none_match,
                                       if_match=if_match)


def push_dying_before_sig(registry: Registry, keys: Keys) -> None:
    """pkg 1.0 pushed with alice's key through a store that refuses the .sig (after
    an unsigned 0.9): the push fails, leaving the object and a pending record that
    asked for a signature."""
    write_file(Path("f.bin"), 3000)
    ok(registry.cli("push", "pkg", "0.9", "f.bin"))  # the package exists: pulls look
    failed: list[TransferError] = []

    async def main() -> None:
        settings = load_settings(str(registry.workdir / ".tychoreg.json"), environment=False)
        async with open_store(settings.store) as store:
            reg = Reg(Engine(SigFails(store), settings.transfer), Path("tycho_packages"),
                      signer=Signer(keys.alice))
            try:
                await reg.push("pkg", "1.0", Path("f.bin"), promote=True)
            except TransferError as exc:
                failed.append(exc)

    anyio.run(main)
    assert failed and "--repair --sign-key PATH" in failed[0].message
    pending = json.loads(registry.get(record_key("pkg", "1.0")) or b"{}")
    assert pending["state"] == "pending" and pending["sign"] is True
    # the pushing process is gone (it is this one, which lives on: its holder says so)
    registry.put(record_key("pkg", "1.0"), json.dumps({**pending,
                                                       "holder": dead_holder()}).encode())
    assert registry.get(version_key("pkg", "1.0")) is not None
    assert registry.get(signature_key("pkg", "1.0")) is None


def test_signed_push_is_checked_by_ssh_keygen(registry: Registry, keys: Keys,
                                              tmp_path: Path) -> None:
    write_file(Path("f.bin"), 3000)
    line = ok(registry.cli("push", "pkg", "1.0", "f.bin", "--sign-key", str(keys.alice)))
    assert "signed by alice@example.com" in line.stdout
    verified_by(registry, keys, "pkg", "1.0", ["alice@example.com"], tmp_path)
    doc = json.loads(ok(registry.cli("push", "pkg", "2.0", "f.bin", "--json",
                                     "--sign-key", str(keys.bob))).stdout)
    assert doc["signed_by"] == "bob@example.com"
    verified_by(registry, keys, "pkg", "2.0", ["bob@example.com"], tmp_path)


def test_settings_key_signs_and_a_skipped_push_signs_nothing(
        registry: Registry, keys: Keys, monkeypatch: Any) -> None:
    write_file(Path("f.bin"), 3000)
    registry.write_config(signing_key=str(keys.alice))
    ok(registry.cli("push", "pkg", "1.0", "f.bin"))
    before = registry.get(signature_key("pkg", "1.0"))
    monkeypatch.setenv("TYCHOREG_SIGNING_KEY", str(keys.bob))
    doc = json.loads(ok(registry.cli("push", "pkg", "1.0", "f.bin", "--skip-existing",
                                     "--json")).stdout)
    assert doc["skipped"] and doc["signed_by"] is None
    assert registry.get(signature_key("pkg", "1.0")) == before


def test_encrypted_key_needs_its_passphrase(registry: Registry, keys: Keys,
                                            monkeypatch: Any) -> None:
    write_file(Path("f.bin"), 3000)
    key = str(keys.locked)
    missing = registry.cli("push", "pkg", "1.0", "f.bin", "--sign-key", key)
    assert missing.exit_code == 2 and "passphrase" in missing.stderr
    listed = registry.cli("push-list", "pkg 1.0 f.bin", "other 1.0 f.bin", "--sign-key", key)
    assert listed.exit_code == 2 and listed.stderr.count("passphrase") == 1
    monkeypatch.setenv("TYCHOREG_SIGNING_KEY_PASSPHRASE", "wrong")
    wrong = registry.cli("push", "pkg", "1.0", "f.bin", "--sign-key", key)
    assert wrong.exit_code == 2 and "passphrase" in wrong.stderr
    assert registry.object_keys() == []
    monkeypatch.setenv("TYCHOREG_SIGNING_KEY_PASSPHRASE", "secret")
    line = ok(registry.cli("push", "pkg", "1.0", "f.bin", "--sign-key", key))
    assert "signed by locked@example.com" in line.stdout


def test_push_cut_short_before_its_signature_is_repaired_signed(
        registry: Registry, keys: Keys, tmp_path: Path) -> None:
    push_dying_before_sig(registry, keys)
    refused = registry.cli("pull", "pkg", "--version", "1.0")
    assert refused.exit_code == 3 and "cut short" in refused.stderr
    repaired = ok(registry.cli("verify", "pkg", "--version", "1.0", "--repair",
                               "--sign-key", str(keys.alice)))
    assert "signed by alice@example.com" in repaired.stdout
    verified_by(registry, keys, "pkg", "1.0", ["alice@example.com"], tmp_path)


def test_repair_without_a_key_says_the_version_is_unsigned(registry: Registry,
                                                           keys: Keys) -> None:
    push_dying_before_sig(registry, keys)
    repaired = ok(registry.cli("verify", "pkg", "--version", "1.0", "--repair"))
    assert ("its push asked for a signature: it is unsigned, run 'tychoreg sign pkg 1.0 "
            "--sign-key PATH'") in repaired.stdout
    assert registry.get(signature_key("pkg", "1.0")) is None
    ok(registry.cli("pull", "pkg", "--version", "1.0"))


def test_sign_adds_a_second_signature(registry: Registry, keys: Keys,
                                      tmp_path: Path) -> None:
    write_file(Path("f.bin"), 3000)
    ok(registry.cli("push", "pkg", "1.0", "f.bin", "--sign-key", str(keys.alice)))
    line = ok(registry.cli("sign", "pkg", "1.0", "--sign-key", str(keys.bob)))
    assert "signed by bob@example.com" in line.stdout and "2 signatures" in line.stdout
    doc = json.loads(ok(registry.cli("sign", "pkg", "1.0", "--json", "--sign-key",
                                     str(keys.bob))).stdout)
    assert doc["signatures"] == 2 and doc["signed_by"] == "bob@example.com"
    verified_by(registry, keys, "pkg", "1.0", ["alice@example.com", "bob@example.com"],
                tmp_path)


def test_sign_refuses_what_it_cannot_vouch_for(registry: Registry, keys: Keys) -> None:
    write_file(Path("f.bin"), 3000)
    ok(registry.cli("push", "pkg", "1.0", "f.bin"))
    no_key = registry.cli("sign", "pkg", "1.0")
    assert no_key.exit_code == 2 and "--sign-key" in no_key.stderr
    missing = registry.cli("sign", "pkg", "9.9", "--sign-key", str(keys.alice))
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    registry.put(version_key("pkg", "1.0"), b"x" * 3000)  # rewritten: not what was recorded
    corrupt = registry.cli("sign", "pkg", "1.0", "--sign-key", str(keys.alice))
    assert corrupt.exit_code == 3
    put_station(registry, "old", {"1.0": b"station bytes"})
    station = registry.cli("sign", "old", "1.0", "--sign-key", str(keys.alice))
    assert station.exit_code == 1 and "tycho-station" in station.stderr
    assert not [k for k in registry.object_keys() if k.endswith(".sig")]


def test_delete_and_prune_take_the_signature_with_them(registry: Registry,
                                                       keys: Keys) -> None:
    write_file(Path("f.bin"), 3000)
    for version in ("1.0", "2.0", "3.0"):
        ok(registry.cli("push", "pkg", version, "f.bin", "--sign-key", str(keys.alice)))
    ok(registry.cli("delete", "pkg", "1.0"))
    ok(registry.cli("prune", "pkg", "--keep", "1"))
    registry.put(signature_key("pkg", "9.9"), b"{}")  # a .sig left without its version
    ok(registry.cli("delete", "pkg", "9.9"))
    assert [k for k in registry.object_keys() if k.endswith(".sig")] == ["pkg/tycho_3.0.sig"]
