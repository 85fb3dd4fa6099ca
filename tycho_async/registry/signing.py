"""Signed versions in the bucket: a version's ``.sig`` read and checked against the
allowed signers (the policy), and a signature added to it. What is signed is
``statement.Statement``; the SSH signatures are ``sshsig``'s, loaded only here, only
when a key or a policy is in use.

A version is trusted under a policy when its ``.sig`` holds the statement its record
and its localname make, and one signature of that statement verifies (namespace
``tychoreg``) with a key the allowed signers list for that namespace at this moment;
the principal is the file's line for that key, never what the signature file says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFound, PreconditionFailed, SignatureError, TransferError
from ..layout import Record, signature_key
from ..statement import SigFile, Signature, Statement
from .catalog import Context

if TYPE_CHECKING:
    from datetime import datetime

    from ..results import SignatureInfo, SignResult
    from ..sshsig import AllowedSigners, SigningKey

WRITE_ATTEMPTS = 5  # a signature file rewritten by another signer meanwhile: read again


class Signed:
    """Who vouched for a version: the allowed principal, and the statement's SHA-256
    (what a lock file records)."""

    __slots__ = ("principal", "statement_sha256")

    def __init__(self, principal: str, statement_sha256: str) -> None:
        self.principal = principal
        self.statement_sha256 = statement_sha256


async def read(ctx: Context, package: str, version: str) -> tuple[SigFile, str] | None:
    """A version's signature file and its ETag; None when it has none."""
    try:
        data, etag = await ctx.engine.get_bytes(signature_key(package, version))
    except NotFound:
        return None
    return SigFile.parse(package, version, data), etag


def check(signers: AllowedSigners, package: str, version: str, found: SigFile | None,
          statement: Statement, now: datetime | None = None) -> Signed:
    """``statement`` (what the version is, by its record) vouched for by an allowed
    signer in ``found``, or SignatureError saying why not."""
    from ..sshsig import NAMESPACE, verify

    label = f"{package} {version}"
    if found is None:
        raise SignatureError(f"{label} is not signed, and the allowed signers require a "
                             "signature")
    signed = Statement.parse(package, version, found.statement)
    field = statement.differs(signed)
    if field is not None:
        raise SignatureError(
            f"{label}: its signature vouches for another {field} "
            f"({signed.fields.get(field)!r}, where the version has "
            f"{statement.fields.get(field)!r}): not this version's bytes")
    reasons = []
    for signature in found.signatures:
        try:
            key = verify(signature.armored, signed.data(), NAMESPACE)
        except SignatureError as exc:
            reasons.append(exc.message)
            continue
        principal = signers.principal_for(key, NAMESPACE, now)
        if principal is not None:
            return Signed(principal, signed.digest())
        reasons.append(signers.why_not(key, NAMESPACE, now))
    why = "; ".join(reasons) if reasons else "its signature file holds no signature"
    raise SignatureError(f"{label} has no valid signature from an allowed signer ({why})")


async def require(ctx: Context, signers: AllowedSigners, package: str, version: str,
                  record: Record | None, localname: str) -> Signed:
    """The policy applied to one version before a byte of it moves: its ``.sig`` read
    (one GET) and checked against the statement its record makes."""
    if record is None:
        raise SignatureError(f"{package} {version} has no checksum record (pushed by "
                             "tycho-station): it cannot be signed, and the allowed "
                             "signers require a signature")
    statement = Statement.of(package, version, localname, record)
    found = await read(ctx, package, version)
    return check(signers, package, version, None if found is None else found[0], statement)


def describe(signers: AllowedSigners | None, package: str, version: str,
             found: SigFile | None, statement: Statement,
             now: datetime | None = None) -> tuple[SignatureInfo, ...]:
    """Every signature of a version, each checked over the statement its record makes
    (what ``verify`` and ``show`` report); under ``signers``, the principal of each key
    the file allows."""
    if found is None:
        return ()
    from ..results import SignatureInfo
    from ..sshsig import NAMESPACE, verify

    if found.statement != statement.text():
        return tuple(SignatureInfo(s.principal_hint, None, False, problem="it signs "
                                   "another statement than this version's")
                     for s in found.signatures)
    infos = []
    for signature in found.signatures:
        try:
            key = verify(signature.armored, statement.data(), NAMESPACE)
        except SignatureError as exc:
            infos.append(SignatureInfo(signature.principal_hint, None, False,
                                       problem=exc.message))
            continue
        principal = problem = None
        if signers is not None:
            principal = signers.principal_for(key, NAMESPACE, now)
            problem = None if principal is not None else signers.why_not(key, NAMESPACE, now)
        infos.append(SignatureInfo(signature.principal_hint, key.fingerprint, True,
                                   principal, problem))
    return tuple(infos)


