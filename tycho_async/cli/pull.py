"""Downloading: pull, pull-list, and verify (a download that keeps no file)."""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import PartialFailure, UsageError
from ..units import human_size
from .options import (
    AllowedSignersOpt,
    Command,
    ConcurrencyOpt,
    ConfigOpt,
    ItemsFileOpt,
    JsonOpt,
    MaxUnpackedOpt,
    OutdirOpt,
    PackageArg,
    PartSizeOpt,
    ProgressOpt,
    QuietOpt,
    RegistryOpt,
    SignKeyOpt,
    VersionOpt,
    list_items,
)
from .render import echo_json, out, reports, say, signature_lines
from .run import ROOT_OPTIONS, cli_command, execute, execute_transfer, given, settings_for

group = typer.Typer()  # these commands; the root (cli/__init__.py) lists every group in order


@group.command(cls=Command, short_help="Download a version of PACKAGE unless already current.")
@cli_command
def pull(
    package: PackageArg,
    version: VersionOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Download even when the local copy is current.")] = False,
    outfile: Annotated[Path | None, typer.Option(
        "--outfile", "-o", metavar="PATH", show_default=False,
        help="Save here instead of OUTDIR/localname (a directory package: extract here "
             "instead of OUTDIR/NAME); - (or /dev/stdout, or the file standard output "
             "goes to) writes the bytes to standard output.")] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="A directory package: keep the archive (OUTDIR/localname, a .tar.zst) "
        "instead of extracting it, as tycho-station does. With -o - onto a terminal: "
        "write binary bytes there anyway.")] = False,
    fallback: Annotated[list[str] | None, typer.Option(
        "--fallback", metavar="PREFIX", show_default=False,
        help="If --version does not exist, pull the most recently pushed version starting "
             "with PREFIX; repeat to try several prefixes in order.")] = None,
    outdir: OutdirOpt = None,
    max_unpacked: MaxUnpackedOpt = None,
    allowed_signers: AllowedSignersOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Download a version of PACKAGE, unless the local copy is already current. A
    directory package is extracted to OUTDIR/NAME, atomically (the old one is replaced
    only once the new one checks out, and only if the proof inside it,
    NAME/.tychoreg-pull, says a pull of PACKAGE made it); it is current only while it
    still matches that proof's manifest, and replacing local edits warns."""
    request = _pull_request(package, version)
    limit = _max_unpacked(max_unpacked)
    settings = settings_for(config, registry, concurrency=concurrency, part_size=part_size,
                            outdir=outdir, allowed_signers=allowed_signers)
    to_stdout = outfile is not None and (str(outfile) == "-" or _is_stdout(outfile))
    if to_stdout and as_json:
        raise UsageError("--json and --outfile - both want standard output; choose one")
    target: Any = sys.stdout.buffer if to_stdout else outfile
    result = execute_transfer(settings, lambda reg: reg.pull(
        request.package, request.version, force=force, outfile=target, raw=raw,
        fallback=tuple(fallback or ()), max_unpacked=limit),
        verb="pulled", files=1, quiet=quiet or as_json, progress=progress)
    for warning in result.warnings:
        say(f"warning: {warning}")
    if as_json:
        echo_json(reports().pull(result))
    elif to_stdout:
        if not quiet:
            say(f"pulled {result.package} {result.version} to standard output "
                 f"({human_size(result.size)}){_hit(result, fallback)}{_signed(result)}")
    elif not quiet:
        _echo_pull(result, fallback)


def _max_unpacked(value: str | None) -> int | None:
    from ..config import parse_size

    return None if value is None else parse_size(value, "--max-unpacked")


def _is_stdout(path: Path) -> bool:
    from ..localfs import same_as_stdout

    return same_as_stdout(path)


def _hit(result: Any, fallback: list[str] | None) -> str:
    if not fallback:
        return ""
    return " (exact hit)" if result.exact else " (fallback: not the exact version asked)"


def _signed(result: Any) -> str:
    return f", signed by {result.signed_by}" if result.signed_by else ""


def _pull_request(package: str, version: str | None) -> Any:
    from ..names import check_package, check_version
    from ..results import PullRequest

    if version is None:
        return PullRequest.parse(package)
    return PullRequest(check_package(package), check_version(version))


def _echo_pull(result: Any, fallback: list[str] | None = None) -> None:
    if result.skipped:
        out(f"{result.package} {result.version} is up to date: {result.path}"
             f"{_hit(result, fallback)}{_signed(result)}")
    else:
        out(f"pulled {result.package} {result.version} -> {result.path} "
             f"({human_size(result.size)}){_hit(result, fallback)}{_signed(result)}")


@group.command("pull-list", cls=Command,
               short_help="Pull many packages at once; failures reported at the end.")
