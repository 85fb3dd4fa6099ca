"""The read side of signed versions, on every backend: a pull under allowed signers
takes only what an allowed key signed (signatures made by ``ssh-keygen -Y sign``, so
our verifier is checked against OpenSSH's signer), and refuses, before a byte is
written, what an attacker with write access but no key can do to the bucket."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tycho_async.layout import record_key, signature_key, version_key

from .signing import Keys, sign_by_hand
from .support import Registry, ok, write_file

OUT = Path("tycho_packages")


def signed(registry: Registry, keys: Keys, version: str = "1.0", seed: int = 0,
           *signers: Path) -> bytes:
    """pkg VERSION pushed (and promoted) and signed by hand, by alice unless told."""
    registry.write_config()
    data = write_file(Path("f.bin"), 3000, seed=seed)
    ok(registry.cli("push", "pkg", version, "f.bin", "--promote-latest"))
    sign_by_hand(registry, "pkg", version, *(signers or (keys.alice,)))
    return data


def pull(registry: Registry, keys: Keys, *args: str, policy: Path | None = None) -> Any:
    return registry.cli("pull", "pkg", *args, "--allowed-signers",
                        str(policy or keys.allowed))


def refused(result: Any, *words: str) -> None:
    """Exit 3, the reason given, nothing at the destination."""
    assert result.exit_code == 3, result.output
    for word in words:
        assert word in result.output
    assert not (OUT / "f.bin").exists()


def test_a_version_signed_by_an_allowed_key_is_pulled_and_names_its_signer(
        registry: Registry, keys: Keys) -> None:
    data = signed(registry, keys)
    result = ok(pull(registry, keys, "--json"))
    assert json.loads(result.stdout)["signed_by"] == "alice@example.com"
    assert (OUT / "f.bin").read_bytes() == data
    again = ok(pull(registry, keys))  # current: skipped, the signature still checked
    assert "up to date" in again.output and "signed by alice@example.com" in again.output
    ok(registry.cli("pull", "pkg", "--force"))  # no policy: no signature asked for


def test_an_attacker_who_rewrites_object_record_and_copy_is_refused(
        registry: Registry, keys: Keys) -> None:
    signed(registry, keys)
    evil = b"evil bytes" * 100
    digest = hashlib.sha256(evil).hexdigest()
    registry.put(version_key("pkg", "1.0"), evil)
    record = json.loads(registry.get(record_key("pkg", "1.0")) or b"")
    record.update(sha256=digest, size=len(evil))
    registry.put(record_key("pkg", "1.0"), json.dumps(record).encode())
    meta = registry.meta("pkg")
    meta["tychoreg"]["records"]["1.0"].update(sha256=digest, size=len(evil))
    registry.put("pkg/tycho.json", json.dumps(meta).encode())
    refused(pull(registry, keys), "another sha256")
    ok(registry.cli("pull", "pkg"))  # what the policy stops: every checksum agrees
    assert (OUT / "f.bin").read_bytes() == evil


def test_a_signature_copied_from_another_version_is_refused(registry: Registry,
                                                            keys: Keys) -> None:
    signed(registry, keys)
    ok(registry.cli("push", "pkg", "2.0", "f.bin", "--promote-latest"))
    registry.put(signature_key("pkg", "2.0"), registry.get(signature_key("pkg", "1.0")) or b"")
    refused(pull(registry, keys), "another version")
    refused(pull(registry, keys, "--version", "2.0"), "another version")


def test_a_deleted_signature_is_refused_under_the_policy_only(registry: Registry,
                                                              keys: Keys) -> None:
    data = signed(registry, keys)
    if registry.kind == "s3":
        from .support import remove_object

        remove_object(registry, signature_key("pkg", "1.0"))
    else:
        Path(registry.root, signature_key("pkg", "1.0")).unlink()
    refused(pull(registry, keys), "is not signed")
    ok(registry.cli("pull", "pkg"))
    assert (OUT / "f.bin").read_bytes() == data
    checked = ok(registry.cli("verify", "pkg"))
    assert "unsigned" in checked.output


@pytest.mark.parametrize("who", ["eve", "expired", "namespace"])
def test_a_signature_the_file_does_not_allow_is_refused(registry: Registry, keys: Keys,
                                                        who: str) -> None:
    registry.write_config()
    write_file(Path("f.bin"), 3000)
    ok(registry.cli("push", "pkg", "1.0", "f.bin", "--promote-latest"))
    if who == "namespace":  # alice's key, but a signature made for git
        sign_by_hand(registry, "pkg", "1.0", keys.alice, namespace="git")
        refused(pull(registry, keys), "namespace")
    else:
        sign_by_hand(registry, "pkg", "1.0", getattr(keys, who))
        refused(pull(registry, keys), "not in" if who == "eve" else "expired")


@pytest.mark.parametrize("line", ["not a line", "a@x cert-authority ssh-ed25519 AAAA"])
def test_an_unusable_allowed_signers_file_is_a_usage_error(registry: Registry, keys: Keys,
                                                           tmp_path: Path, line: str) -> None:
    signed(registry, keys)
    policy = tmp_path / "allowed"
    policy.write_text(line + "\n")
    result = pull(registry, keys, policy=policy)
    assert result.exit_code == 2, result.output
    assert f"{policy}:1" in result.output
    assert not OUT.exists()


def test_fallback_passes_over_unsigned_versions_under_the_policy(registry: Registry,
                                                                 keys: Keys) -> None:
    signed(registry, keys, "1.0")
    ok(registry.cli("push", "pkg", "1.1", "f.bin"))  # newer, unsigned
    result = ok(pull(registry, keys, "--version", "1.2", "--fallback", "1.", "--json"))
    assert json.loads(result.stdout)["version"] == "1.0"
    plain = ok(registry.cli("pull", "pkg", "--version", "1.2", "--fallback", "1.", "--json",
                            "--force"))
    assert json.loads(plain.stdout)["version"] == "1.1"


def test_pull_list_refuses_the_unsigned_item_and_pulls_the_others(registry: Registry,
                                                                  keys: Keys) -> None:
    signed(registry, keys)
    write_file(Path("g.bin"), 100)
    ok(registry.cli("push", "other", "1.0", "g.bin", "--promote-latest"))
    result = registry.cli("pull-list", "pkg", "other", "--allowed-signers",
                          str(keys.allowed), "--json")
    assert result.exit_code == 3, result.output
    items = {i["package"]: i for i in json.loads(result.stdout)["items"]}
    assert items["pkg"]["signed_by"] == "alice@example.com"
    assert items["other"]["exit_code"] == 3 and "not signed" in items["other"]["error"]
    assert (OUT / "f.bin").exists() and not (OUT / "g.bin").exists()


def test_verify_show_and_list_versions_report_the_signers(registry: Registry,
                                                          keys: Keys) -> None:
    signed(registry, keys, "1.0", 0, keys.alice, keys.eve)
    ok(registry.cli("push", "pkg", "2.0", "f.bin"))
    plain = json.loads(ok(registry.cli("verify", "pkg", "--version", "1.0",
                                       "--json")).stdout)
    assert [(s["principal_hint"], s["valid"], s["principal"]) for s in plain["signatures"]] \
        == [("alice", True, None), ("eve", True, None)]
    policed = ok(registry.cli("verify", "pkg", "--version", "1.0", "--allowed-signers",
                              str(keys.allowed)))
    assert "allowed as alice@example.com" in policed.output
    assert "not allowed" in policed.output  # eve's
    refused(registry.cli("verify", "pkg", "--version", "2.0", "--allowed-signers",
                         str(keys.allowed)), "not signed")
    shown = json.loads(ok(registry.cli("show", "pkg", "--version", "1.0", "--json",
                                       "--allowed-signers", str(keys.allowed))).stdout)
    assert shown["version"]["signed_by"] == "alice@example.com"
    assert len(shown["version"]["signatures"]) == 2
    listed = json.loads(ok(registry.cli("list-versions", "pkg", "--json")).stdout)
    assert [(v["version"], v["signed"]) for v in listed["versions"]] == [
        ("1.0", True), ("2.0", False)]
    policed_list = json.loads(ok(registry.cli("list-versions", "pkg", "--json",
                                              "--allowed-signers", str(keys.allowed))).stdout)
    assert [v["signed_by"] for v in policed_list["versions"]] == ["alice@example.com", None]
