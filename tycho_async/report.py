"""The JSON documents ``--json`` prints: one object per command, ``"schema": 1``, keys
documented in the README and stable within a schema (new keys may be added; none is
renamed or removed without a new schema number)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import PartialFailure, TychoError
from .results import (
    DeleteResult,
    LockCheck,
    LockResult,
    PackageSummary,
    PruneResult,
    PullRequest,
    PullResult,
    PushRequest,
    PushResult,
    ShowResult,
    SignatureInfo,
    SignResult,
    VerifyResult,
    VersionInfo,
)

if TYPE_CHECKING:
    from .lockfile import Locked

SCHEMA = 1


def document(command: str, **fields: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "command": command, **fields}


def push(result: PushResult) -> dict[str, Any]:
    return document("push", package=result.package, version=result.version,
                    size=result.size, sha256=result.sha256, format=result.format,
                    tree_sha256=result.tree_sha256, skipped=result.skipped,
                    same_content=result.same_content, initialized=result.initialized,
                    promoted=result.promoted, warnings=list(result.warnings),
                    signed_by=result.signed_by)


def sign(result: SignResult) -> dict[str, Any]:
    return document("sign", package=result.package, version=result.version,
                    signed_by=result.signed_by, fingerprint=result.fingerprint,
                    signatures=result.signatures)


def _push_item(request: PushRequest) -> dict[str, Any]:
    return {"item": str(request), "package": request.package, "version": request.version,
            "source": str(request.source)}


def pushed(request: PushRequest, result: PushResult) -> dict[str, Any]:
    """One item of a push-list, as ``push`` reports it."""
    fields = push(result)
    return {**_push_item(request), **{key: fields[key] for key in (
        "size", "sha256", "format", "tree_sha256", "skipped", "same_content", "initialized",
        "promoted", "warnings", "signed_by")}, "error": None, "exit_code": 0}


def push_failed(request: PushRequest, error: TychoError) -> dict[str, Any]:
    """A failed item of a push-list: the same keys, its error and exit code."""
    return {**_push_item(request), "size": None, "sha256": None, "format": None,
            "tree_sha256": None, "skipped": False, "same_content": None,
            "initialized": False, "promoted": False, "warnings": [], "signed_by": None,
            "error": error.message,
            "exit_code": error.exit_code}


def push_list(requests: list[PushRequest], results: list[PushResult],
              failure: PartialFailure | None, lockfile: str | None = None
              ) -> dict[str, Any]:
    """One entry per item, in the order given, failures included; ``lockfile``: the lock
    file --lock wrote (None: none was asked for, or an item failed)."""
    errors = dict(failure.failures) if failure else {}
    done = iter(results)
    items = [push_failed(r, errors[str(r)]) if str(r) in errors else pushed(r, next(done))
             for r in requests]
    return document("push-list", items=items, pushed=len(results), failed=len(errors),
                    lockfile=lockfile, exit_code=failure.exit_code if failure else 0)


def pulled(result: PullResult, item: str | None = None) -> dict[str, Any]:
    return {"item": item or f"{result.package}=={result.version}",
            "package": result.package, "version": result.version, "path": str(result.path),
            "size": result.size, "skipped": result.skipped, "exact": result.exact,
            "format": result.format, "warnings": list(result.warnings),
            "signed_by": result.signed_by, "error": None, "exit_code": 0}


def failed(item: str, error: TychoError) -> dict[str, Any]:
    request: PullRequest | None
    try:
        request = PullRequest.parse(item)
    except TychoError:
        request = None
    return {"item": item, "package": request.package if request else None,
            "version": request.version if request else None, "path": None, "size": None,
            "skipped": False, "exact": None, "format": None, "warnings": [],
            "signed_by": None, "error": error.message,
            "exit_code": error.exit_code}


def pull(result: PullResult) -> dict[str, Any]:
    return document("pull", **pulled(result))


def pull_list(requests: list[PullRequest], results: list[PullResult],
              failure: PartialFailure | None) -> dict[str, Any]:
    """One entry per item, in the order given, failures included."""
    errors = dict(failure.failures) if failure else {}
    done = iter(results)
    items = [failed(str(r), errors[str(r)]) if str(r) in errors else pulled(next(done), str(r))
             for r in dict.fromkeys(requests)]
    return document("pull-list", items=items, pulled=len(results), failed=len(errors),
                    exit_code=failure.exit_code if failure else 0)


def version(info: VersionInfo) -> dict[str, Any]:
    return {"version": info.version, "size": info.size, "sha256": info.sha256,
            "pushed_at": info.pushed_at, "format": info.format, "latest": info.latest,
            "state": info.state, "signed": info.signed, "signed_by": info.signed_by}


def versions(package: str, infos: list[VersionInfo]) -> dict[str, Any]:
    return document("list-versions", package=package, versions=[version(i) for i in infos])


def packages(summaries: list[PackageSummary]) -> dict[str, Any]:
    return document("list", packages=[
        {"package": p.name, "latest": p.latest, "localname": p.localname,
         "problem": p.problem} for p in summaries])


def verify(result: VerifyResult) -> dict[str, Any]:
    return document("verify", package=result.package, version=result.version,
                    size=result.size, sha256=result.sha256, checked=result.checked,
                    repaired=result.repaired, signed_by=result.signed_by,
                    signatures=[signature(s) for s in result.signatures])


def signature(info: SignatureInfo) -> dict[str, Any]:
    return {"principal_hint": info.principal_hint, "fingerprint": info.fingerprint,
            "valid": info.valid, "principal": info.principal, "problem": info.problem}


def delete(result: DeleteResult) -> dict[str, Any]:
    return document("delete", package=result.package, deleted=result.versions,
                    latest_cleared=result.latest_cleared, dry_run=result.dry_run,
                    package_removed=result.package_removed)


def prune(result: PruneResult) -> dict[str, Any]:
    return document("prune", package=result.package, deleted=result.deleted,
                    kept=result.kept, finished=result.finished,
                    aborted_uploads=result.aborted_uploads, dry_run=result.dry_run)


def show(result: ShowResult) -> dict[str, Any]:
    data = document("show", package=result.package, localname=result.localname,
                    latest=result.latest, versions=result.versions, size=result.size)
    if result.version is not None:
        data["version"] = {**version(result.version), "tool": result.tool,
                           "tree_sha256": result.tree_sha256,
                           "signatures": [signature(s) for s in result.signatures]}
    return data


def locked(entry: Locked) -> dict[str, Any]:
    """A lock file's entry; ``station``: pushed by tycho-station, locked by size and
    ETag (``sha256`` null); ``signed_by``: the principal it was locked as signed by
    under allowed signers (null: locked without a policy)."""
    return {"package": entry.name, "version": entry.version, "localname": entry.localname,
            "format": entry.format, "size": entry.size, "sha256": entry.sha256,
            "etag": entry.etag, "tree_sha256": entry.tree_sha256,
            "tree_size": entry.tree_size, "station": entry.station,
            "signed_by": entry.signed_by, "statement_sha256": entry.statement_sha256}


def lock(result: LockResult | None, path: str, failure: PartialFailure | None = None,
         command: str = "lock") -> dict[str, Any]:
    """``lock`` and ``lock --update`` (command "lock-update", with ``changes``): the
    packages locked, or on failure every failed item and no lock written."""
    errors = [{"item": item, "error": error.message, "exit_code": error.exit_code}
              for item, error in (failure.failures if failure else [])]
    data = document(command, lockfile=path,
                    registry=result.lock.registry if result else None,
                    written=result.written if result else False,
                    packages=[locked(e) for e in result.lock.packages] if result else [],
                    failures=errors, exit_code=failure.exit_code if failure else 0)
    if command == "lock-update":
        data["changes"] = [{"package": c.package, "old": c.old, "new": c.new,
                            "changed": c.changed}
                           for c in (result.changes if result else ())]
    return data


def lock_check(result: LockCheck, path: str) -> dict[str, Any]:
    """``lock --check``: each locked version's state ("ok", "deleted", "changed",
    "latest moved"), and ``failed`` where it counts as drift."""
    return document("lock-check", lockfile=path, registry=result.registry,
                    checked_against=result.checked_against, latest=result.latest,
                    packages=[{"package": s.package, "version": s.version, "state": s.state,
                               "latest": s.latest, "detail": s.detail,
                               "failed": s.failed(result.latest)} for s in result.packages],
                    drifted=len(result.drifted), exit_code=result.exit_code)
