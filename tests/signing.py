"""What the signing tests share: SSH keys made by ``ssh-keygen`` (the independent
implementation every test is checked against), allowed_signers files, and a version
signed by hand (its statement signed by ``ssh-keygen -Y sign`` and written as its
``.sig`` with the raw API), so that the read side is tested without our signer."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tycho_async.layout import PackageMeta, Record, record_key, signature_key
from tycho_async.statement import Statement

from .support import Registry

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(
    SSH_KEYGEN is None, reason="ssh-keygen (OpenSSH) is not installed: the signatures are "
    "checked against it, both ways")
NAMESPACE = "tychoreg"


def make_key(folder: Path, name: str, kind: str = "ed25519", passphrase: str = "",
             comment: str | None = None) -> Path:
    """A new private key (and its .pub beside it), made by ssh-keygen."""
    assert SSH_KEYGEN is not None
    path = folder / name
    extra = ["-b", "3072"] if kind == "rsa" else []
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, *extra, "-N", passphrase, "-C",
                    comment or f"{name}@example.com", "-f", str(path)], check=True,
                   timeout=60)
    return path


def public(key: Path) -> str:
    """The key's public line without its comment: "ssh-ed25519 AAAA..."."""
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


def allowed_signers(path: Path, *lines: tuple[str, Path, str]) -> Path:
    """An allowed_signers file of (principal, key, options) lines (options "" for none)."""
    path.write_text("".join(f"{principal} {options + ' ' if options else ''}{public(key)}\n"
                            for principal, key, options in lines))
    return path


def ssh_sign(key: Path, data: bytes, namespace: str = NAMESPACE) -> str:
    """``ssh-keygen -Y sign`` of ``data``: the armored signature."""
    assert SSH_KEYGEN is not None
    message = key.with_name(key.name + ".msg")
    message.write_bytes(data)
    subprocess.run([SSH_KEYGEN, "-q", "-Y", "sign", "-f", str(key), "-n", namespace,
                    str(message)], check=True, timeout=60, capture_output=True)
    signature = message.with_name(message.name + ".sig")
    text = signature.read_text()
    message.unlink()
    signature.unlink()
    return text


def ssh_verify(allowed: Path, principal: str, statement: bytes, signature: str,
               folder: Path, namespace: str = NAMESPACE) -> subprocess.CompletedProcess[bytes]:
    """``ssh-keygen -Y verify -f ALLOWED -I PRINCIPAL -n NAMESPACE -s SIG < STATEMENT``."""
    assert SSH_KEYGEN is not None
    sig = folder / "check.sig"
    sig.write_text(signature)
    return subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(allowed), "-I", principal,
                           "-n", namespace, "-s", str(sig)], input=statement,
                          capture_output=True, timeout=60)


def statement_of(registry: Registry, package: str, version: str) -> Statement:
    """The statement a version's record and its package's localname make."""
    data = registry.get(record_key(package, version))
    assert data is not None
    meta = registry.get(f"{package}/tycho.json")
    assert meta is not None
    localname = PackageMeta.parse(package, meta).localname
    assert localname is not None
    return Statement.of(package, version, localname, Record.load(package, version, data))


def sign_by_hand(registry: Registry, package: str, version: str, *keys: Path,
                 namespace: str = NAMESPACE, statement: Statement | None = None) -> str:
    """Sign a version with ssh-keygen and write its ``.sig`` raw; the statement's text."""
    statement = statement or statement_of(registry, package, version)
    signatures = [{"signature": ssh_sign(key, statement.data(), namespace),
                   "principal_hint": key.name} for key in keys]
    registry.put(signature_key(package, version), json.dumps(
        {"statement": statement.text(), "signatures": signatures}).encode())
    return statement.text()


@dataclass(frozen=True)
class Keys:
    """Keys made once per session: ``alice`` and ``bob`` allowed (``allowed``), ``eve``
    not; ``expired`` allowed only until 2001; ``locked`` an encrypted key (passphrase
    ``secret``), allowed as locked@example.com."""

    folder: Path
    alice: Path
    bob: Path
    eve: Path
    expired: Path
    locked: Path
    allowed: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    if SSH_KEYGEN is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed: the signatures are checked "
                    "against it, both ways")
    folder = tmp_path_factory.mktemp("keys")
    alice, bob, eve = (make_key(folder, name) for name in ("alice", "bob", "eve"))
    expired = make_key(folder, "expired", "ecdsa")
    locked = make_key(folder, "locked", passphrase="secret")
    allowed = allowed_signers(folder / "allowed_signers",
                              ("alice@example.com", alice, ""),
                              ("bob@example.com", bob, 'namespaces="tychoreg"'),
                              ("expired@example.com", expired, 'valid-before="20010101"'),
                              ("locked@example.com", locked, ""))
    yield Keys(folder, alice, bob, eve, expired, locked, allowed)
