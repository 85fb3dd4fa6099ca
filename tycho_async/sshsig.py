"""SSH signatures (openssh PROTOCOL.sshsig) and ssh-keygen's allowed_signers file.

Pure: bytes and text in, keys and verdicts out. ``cryptography`` does the key math; the
envelope (blob and armor) is written here to the spec, so a signature made here verifies
with ``ssh-keygen -Y verify`` and one made by ``ssh-keygen -Y sign`` verifies here.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from .errors import PassphraseNeeded, SignatureError, SignersFileError, SigningKeyError

NAMESPACE = "tychoreg"
_MAGIC = b"SSHSIG"
_BEGIN, _END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
_CURVES: dict[str, hashes.HashAlgorithm] = {  # ECDSA key type -> the hash RFC 5656 ties to it
    "ecdsa-sha2-nistp256": hashes.SHA256(), "ecdsa-sha2-nistp384": hashes.SHA384(),
    "ecdsa-sha2-nistp521": hashes.SHA512()}
_RSA_SIGS: dict[str, hashes.HashAlgorithm] = {"rsa-sha2-512": hashes.SHA512(),
                                              "rsa-sha2-256": hashes.SHA256()}
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_CERT = "-cert-v01@openssh.com"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(n: int) -> bytes:
    return _string(n.to_bytes(n.bit_length() // 8 + 1, "big") if n else b"")


class _Reader:
    """SSH wire fields read strictly: a short field is a ValueError, never a short read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def string(self) -> bytes:
        return self.take(struct.unpack(">I", self.take(4))[0])

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


@dataclass(frozen=True, eq=False)
class PublicKey:
    """An SSH public key, equal to another by its (canonical) wire encoding."""

    blob: bytes
    key_type: str

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode()
        return "SHA256:" + digest.rstrip("=")

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """``keytype base64 [comment]``, checked by loading it, so a bad key fails here."""
        fields = text.split()
        if len(fields) < 2:
            raise ValueError("expected 'keytype base64'")
        if fields[0].endswith(_CERT):
            raise ValueError("certificates are not supported")
        try:
            blob = base64.b64decode(fields[1], validate=True)
            if _Reader(blob).string() != fields[0].encode():
                raise ValueError(f"key type {fields[0]} does not match its key")
            return cls._of(serialization.load_ssh_public_key(f"{fields[0]} {fields[1]}".encode()))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a usable {fields[0]} key: {exc}") from exc

    @classmethod
    def _of(cls, key: Any) -> PublicKey:
        """The canonical encoding, so two spellings of one key compare equal."""
        if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey,
                                rsa.RSAPublicKey)):
            raise ValueError(f"unsupported key type {type(key).__name__}")
        line = key.public_bytes(serialization.Encoding.OpenSSH,
                                serialization.PublicFormat.OpenSSH).decode()
        key_type, b64 = line.split()[:2]
        return cls(base64.b64decode(b64), key_type)

    def openssh(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    def _crypto(self) -> Any:
        return serialization.load_ssh_public_key(self.openssh().encode())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)


def _signed_data(namespace: str, reserved: bytes, hash_name: str, message: bytes) -> bytes:
    """What the key signs (spec section 3): never the message itself, so an SSH login
    signature can never pass as a file signature, nor one namespace's as another's."""
    return (_MAGIC + _string(namespace.encode()) + _string(reserved)
            + _string(hash_name.encode()) + _string(_HASHES[hash_name](message).digest()))


