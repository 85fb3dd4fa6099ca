"""tychoreg: a registry for versioned packages on S3 or a local directory.

The public API (loaded on first use, so that importing the package stays cheap)::

    with tycho_async.Client(registry="s3://bucket/prefix") as client:
        client.push("pkg", "1.0", "build/out.tar.gz", promote=True)
        client.pull("pkg", outdir="deps")

    async with tycho_async.open_registry(registry="s3://bucket/prefix") as reg:
        await reg.push("pkg", "1.1", "file.bin")

Errors are ``TychoError`` and its subclasses, each with an ``exit_code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    AlreadyExists,
    ConfigError,
    IncompleteVersion,
    IntegrityError,
    Interrupted,
    MissingRegistry,
    NotFound,
    NothingToPull,
    NotS3,
    OutputClosed,
    PartialFailure,
    PassphraseNeeded,
    Refused,
    SignatureError,
    SignersFileError,
    SigningKeyError,
    StoreError,
    TransferError,
    TychoError,
    UnsafeRemoteData,
    UsageError,
)
from .lazy import lazy_names

if TYPE_CHECKING:
    from .api import AsyncRegistry, Client, open_registry
    from .results import (
        DeleteResult,
        LockCheck,
        LockResult,
        PackageSummary,
        PruneResult,
        PullResult,
        PushRequest,
        PushResult,
        ShowResult,
        SignatureInfo,
        SignResult,
        VerifyResult,
        VersionInfo,
    )

__version__ = "0.1.0"

_LAZY = {"Client": "api", "open_registry": "api", "AsyncRegistry": "api",
         "PushResult": "results", "PullResult": "results", "VersionInfo": "results",
         "PushRequest": "results", "PackageSummary": "results", "VerifyResult": "results",
         "DeleteResult": "results", "PruneResult": "results", "ShowResult": "results",
         "LockResult": "results", "LockCheck": "results", "SignResult": "results",
         "SignatureInfo": "results"}

__all__ = ["AlreadyExists", "AsyncRegistry", "Client", "ConfigError", "DeleteResult",
           "IncompleteVersion", "IntegrityError", "Interrupted", "LockCheck", "LockResult",
           "MissingRegistry", "NotFound", "NotS3", "NothingToPull", "OutputClosed",
           "PackageSummary", "PartialFailure", "PassphraseNeeded", "PruneResult",
           "PullResult", "PushRequest", "PushResult", "Refused", "ShowResult",
           "SignResult", "SignatureError", "SignatureInfo", "SignersFileError",
           "SigningKeyError", "StoreError", "TransferError", "TychoError",
           "UnsafeRemoteData", "UsageError", "VerifyResult", "VersionInfo", "__version__",
           "open_registry"]

__getattr__ = lazy_names(__name__, _LAZY)


def __dir__() -> list[str]:
    """The public names (lazy ones included), not the module's import machinery."""
    return sorted(__all__)
