"""The exception tree: every error a user can meet knows its exit code and its message.

    TychoError                      exit 1 unless a subclass says otherwise
    ├── NotFound                    1  package, version, or tycho.json missing
    ├── AlreadyExists               1  a version or package that must not exist yet
    ├── NothingToPull               1
    ├── Refused                     1  a deletion that would remove what must stay (latest)
    ├── UsageError                  2  bad name, bad option value, special file in the way
    │   ├── ConfigError             2  unreadable or invalid config
    │   ├── SignersFileError        2  a malformed allowed_signers file
    │   ├── SigningKeyError         2  a key that cannot be read or used
    │   │   └── PassphraseNeeded    2  an encrypted key and no passphrase given
    │   │   └── NotS3               2  the endpoint answers, but not as an S3 store does
    │   └── MissingRegistry         2  the bucket or registry directory does not exist
    ├── TransferError               3  the bytes did not arrive (network, permission, disk)
    │   ├── StoreError              3  a backend call failed; ``transient`` says if a retry may help
    │   │   └── PreconditionFailed  3  a conditional write lost a race (callers translate it)
    │   ├── IntegrityError          3  bytes arrived but do not match what was pushed
    │   ├── IncompleteVersion       3  a push or deletion of it was cut short
    │   ├── UnsafeRemoteData        3  the bucket holds data we refuse to act on
    │   └── SignatureError          3  a signature that does not verify or is malformed
    ├── PartialFailure              3 or 1: some items of a batch failed
    ├── Interrupted                 128+N: ended by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP)
    └── OutputClosed                141: standard output was closed (``tychoreg list | head``)

Foreign errors (botocore, aiohttp, OSError) are translated where they enter, in the
stores and the engine, and chained with ``from exc``. Only the CLI turns these into
messages and exit codes.
"""

from __future__ import annotations

from typing import Any


class TychoError(Exception):
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(TychoError):
    exit_code = 1


class AlreadyExists(TychoError):
    exit_code = 1


class NothingToPull(TychoError):
    exit_code = 1


class Refused(TychoError):
    """The answer is no: the command would remove what a rule keeps (``latest``)."""

    exit_code = 1


class UsageError(TychoError):
    exit_code = 2


class ConfigError(UsageError):
    exit_code = 2


class NotS3(ConfigError):
    """The endpoint answers, but not as S3 does (a web page, another API): a wrong
    ``endpoint_url``, never a missing package or a transfer to retry."""


class MissingRegistry(UsageError):
    """A typo'd bucket or path must not read as an empty registry (``exists || push``)."""

    exit_code = 2


class TransferError(TychoError):
    exit_code = 3


class StoreError(TransferError):
    """A backend call failed; ``transient`` errors are worth a retry; ``code`` is the
    backend's own name for the error, where it has one."""

    def __init__(self, message: str, *, transient: bool = False, code: str | None = None
                 ) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


class PreconditionFailed(StoreError):
    """A conditional write found the object in a state other than the one expected."""


class IntegrityError(TransferError):
    pass


class UnsafeRemoteData(TransferError):
    pass


class SignatureError(TransferError):
    """A signature that does not verify or is malformed: the bytes are not what was signed."""


class SignersFileError(UsageError):
    """A malformed allowed_signers file: the user's trust list, fixed by the user."""


class SigningKeyError(UsageError):
    """A signing key that cannot be read or used (file, type, passphrase)."""


class PassphraseNeeded(SigningKeyError):
    """An encrypted key and no passphrase given: the caller may ask for one and retry."""


class IncompleteVersion(TransferError):
    """A version whose push (or deletion) was cut short: never trusted by a pull."""


_NAMED = 3  # failed items named by str(PartialFailure)


class PartialFailure(TychoError):
    """Some items of a batch failed; the exit code is the worst of theirs."""

    def __init__(self, message: str, failures: list[tuple[str, TychoError]],
                 results: list[Any] | None = None) -> None:
        super().__init__(message)
        self.failures = failures
        self.results = results or []  # what succeeded, in the order asked
        self.exit_code = max(err.exit_code for _, err in failures)

    def __str__(self) -> str:
        """The message with the first few failed items and why: what a script that
        only logs the exception needs to know."""
        shown = "; ".join(f"{item}: {err}" for item, err in self.failures[:_NAMED])
        more = f"; and {len(self.failures) - _NAMED} more" if len(self.failures) > _NAMED \
            else ""
        return f"{self.message} ({shown}{more})"


class Interrupted(TychoError):
    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class OutputClosed(TychoError):
    exit_code = 141