@dataclass(frozen=True)
class SigningKey:
    """A private key loaded from its file, with the public half that verifiers will see."""

    public: PublicKey
    _key: Any

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> SigningKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from exc
        pem = b"-----BEGIN OPENSSH PRIVATE KEY-----" not in data
        loader = serialization.load_pem_private_key if pem else \
            serialization.load_ssh_private_key
        try:
            try:
                key = loader(data, passphrase)
            except TypeError:  # cryptography's word for "encrypted" / "not encrypted"
                if passphrase is None:
                    raise PassphraseNeeded(f"signing key {path} is encrypted: a passphrase "
                                           "is needed") from None
                key = loader(data, None)  # a passphrase for a plain key is ignored, as by ssh
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            why = "wrong passphrase" if passphrase is not None and "checksum" in str(exc) \
                else str(exc)
            raise SigningKeyError(f"cannot use signing key {path}: {why}") from exc
        try:
            return cls(PublicKey._of(key.public_key()), key)
        except ValueError as exc:
            raise SigningKeyError(f"cannot use signing key {path}: {exc}") from exc

    def sign(self, message: bytes, namespace: str = NAMESPACE) -> str:
        """The armored signature, as ``ssh-keygen -Y sign`` writes it (sha512, 70 columns)."""
        data = _signed_data(namespace, b"", "sha512", message)
        key_type = self.public.key_type
        if key_type in _CURVES:
            der = self._key.sign(data, ec.ECDSA(_CURVES[key_type]))
            r, s = utils.decode_dss_signature(der)
            sig = _string(key_type.encode()) + _string(_mpint(r) + _mpint(s))
        elif key_type == "ssh-rsa":
            raw = self._key.sign(data, padding.PKCS1v15(), hashes.SHA512())
            sig = _string(b"rsa-sha2-512") + _string(raw)
        else:
            sig = _string(key_type.encode()) + _string(self._key.sign(data))
        blob = (_MAGIC + struct.pack(">I", 1) + _string(self.public.blob)
                + _string(namespace.encode()) + _string(b"") + _string(b"sha512")
                + _string(sig))
        b64 = base64.b64encode(blob).decode()
        lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
        return "\n".join([_BEGIN, *lines, _END]) + "\n"


def verify(armored: str, message: bytes, namespace: str = NAMESPACE) -> PublicKey:
    """The key that signed ``message`` in ``namespace``; whether to trust it is the
    caller's question (AllowedSigners)."""
    try:
        return _verify(armored, message, namespace)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"malformed signature: {exc}") from exc


def _verify(armored: str, message: bytes, namespace: str) -> PublicKey:
    lines = armored.replace("\r\n", "\n").strip("\n").split("\n")
    if len(lines) < 3 or lines[0] != _BEGIN or lines[-1] != _END:
        raise ValueError("not an armored SSH signature")
    blob = _Reader(base64.b64decode("".join(lines[1:-1]), validate=True))
    if blob.take(6) != _MAGIC or struct.unpack(">I", blob.take(4))[0] != 1:
        raise ValueError("not an SSHSIG version 1 blob")
    key_blob, ns, reserved, hash_name, sig = (blob.string() for _ in range(5))
    blob.end()
    key_type = _Reader(key_blob).string().decode("ascii", "replace")
    if key_type.endswith(_CERT):
        raise SignatureError("certificates are not supported")
    if not namespace or ns != namespace.encode():
        raise SignatureError(f"wrong namespace {ns.decode('utf-8', 'replace')!r}")
    if hash_name.decode("ascii", "replace") not in _HASHES:
        raise SignatureError(f"unsupported hash {hash_name.decode('ascii', 'replace')!r}")
    key = PublicKey.parse(f"{key_type} {base64.b64encode(key_blob).decode()}")
    sig_reader = _Reader(sig)
    sig_type, raw = sig_reader.string().decode("ascii", "replace"), sig_reader.string()
    sig_reader.end()
    data = _signed_data(namespace, reserved, hash_name.decode(), message)
    crypto = key._crypto()
    try:
        if key_type in _CURVES and sig_type == key_type:
            point = _Reader(raw)
            r, s = point.mpint(), point.mpint()
            point.end()
            crypto.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(_CURVES[key_type]))
        elif key_type == "ssh-rsa" and sig_type in _RSA_SIGS:
            crypto.verify(raw, data, padding.PKCS1v15(), _RSA_SIGS[sig_type])
        elif key_type == "ssh-ed25519" and sig_type == key_type:
            crypto.verify(raw, data)
        else:
            raise SignatureError(f"signature type {sig_type} is not allowed for {key_type}")
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify: the data or the signature "
                             "was changed") from exc
    return key


def _matches(text: str, patterns: str) -> bool:
    """ssh's match_pattern_list: comma-separated ``*``/``?`` patterns, ``!`` negates."""
    found = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                        for c in pattern[negated:])
        if re.fullmatch(regex, text, re.DOTALL):
            if negated:
                return False
            found = True
    return found


def _timestamp(text: str) -> datetime:
    """YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]; without Z local time, as ssh-keygen reads it."""
    m = re.fullmatch(r"(\d{8})(\d{4}(\d{2})?)?([Zz]?)", text)
    if not m:
        raise ValueError(f"invalid time {text!r}")
    digits = (m[1] + (m[2] or "0000") + ("" if m[3] else "00"))
    when = datetime.strptime(digits, "%Y%m%d%H%M%S")
    return when.replace(tzinfo=timezone.utc) if m[4] else when.astimezone()


