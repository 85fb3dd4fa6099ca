"""Lock files: ``lock`` makes one (the exact versions items resolve to now), checks one
against the registry (``--check``) and updates one (``--update``)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import PartialFailure, UsageError
from ..units import plural
from .options import (
    AllowedSignersOpt,
    Command,
    ConcurrencyOpt,
    ConfigOpt,
    ItemsFileOpt,
    JsonOpt,
    QuietOpt,
    list_items,
)
from .render import echo_json, out, reports, say
from .run import cli_command, execute, settings_for

# --registry as every command has it, but with no envvar: the settings still honour
# TYCHOREG_REGISTRY, and a value here is a registry named on the command line (before or
# after the command name), which is what lets --check take a lock of another registry.
TypedRegistryOpt = Annotated[str | None, typer.Option(
    "--registry", "-r", metavar="URL", show_default=False,
    help="Registry to use instead of the config's (or TYCHOREG_REGISTRY's): "
         "s3://BUCKET/PREFIX or a directory path. Named here, --check also takes a lock "
         "resolved against another registry, and checks it against this one.")]

group = typer.Typer()  # these commands; the root (cli/__init__.py) lists every group in order

LOCKFILE = "tychoreg.lock"  # lockfile.DEFAULT_LOCKFILE, spelled here so --help loads nothing

EXIT_CODES = """Exit codes: 0 locked (--check: every locked version is still there, as locked);
1 a package or version does not exist, or --check found drift; 2 bad usage or an
unusable lock file, or a lock of another registry; 3 a version that cannot be trusted
(cut short, being deleted, its record and object disagree, with --require-sha256 pushed
by tycho-station, or under --allowed-signers not signed by an allowed signer)."""


@group.command(cls=Command, short_help="Pin exact versions in a lock file; check or update it.",
               epilog=EXIT_CODES)
@cli_command
def lock(
    items: Annotated[list[str] | None, typer.Argument(
        metavar="ITEM...", show_default=False,
        help="What to lock: PKG (its latest now) or PKG==VERSION. With --update: the "
             "packages to re-resolve (all when none).")] = None,
    from_file: ItemsFileOpt = None,
    lockfile: Annotated[Path, typer.Option(
        "--lockfile", metavar="PATH",
        help="The lock file to write, check or update.")] = Path(LOCKFILE),
    require_sha256: Annotated[bool, typer.Option(
        "--require-sha256",
        help="Refuse (exit 3) versions pushed by tycho-station, which have no SHA-256 and "
             "would be locked by size and ETag alone.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing: check that every locked version still exists with "
        "the locked bytes (size, ETag, SHA-256); exit 1 listing what drifted. A moved "
        "latest is only reported, unless --latest.")] = False,
    latest: Annotated[bool, typer.Option(
        "--latest", help="With --check: a package whose latest is no longer the locked "
        "version is drift too (exit 1): is the lock stale?")] = False,
    update: Annotated[bool, typer.Option(
        "--update", help="Re-resolve the packages named as ITEMs (all without names) to "
        "their latest and rewrite the lock, printing old -> new.")] = False,
    allowed_signers: AllowedSignersOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: TypedRegistryOpt = None,
    concurrency: ConcurrencyOpt = None, quiet: QuietOpt = False,
) -> None:
    """Write a lock file (default ./tychoreg.lock): the exact version each ITEM resolves
    to now, with its size, ETag and SHA-256, so that `pull-list --locked` gets those
    bytes and no others. Versions pushed by tycho-station have no SHA-256: they are
    locked by size and ETag, and marked so. A lock names the registry it was resolved
    against; --check refuses a lock of another registry unless --registry is given on
    the command line. Under allowed signers every version must be signed by one of
    them, and its entry records who (signed_by) and what (statement_sha256), so that
    `pull-list --locked` checks a current copy with no request."""
    names = list_items(items or [], from_file)
    if latest and not check:
        raise UsageError("--latest goes with --check")
    if check and (update or names or require_sha256):
        raise UsageError("--check takes no ITEM, --from-file, --update or "
                         "--require-sha256: it checks the lock file as it is")
    settings = settings_for(config, registry, concurrency=concurrency,
                            allowed_signers=allowed_signers)
    if check:
        _check(settings, lockfile, latest, other_registry=registry is not None,
               as_json=as_json, quiet=quiet)
        return
    if not update and not names:
        raise UsageError("name at least one package to lock (or --from-file FILE)")
    failure: PartialFailure | None = None
    result = None
    try:
        result = execute(settings, lambda reg: reg.lock_update(
            lockfile, names, require_sha256=require_sha256) if update else reg.lock(
            names, lockfile=lockfile, require_sha256=require_sha256))
    except PartialFailure as exc:
        if not as_json:
            raise
        failure = exc
    if as_json:
        echo_json(reports().lock(result, str(lockfile), failure,
                                 "lock-update" if update else "lock"))
        if failure is not None:
            raise failure
    elif not quiet:
        _echo(result, update)


def _check(settings: Any, lockfile: Path, latest: bool, *, other_registry: bool,
           as_json: bool, quiet: bool) -> None:
    result = execute(settings, lambda reg: reg.lock_check(
        lockfile, latest=latest, other_registry=other_registry))
    if as_json:
        echo_json(reports().lock_check(result, str(lockfile)))
    else:
        for status in result.packages:
            if status.state == "ok":
                continue
            if status.state == "latest moved":
                line = f"{status.package} {status.version}: latest is now {status.latest}"
            else:
                line = f"{status.package} {status.version}: {status.state}"
                line += f" ({status.detail})" if status.detail else ""
            if status.failed(latest) or not quiet:
                out(line)
        if result.exit_code:
            say(f"{len(result.drifted)} of {plural(len(result.packages), 'locked package')} "
                f"drifted from {lockfile}")
        elif not quiet:
            say(f"{lockfile} holds: {plural(len(result.packages), 'locked package')} "
                "checked")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _echo(result: Any, update: bool) -> None:
    if update:
        for change in result.changes:
            out(f"{change.package} {change.old} -> {change.new}" if change.changed else
                f"{change.package} {change.old} (unchanged)")
    else:
        for entry in result.lock.packages:
            how = f"sha256 {entry.sha256[:12]}…" if entry.sha256 else \
                "pushed by tycho-station: by size and ETag"
            how += f", signed by {entry.signed_by}" if entry.signed_by else ""
            out(f"locked {entry.name} {entry.version} ({how})")
    what = "wrote" if result.written else "unchanged:"
    say(f"{what} {result.path} ({plural(len(result.lock.packages), 'package')})")