@cli_command
def pull_list(
    packages: Annotated[list[str] | None, typer.Argument(
        metavar="PACKAGE...", help="Packages to pull: PKG (its latest) or PKG==VERSION.",
        show_default=False)] = None,
    from_file: ItemsFileOpt = None,
    locked: Annotated[bool, typer.Option(
        "--locked", help="Pull exactly the versions and bytes the lock file says, with no "
        "tycho.json request (no PACKAGE or --from-file beside it): a local copy that is "
        "current costs no request, any other one GET, checked against the lock (exit 3 on "
        "a mismatch, nothing replaced). A lock resolved against another registry is "
        "refused (exit 2) unless --registry is given on the command line. Under "
        "--allowed-signers every entry must be locked with an allowed signer (exit 3).")
        ] = False,
    lockfile: Annotated[Path | None, typer.Option(
        "--lockfile", metavar="PATH", show_default=False,
        help="With --locked: the lock file to pull (default: tychoreg.lock in the "
             "current directory).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Download even when local copies are current.")] = False,
    outdir: OutdirOpt = None,
    max_unpacked: MaxUnpackedOpt = None,
    allowed_signers: AllowedSignersOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
    *, ctx: typer.Context,
) -> None:
    """Pull many packages at once; every failure is reported at the end (what was
    pulled is still listed). With --locked, what a lock file (tychoreg lock) says."""
    from ..results import PullRequest

    limit = _max_unpacked(max_unpacked)
    lock = _lock(locked, lockfile, packages, from_file)  # None: a plain pull-list
    requests = _pull_list_requests(packages, from_file) if lock is None else \
        [PullRequest(entry.name, entry.version) for entry in lock.packages]
    settings = settings_for(config, registry, concurrency=concurrency, part_size=part_size,
                            outdir=outdir, allowed_signers=allowed_signers)
    other = _registry_given(ctx)

    async def work(reg: Any) -> list[Any]:
        if lock is None:
            return await reg.pull_many([str(r) for r in requests], force=force,
                                       max_unpacked=limit)
        return await reg.pull_locked(lock, force=force, other_registry=other,
                                     max_unpacked=limit)

    current = None
    if lock is not None and not force:  # everything current: no store opened at all
        from ..api import locked_current

        current = locked_current(settings, lock, other_registry=other)
    from ..progress import make_progress

    failure: PartialFailure | None = None
    # the items (stdout) first, then the summary (stderr): in a CI log too
    display = make_progress(progress, quiet or as_json, "pulled", files=len(requests),
                            summary_last=True)
    with display as sink:
        try:
            results = current if current is not None else execute(settings, work, sink)
        except PartialFailure as exc:
            failure, results = exc, exc.results
    for result in results:
        for warning in result.warnings:
            say(f"warning: {warning}")
    if as_json:
        echo_json(reports().pull_list(requests, results, failure))
    elif not quiet:
        for result in results:
            _echo_pull(result)
    display.summarize()
    if failure is not None:
        raise failure


def _lock(locked: bool, lockfile: Path | None, packages: list[str] | None,
          from_file: Path | None) -> Any:
    """The lock file of --locked, read and checked whole before anything else (exit
    2); None without --locked."""
    if not locked:
        if lockfile is not None:
            raise UsageError("--lockfile names the lock file of --locked; pass --locked too")
        return None
    if packages or from_file is not None:
        raise UsageError("--locked pulls what the lock file says: name no package and no "
                         "--from-file beside it")
    from ..lockfile import DEFAULT_LOCKFILE, read

    return read(lockfile if lockfile is not None else Path(DEFAULT_LOCKFILE))


def _registry_given(ctx: typer.Context) -> bool:
    """Whether --registry was typed on the command line, before or after the command
    name (not taken from TYCHOREG_REGISTRY or the config)."""
    return given(ctx, "registry") or "registry" in ctx.meta.get(ROOT_OPTIONS, {})


def _pull_list_requests(packages: list[str] | None, from_file: Path | None) -> list[Any]:
    """The items of a plain pull-list: its arguments, then --from-file's lines."""
    from ..results import PullRequest

    items = list_items(list(packages or []), from_file)
    if not items:
        raise UsageError("name at least one package (or --from-file FILE, or --locked)")
    return [PullRequest.parse(item) for item in items]


@group.command(cls=Command, short_help="Re-check a stored version against its SHA-256 record.")
@cli_command
def verify(
    package: PackageArg,
    version: VersionOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Finish what an interrupted push left: record a version whose "
        "upload completed (from the stored bytes' SHA-256), clear one whose upload did "
        "not, restore a lost copy of the record in tycho.json.")] = False,
    sign_key: SignKeyOpt = None,
    allowed_signers: AllowedSignersOpt = None,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Re-check a stored version against its SHA-256 record (size and MD5 for versions
    pushed by tycho-station) without keeping a file; exit 3 if it does not match."""
    request = _pull_request(package, version)
    settings = settings_for(config, registry, concurrency=concurrency, part_size=part_size,
                            signing_key=sign_key, allowed_signers=allowed_signers)
    result = execute_transfer(settings, lambda reg: reg.verify(
        request.package, request.version, repair=repair),
                       verb="verified", files=1, quiet=quiet or as_json, progress=progress)
    if as_json:
        echo_json(reports().verify(result))
        return
    if result.repaired:
        out(f"{result.package} {result.version}: {result.repaired}")
    if not quiet:
        out(f"{result.package} {result.version} is intact ({human_size(result.size)}, "
             f"sha256 {result.sha256}; checked {result.checked}{_signed(result)})")
        for line in signature_lines(result.signatures):
            out(f"  {line}")
        if not result.signatures and not result.repaired:
            out("  unsigned (no .sig)")