class Signer:
    """The key pushes (and ``sign``) sign with, read from its file on first use, so a
    command that signs nothing never imports the crypto or asks for a passphrase.
    ``passphrase``: the key's (TYCHOREG_SIGNING_KEY_PASSPHRASE); ``ask``: how to ask
    for one when the key is encrypted and none was given (a tty prompt), else the
    error says how to give one."""

    __slots__ = ("_key", "ask", "hint", "passphrase", "path")

    def __init__(self, path: Path, passphrase: bytes | None = None,
                 ask: Callable[[Path], bytes] | None = None) -> None:
        self.path = path
        self.passphrase = passphrase
        self.ask = ask
        self.hint = ""
        self._key: SigningKey | None = None

    def key(self) -> SigningKey:
        """The key (loaded once); its signatures' hint (for people only) is the comment
        of the ``.pub`` file beside it, else its fingerprint."""
        if self._key is None:
            from ..errors import PassphraseNeeded
            from ..sshsig import SigningKey

            try:
                key = SigningKey.load(self.path, self.passphrase)
            except PassphraseNeeded:
                if self.ask is None:
                    raise
                key = SigningKey.load(self.path, self.ask(self.path))
            try:
                parts = self.path.with_name(self.path.name + ".pub").read_text(
                    encoding="utf-8").split()
            except (OSError, UnicodeDecodeError):
                parts = []
            self.hint = " ".join(parts[2:]) if len(parts) > 2 else key.public.fingerprint
            self._key = key
        return self._key


async def add(ctx: Context, signer: Signer, package: str, version: str,
              statement: Statement) -> None:
    """Sign ``statement`` and write it to the version's ``.sig``: beside the signatures
    already there when they sign the same statement (another signer's stays; ours is
    replaced), else instead of them (a stale or forged file vouches for nothing).
    Conditional (If-Match, or If-None-Match for a new file), read again when another
    signer wrote meanwhile, so no signature is lost."""
    from ..sshsig import NAMESPACE, verify

    key = signer.key()
    mine = Signature(key.sign(statement.data(), NAMESPACE), signer.hint)
    skey = signature_key(package, version)
    for _ in range(WRITE_ATTEMPTS):
        found = await read(ctx, package, version)
        keep: list[Signature] = []
        if found is not None and found[0].statement == statement.text():
            for other in found[0].signatures:
                try:
                    if verify(other.armored, statement.data(), NAMESPACE) == key.public:
                        continue
                except SignatureError:
                    continue  # one that does not verify is dropped, not carried forward
                keep.append(other)
        data = SigFile(statement.text(), [*keep, mine]).dump()
        try:
            if found is None:
                await ctx.engine.put_bytes(skey, data, if_none_match=True)
            else:
                await ctx.engine.put_bytes(skey, data, if_match=found[1])
            return
        except PreconditionFailed:
            continue
    raise TransferError(f"{package} {version}: its signature file kept changing while "
                        "this signature was added; try again")


async def sign_record(ctx: Context, signer: Signer, package: str, version: str,
                      localname: str, record: Record) -> None:
    """A push's signature: the statement of the full record about to be written."""
    await add(ctx, signer, package, version, Statement.of(package, version, localname,
                                                          record))


async def signed_as_recorded(ctx: Context, package: str, version: str,
                             localname: str) -> bool:
    """Whether the ``.sig`` a push cut short wrote before its record signs the version
    as it is now recorded (the statement holds no time, so it stands)."""
    _, record, _ = await ctx.catalog.lookup(package, version)
    found = await read(ctx, package, version)
    if record is None or found is None:
        return False
    return found[0].statement == Statement.of(package, version, localname, record).text()


async def sign_version(ctx: Context, package: str, version: str) -> SignResult:
    """``tychoreg sign``: a signature added to a complete version (one pushed before
    signing, or a second signer's beside the first). The key is loaded first, and the
    stored bytes are checked against the record (a checked download) before a
    signature vouches for them."""
    from ..errors import Refused, UsageError
    from ..names import check_package, check_remote_localname, check_version
    from ..results import SignResult

    check_package(package)
    check_version(version)
    signer = ctx.signer
    if signer is None:
        raise UsageError("no signing key: pass --sign-key PATH (or set "
                         "TYCHOREG_SIGNING_KEY, or tycho.signing_key in the config)")
    key = signer.key()
    meta, _ = await ctx.catalog.read_meta(package)
    pkg, record, _ = await ctx.catalog.lookup(package, version)
    if pkg is None and (record is None or not record.deleting):
        raise NotFound(f"{package} {version} does not exist")
    if record is None:
        raise Refused(f"{package} {version} was pushed by tycho-station: it has no "
                      "checksum record, so a signature could vouch for nothing; push it "
                      "again with tychoreg to sign it")
    expected = record.expected(package, version)  # a push or deletion cut short: refused
    statement = Statement.of(package, version, check_remote_localname(package,
                                                                      meta.localname),
                             record)
    await ctx.catalog.check(ctx.fs, package, version, expected)
    await add(ctx, signer, package, version, statement)
    found = await read(ctx, package, version)
    return SignResult(package, version, signer.hint, key.public.fingerprint,
                      len(found[0].signatures) if found is not None else 1)