def _show(when: datetime) -> str:
    return when.strftime("%Y-%m-%d" if when.time() == datetime.min.time()
                         else "%Y-%m-%d %H:%M:%S")


_KEY_START = re.compile(r"(ssh|ecdsa|sk)-\S+\s")
_OPTION = re.compile(r'([A-Za-z-]+)(?:="((?:[^"\\]|\\"|\\)*)")?')  # \" only, as opt_dequote


@dataclass(frozen=True)
class _Signer:
    principals: str
    key: PublicKey
    namespaces: str | None
    valid_after: datetime | None
    valid_before: datetime | None

    def refusal(self, namespace: str, now: datetime) -> str | None:
        """Why this line does not vouch for a signature now, or None if it does."""
        if self.namespaces is not None and not _matches(namespace, self.namespaces):
            return f"is not allowed for namespace {namespace}"
        if self.valid_after is not None and now < self.valid_after:
            return f"is not valid before {_show(self.valid_after)}"
        if self.valid_before is not None and now > self.valid_before:
            return f"has expired (valid-before {_show(self.valid_before)})"
        return None


def _parse_line(line: str) -> _Signer:
    principals, *tail = line.split(None, 1)
    rest = tail[0].strip() if tail else ""
    if not rest:
        raise ValueError("missing key")
    options: dict[str, str] = {}
    if not _KEY_START.match(rest + " "):
        pos = 0
        while True:
            m = _OPTION.match(rest, pos)
            if not m:
                raise ValueError(f"invalid options at {rest[pos:pos + 20]!r}")
            name = m[1].lower()
            if name == "cert-authority":
                raise ValueError("cert-authority is not supported (list signer keys instead)")
            if name not in ("namespaces", "valid-after", "valid-before"):
                raise ValueError(f"unknown option {m[1]!r}")
            if m[2] is None:
                raise ValueError(f'invalid option: {name} needs a quoted value ({name}="...")')
            if name in options:
                raise ValueError(f"option {name} given twice")
            options[name] = m[2].replace('\\"', '"')
            pos = m.end()
            if rest[pos:pos + 1] != ",":
                break
            pos += 1
        if rest[pos:pos + 1] not in (" ", "\t"):
            raise ValueError("invalid options" if pos < len(rest) else "missing key")
        rest = rest[pos:]
    after, before = (_timestamp(options[k]) if k in options else None
                     for k in ("valid-after", "valid-before"))
    if after and before and before <= after:
        raise ValueError("valid-before is not after valid-after")
    return _Signer(principals, PublicKey.parse(rest), options.get("namespaces"), after, before)


class AllowedSigners:
    """Who may sign: ssh-keygen's allowed_signers format, read-only, without CAs."""

    def __init__(self, signers: list[_Signer], source: str) -> None:
        self._signers, self.source = signers, source

    @classmethod
    def parse(cls, text: str, source: str) -> AllowedSigners:
        signers = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    signers.append(_parse_line(line))
                except ValueError as exc:
                    raise SignersFileError(f"{source}:{lineno}: {exc}") from exc
        return cls(signers, source)

    @classmethod
    def load(cls, path: Path) -> AllowedSigners:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SignersFileError(f"cannot read allowed signers {path}: {exc.strerror}"
                                   ) from exc
        except UnicodeDecodeError as exc:
            raise SignersFileError(f"allowed signers {path} is not UTF-8") from exc
        return cls.parse(text, str(path))

    def principal_for(self, key: PublicKey, namespace: str = NAMESPACE,
                      now: datetime | None = None) -> str | None:
        when = _now(now)
        return next((s.principals for s in self._signers
                     if s.key == key and s.refusal(namespace, when) is None), None)

    def why_not(self, key: PublicKey, namespace: str = NAMESPACE,
                now: datetime | None = None) -> str:
        when = _now(now)
        reasons = [s.refusal(namespace, when) for s in self._signers if s.key == key]
        if not reasons:
            return f"key {key.fingerprint} is not in {self.source}"
        return f"key {key.fingerprint} {next((r for r in reasons if r), 'is allowed')}"

    def allows(self, principal: str, namespace: str = NAMESPACE,
               now: datetime | None = None) -> bool:
        when = _now(now)
        return any(s.principals == principal and s.refusal(namespace, when) is None
                   for s in self._signers)


def _now(now: datetime | None) -> datetime:
    """An aware time: a naive ``now`` is local time, as the file's times without Z are."""
    return datetime.now(timezone.utc) if now is None else now.astimezone()
