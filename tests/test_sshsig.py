"""SSH signatures against the reference: ours verify with ssh-keygen, its verify with ours;
allowed_signers read as ssh-keygen reads it."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.errors import PassphraseNeeded, SignatureError, SignersFileError, SigningKeyError
from tycho_async.sshsig import AllowedSigners, PublicKey, SigningKey, verify

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                      reason="ssh-keygen (OpenSSH) is not installed")
KEYS = {"ed25519": ["-t", "ed25519"], "ecdsa": ["-t", "ecdsa"],
        "ecdsa521": ["-t", "ecdsa", "-b", "521"], "rsa": ["-t", "rsa", "-b", "2048"]}
MESSAGE = b"tycho.json of pkg 1.0\n"


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key of each type (and one with a passphrase), made once by ssh-keygen."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    d = tmp_path_factory.mktemp("keys")
    for name, args in [*KEYS.items(), ("locked", ["-t", "ed25519"])]:
        subprocess.run(["ssh-keygen", "-q", *args, "-C", f"{name}@test", "-N",
                        "secret" if name == "locked" else "", "-f", str(d / name)], check=True)
    (d / "allowed_signers").write_text("".join(
        f"{name}@example.com {(d / f'{name}.pub').read_text()}" for name in KEYS))
    return d


def keygen(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ssh-keygen", *args], input=stdin, capture_output=True)


@needs_ssh_keygen
@pytest.mark.parametrize("name", KEYS)
def test_ssh_keygen_verifies_ours(keydir: Path, name: str, tmp_path: Path) -> None:
    sig = tmp_path / "msg.sig"
    sig.write_text(SigningKey.load(keydir / name).sign(MESSAGE))
    ok = keygen("-Y", "verify", "-f", str(keydir / "allowed_signers"), "-I",
                f"{name}@example.com", "-n", "tychoreg", "-s", str(sig), stdin=MESSAGE)
    assert ok.returncode == 0, ok.stderr


@needs_ssh_keygen
@pytest.mark.parametrize("name", KEYS)
def test_we_verify_ssh_keygen(keydir: Path, name: str, tmp_path: Path) -> None:
    msg = tmp_path / "msg"
    msg.write_bytes(MESSAGE)
    made = keygen("-Y", "sign", "-f", str(keydir / name), "-n", "tychoreg", str(msg))
    assert made.returncode == 0, made.stderr
    armored = (tmp_path / "msg.sig").read_text()
    key = verify(armored, MESSAGE)
    assert key == PublicKey.parse((keydir / f"{name}.pub").read_text())
    signers = AllowedSigners.load(keydir / "allowed_signers")
    assert signers.principal_for(key) == f"{name}@example.com"
    with pytest.raises(SignatureError, match="does not verify"):
        verify(armored, MESSAGE + b"x")
    with pytest.raises(SignatureError, match="wrong namespace 'tychoreg'"):
        verify(armored, MESSAGE, namespace="git")
    (tmp_path / "msg.sig").unlink()
    made = keygen("-Y", "sign", "-O", "hashalg=sha256", "-f", str(keydir / name), "-n",
                  "tychoreg", str(msg))
    assert made.returncode == 0, made.stderr
    assert verify((tmp_path / "msg.sig").read_text(), MESSAGE) == key


@needs_ssh_keygen
def test_other_namespace_and_tampering(keydir: Path, tmp_path: Path) -> None:
    msg = tmp_path / "msg"
    msg.write_bytes(MESSAGE)
    assert keygen("-Y", "sign", "-f", str(keydir / "ed25519"), "-n", "git",
                  str(msg)).returncode == 0
    with pytest.raises(SignatureError, match="wrong namespace 'git'"):
        verify((tmp_path / "msg.sig").read_text(), MESSAGE)
    armored = SigningKey.load(keydir / "ed25519").sign(MESSAGE)
    lines = armored.splitlines()
    assert all(len(line) <= 70 for line in lines) and armored.endswith("\n")
    blob = bytearray(base64.b64decode("".join(lines[1:-1])))
    for at in (0, 20, len(blob) - 5):  # magic, key, signature
        flipped = bytearray(blob)
        flipped[at] ^= 1
        text = "\n".join([lines[0], base64.b64encode(bytes(flipped)).decode(), lines[-1]])
        with pytest.raises(SignatureError):
            verify(text, MESSAGE)
    trailing = "\n".join([lines[0], base64.b64encode(bytes(blob) + b"\0").decode(), lines[-1]])
    with pytest.raises(SignatureError, match="trailing"):
        verify(trailing, MESSAGE)
    with pytest.raises(SignatureError, match="not an armored"):
        verify("hello", MESSAGE)


@needs_ssh_keygen
def test_passphrase(keydir: Path, tmp_path: Path) -> None:
    key = SigningKey.load(keydir / "locked", b"secret")
    assert verify(key.sign(MESSAGE), MESSAGE) == key.public
    with pytest.raises(PassphraseNeeded, match="locked"):
        SigningKey.load(keydir / "locked")
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        SigningKey.load(keydir / "locked", b"guess")
    shutil.copy(keydir / "ecdsa", tmp_path / "pem")
    assert keygen("-p", "-m", "PEM", "-P", "", "-N", "", "-f", str(tmp_path / "pem")
                  ).returncode == 0
    assert "BEGIN EC PRIVATE KEY" in (tmp_path / "pem").read_text()
    assert SigningKey.load(tmp_path / "pem").public == SigningKey.load(keydir / "ecdsa").public
    (tmp_path / "junk").write_text("not a key\n")
    with pytest.raises(SigningKeyError, match="junk"):
        SigningKey.load(tmp_path / "junk")
    with pytest.raises(SigningKeyError, match="missing"):
        SigningKey.load(tmp_path / "missing")


@needs_ssh_keygen
def test_fingerprint_as_ssh_keygen_prints(keydir: Path) -> None:
    shown = keygen("-l", "-f", str(keydir / "rsa.pub")).stdout.decode().split()[1]
    assert PublicKey.parse((keydir / "rsa.pub").read_text()).fingerprint == shown


@needs_ssh_keygen
def test_allowed_signers_options(keydir: Path, tmp_path: Path) -> None:
    pub = (keydir / "ed25519.pub").read_text().strip()
    key = PublicKey.parse(pub)
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    text = (f"# a comment\n\n"
            f'old@x valid-before="20260101Z" {pub}\n'
            f'git@x NAMESPACES="git,file" {pub}\n'
            f'a@x,b@x namespaces="tycho*",valid-after="20260501Z" {pub}\n')
    signers = AllowedSigners.parse(text, "signers")
    assert signers.principal_for(key, now=now) == "a@x,b@x"
    assert signers.principal_for(key, "git", now=now) == "git@x"
    assert signers.principal_for(key, now=now - timedelta(days=60)) is None
    early = AllowedSigners.parse(f'a@x valid-after="20300101" {pub}\n', "f")
    assert early.why_not(key) == f"key {key.fingerprint} is not valid before 2030-01-01"
    assert signers.allows("a@x,b@x", now=now) and not signers.allows("old@x", now=now)
    assert signers.allows("old@x", now=datetime(2025, 12, 1, tzinfo=timezone.utc))
    expired = AllowedSigners.parse(f'old@x valid-before="202601011200Z" {pub}\n', "f")
    assert "has expired (valid-before 2026-01-01 12:00:00)" in expired.why_not(key, now=now)
    quoted = AllowedSigners.parse(f'q@x namespaces="a\\"b,tychoreg" {pub} a comment\n', "f")
    assert quoted.principal_for(key) == "q@x" and quoted.principal_for(key, 'a"b') == "q@x"
    only_git = AllowedSigners.parse(f'g@x namespaces="git" {pub}\n', "f")
    assert only_git.why_not(key) == f"key {key.fingerprint} is not allowed for namespace tychoreg"
    other = PublicKey.parse((keydir / "rsa.pub").read_text())
    assert signers.why_not(other) == f"key {other.fingerprint} is not in signers"


@needs_ssh_keygen
@pytest.mark.parametrize("line, why", [
    ("a@x cert-authority {pub}", "cert-authority is not supported"),
    ("a@x", "missing key"),
    ("a@x ssh-ed25519 AAAA", "not a usable"),
    ('a@x namespaces=git {pub}', "invalid option"),
    ('a@x colour="red" {pub}', "unknown option 'colour'"),
    ('a@x valid-after="2026" {pub}', "invalid time"),
    ('a@x valid-after="20270101",valid-before="20260101" {pub}', "not after"),
    ('a@x namespaces="a",namespaces="b" {pub}', "twice"),
])
def test_malformed_lines(keydir: Path, line: str, why: str) -> None:
    pub = (keydir / "ed25519.pub").read_text().strip()
    with pytest.raises(SignersFileError, match=f"^signers:2: .*{why}"):
        AllowedSigners.parse("# ok\n" + line.format(pub=pub) + "\n", "signers")


def test_unreadable_signers_file(tmp_path: Path) -> None:
    (tmp_path / "latin1").write_bytes(b"caf\xe9 ssh-ed25519 AAAA\n")
    with pytest.raises(SignersFileError, match="not UTF-8"):
        AllowedSigners.load(tmp_path / "latin1")
    with pytest.raises(SignersFileError, match="cannot read"):
        AllowedSigners.load(tmp_path / "absent")


@needs_ssh_keygen
@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=2000))
def test_round_trip(keydir: Path, message: bytes) -> None:
    key = SigningKey.load(keydir / "ecdsa")
    assert verify(key.sign(message), message) == key.public


@needs_ssh_keygen
def test_certificate_in_envelope_refused(keydir: Path, tmp_path: Path) -> None:
    shutil.copy(keydir / "ed25519.pub", tmp_path / "k.pub")
    assert keygen("-s", str(keydir / "ecdsa"), "-I", "id", str(tmp_path / "k.pub")
                  ).returncode == 0
    cert = base64.b64decode((tmp_path / "k-cert.pub").read_text().split()[1])
    lines = SigningKey.load(keydir / "ed25519").sign(MESSAGE).splitlines()
    blob = base64.b64decode("".join(lines[1:-1]))
    key_len = int.from_bytes(blob[10:14], "big")
    forged = blob[:10] + len(cert).to_bytes(4, "big") + cert + blob[14 + key_len:]
    text = "\n".join([lines[0], base64.b64encode(forged).decode(), lines[-1]])
    with pytest.raises(SignatureError, match=r"^certificates are not supported$"):
        verify(text, MESSAGE)
    with pytest.raises(ValueError, match="certificates"):
        PublicKey.parse((tmp_path / "k-cert.pub").read_text())
