"""Publishing: init, push, push-list, promote and sign (the registry's publish
operations, and a signature added to a version)."""

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import PartialFailure, TychoError, UsageError
from ..units import human_size, plural
from .options import (
    Command,
    ConcurrencyOpt,
    ConfigOpt,
    JsonOpt,
    PackageArg,
    PartSizeOpt,
    ProgressOpt,
    QuietOpt,
    RegistryOpt,
    SignKeyOpt,
)
from .render import echo_json, out, reports, say
from .run import cli_command, execute, execute_transfer, settings_for

group = typer.Typer()  # these commands; the root (cli/__init__.py) lists every group in order


@group.command(cls=Command, short_help="Create PACKAGE and the file name pulls save it as.")
@cli_command
def init(
    package: PackageArg,
    filename: Annotated[str, typer.Argument(
        metavar="FILENAME", help="File name pulls are saved as (localname).")],
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Create a package: PKG/tycho.json with its local file name and no latest version."""
    settings = settings_for(config, registry)
    execute(settings, lambda reg: reg.init(package, filename))
    if as_json:
        echo_json(reports().document("init", package=package, localname=filename))
    else:
        out(f"initialized {package} (pulls save as {filename})")


@group.command(cls=Command,
               short_help="Upload a file, a directory or stdin as a new VERSION.")
@cli_command
def push(
    package: PackageArg,
    version: Annotated[str, typer.Argument(
        metavar="VERSION", help="New version; published versions never change.")],
    source: Annotated[str, typer.Argument(
        metavar="FILE|DIR|-", show_default=False,
        help="A file (uploaded as it is), a directory (packed as tar+zstd while it "
             "uploads; pulls extract it) or - for standard input (read to its end).")],
    promote_latest: Annotated[bool, typer.Option(
        "--promote-latest", help="Make this version the latest once the upload completes.")]
        = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="A cache's rule: if VERSION exists, or another push of it "
        "is under way, upload nothing and exit 0 at once, whatever it holds; the output "
        "says whether the content matched where that can be told (--promote-latest still "
        "promotes an existing version).")] = False,
    skip_identical: Annotated[bool, typer.Option(
        "--skip-identical", help="For publishing: if VERSION already holds the same "
        "content, exit 0 without uploading (--promote-latest still promotes it); other "
        "content, or content that cannot be compared (a stream), is exit 1; a push of it "
        "under way is waited for (at most 5 minutes).")] = False,
    localname: Annotated[str | None, typer.Option(
        "--localname", metavar="NAME", show_default=False,
        help="Name pulls save a NEW package as (required for a new package pushed from "
             "stdin; default: FILE's name, or DIR's name + .tar.zst).")] = None,
    level: Annotated[int | None, typer.Option(
        "--level", metavar="N", show_default=False,
        help="zstd level for a directory, 1 (fastest) to 22 (smallest); default 3, "
             "chosen by measuring (see the README).")] = None,
    sign_key: SignKeyOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Upload FILE, DIR or standard input (-) as a new VERSION of PACKAGE. A new package
    takes FILE's name (DIR's name + .tar.zst; --localname for stdin)."""
    settings = settings_for(config, registry, concurrency=concurrency, part_size=part_size,
                            signing_key=sign_key)
    what: Any = sys.stdin.buffer if source == "-" else Path(source)
    result = execute_transfer(settings, lambda reg: reg.push(
        package, version, what, promote=promote_latest, localname=localname, level=level,
        skip_existing=skip_existing, skip_identical=skip_identical), verb="pushed", files=1,
        quiet=quiet or as_json, progress=progress)
    if result.created_registry:
        say(f"created a new local registry at {result.created_registry}")
    for warning in result.warnings:
        say(f"warning: {warning}")
    if as_json:
        echo_json(reports().push(result))
    elif not quiet:
        _echo_push(result)


def _echo_push(result: Any) -> None:
    """What a push did, on standard output: one line, two when it promoted."""
    package, version = result.package, result.version
    if result.initialized:
        out(f"initialized {package}")
    if result.skipped:
        how = {True: "is already there with the same content",
               False: "is already there with other content (kept as it is)",
               None: "is already there, or being pushed by another push (content not "
                     "compared)"}[result.same_content]
        out(f"{package} {version} {how}; nothing uploaded")
    else:
        kind = " (a directory, tar+zstd)" if result.tree_sha256 else ""
        signed = "" if result.signed_by is None else f", signed by {result.signed_by}"
        out(f"pushed {package} {version}{kind} ({human_size(result.size)}, "
             f"sha256 {result.sha256}{signed})")
    if result.promoted:
        out(f"promoted {package} {version} to latest")


LINE_HELP = "PKG VERSION PATH [--localname NAME]"


@group.command("push-list", cls=Command,
               short_help="Push many files and directories at once; failures at the end.")
@cli_command
def push_list(
    items: Annotated[list[str] | None, typer.Argument(
        metavar="ITEM...", show_default=False,
        help=f"One item per argument, as one line of FILE: '{LINE_HELP}' (quoted as a "
             "whole, e.g. 'tool 1.0 dist/tool.tgz').")] = None,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", metavar="FILE", show_default=False,
        help=f"Read items from FILE, one a line: {LINE_HELP}, split as a shell does "
             "(quote a path with spaces; '#' outside quotes starts a comment; blank lines "
             "are skipped); PATH is a file or a directory, relative to the current "
             "directory; - reads standard input.")] = None,
    promote_latest: Annotated[bool, typer.Option(
        "--promote-latest", help="Make each pushed version the latest of its package; the "
        "items of a package are pushed in list order, so its last line that is pushed "
        "wins.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="As for push: an item whose VERSION exists, or is being "
        "pushed, uploads nothing and counts as done.")] = False,
    skip_identical: Annotated[bool, typer.Option(
        "--skip-identical", help="As for push: an item whose VERSION holds the same "
        "content counts as done; other content fails that item (exit 1).")] = False,
    level: Annotated[int | None, typer.Option(
        "--level", metavar="N", min=1, max=22, show_default=False,
        help="zstd level for the directories of the list, 1 to 22 (default 3; files are "
             "uploaded as they are).")] = None,
    lock: Annotated[Path | None, typer.Option(
        "--lock", metavar="PATH", show_default=False,
        help="Once every item is pushed (or skipped), write the lock file of exactly those "
             "versions to PATH, as `tychoreg lock PKG==VERSION...` would, for a later job's "
             "`pull-list --locked`; nothing is written when an item fails. A lock holds one "
             "version of each package, so the list may then name each package once.")
    ] = None,
    sign_key: SignKeyOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Push many files and directories in one process and one request budget: packages
    at once (at most --concurrency), the items of one package one after another in list
    order. Every line is
    checked first (a bad one is exit 2 naming it, and nothing is pushed); a failing item
    never stops the others, every failure is reported at the end, and the exit code is
    the worst of theirs."""
    requests = _push_requests(items or [], from_file)
    if lock is not None:
        _one_version_each(requests)
    settings = settings_for(config, registry, concurrency=concurrency, part_size=part_size,
                            signing_key=sign_key)
    from ..progress import make_progress

    locked: list[Any] = []  # the LockResult, or the error that kept the lock from being made
    work = _push_many(requests, lock, locked, promote=promote_latest,
                      skip_existing=skip_existing, skip_identical=skip_identical, level=level)
    failure: PartialFailure | None = None
    display = make_progress(progress, quiet or as_json, "pushed", files=len(requests),
                            summary_last=True)
    with display as sink:
        try:
            results = execute(settings, work, sink)
        except PartialFailure as exc:
            failure, results = exc, exc.results
    _report_push_list(requests, results, failure, locked, as_json=as_json, quiet=quiet)
    display.summarize()
    if failure is not None:
        if lock is not None:
            say(f"no lock written to {lock}: not every item was pushed")
        raise failure
    if locked and isinstance(locked[0], TychoError):
        say(f"every item was pushed, but no lock was written to {lock}")
        raise locked[0]
    if locked and not as_json:
        say(f"{'wrote' if locked[0].written else 'unchanged:'} {locked[0].path} "
            f"({plural(len(locked[0].lock.packages), 'package')} locked)")


def _push_many(requests: list[Any], lock: Path | None, locked: list[Any],
               **options: Any) -> Callable[[Any], Awaitable[list[Any]]]:
    """The run of push-list: every item pushed (PartialFailure unless all were), then,
    with ``lock``, the lock of what was pushed made, its result (or the error that kept
    it from being made: the pushes stand) appended to ``locked``."""
    async def work(reg: Any) -> list[Any]:
        results = await reg.push_many(requests, **options)
        if lock is not None:
            try:
                locked.append(await reg.lock([f"{r.package}=={r.version}" for r in results],
                                             lockfile=lock))
            except TychoError as exc:  # reported after the pushes
                locked.append(exc)
        return list(results)

    return work


def _report_push_list(requests: list[Any], results: list[Any],
                      failure: PartialFailure | None, locked: list[Any], *, as_json: bool,
                      quiet: bool) -> None:
    """What push-list did, item by item: on standard output (JSON, or a line each)."""
    for created in dict.fromkeys(r.created_registry for r in results if r.created_registry):
        say(f"created a new local registry at {created}")
    for result in results:
        for warning in result.warnings:
            say(f"warning: {result.package} {result.version}: {warning}")
    if as_json:
        written = locked[0] if locked and not isinstance(locked[0], TychoError) else None
        echo_json(reports().push_list(requests, results, failure,
                                      None if written is None else str(written.path)))
    elif not quiet:
        for result in results:
            _echo_push(result)


def _one_version_each(requests: list[Any]) -> None:
    """--lock: a lock pins one version of each package, so each is named once."""
    first: dict[str, Any] = {}
    for request in requests:
        if request.package in first:
            raise UsageError(f"--lock: {first[request.package].version} and "
                             f"{request.version} are both versions of {request.package!r}, "
                             "and a lock holds one version of each package; push them "
                             "without --lock, or lock the one to pin afterwards with "
                             "tychoreg lock")
        first[request.package] = request


def _push_requests(items: list[str], from_file: str | None) -> list[Any]:
    """Every item parsed and checked, before anything is pushed: a bad line or a version
    listed twice is UsageError naming its line (``FILE line N``, ``item N``)."""
    from ..results import PushRequest

    lines = [(f"item {n}", f"item {n}", item) for n, item in enumerate(items, 1)]
    if from_file is not None:
        try:
            text = (sys.stdin.read() if from_file == "-" else
                    Path(from_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UsageError(f"cannot read {from_file}: {why}") from exc
        name = "standard input" if from_file == "-" else from_file
        lines += [(f"{name} line {n}", f"line {n}", line)
                  for n, line in enumerate(text.split("\n"), 1)]  # only \n ends a line
    requests: list[Any] = []
    first: dict[tuple[str, str], str] = {}
    for where, short, line in lines:
        if not line.split("#", 1)[0].strip():
            continue  # blank, or only a comment
        try:
            request = PushRequest.parse(line)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc.message}") from None
        key = (request.package, request.version)
        if key in first:
            raise UsageError(f"{where}: {request.package} {request.version} is on "
                             f"{first[key]} too")
        first[key] = short
        requests.append(request)
    if not requests:
        raise UsageError(f"name at least one item ({LINE_HELP}) or --from-file FILE")
    return requests


@group.command(cls=Command, short_help="Make an existing VERSION the latest of PACKAGE.")
@cli_command
def promote(
    package: PackageArg,
    version: Annotated[str, typer.Argument(
        metavar="VERSION", help="Existing version to make the latest.")],
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Make an existing VERSION the latest of PACKAGE."""
    settings = settings_for(config, registry)
    execute(settings, lambda reg: reg.promote(package, version))
    if as_json:
        echo_json(reports().document("promote", package=package, latest=version))
    else:
        out(f"promoted {package} {version} to latest")



@group.command(cls=Command, short_help="Add a signature to an existing VERSION.")
@cli_command
def sign(
    package: PackageArg,
    version: Annotated[str, typer.Argument(
        metavar="VERSION", help="Existing, complete version to sign.")],
    sign_key: SignKeyOpt = None,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Sign an existing VERSION of PACKAGE (one pushed before signing, or a second
    signer's signature beside the first): its stored bytes are checked against its
    record first (a checked download), then the signature is added to its .sig. Exit 2
    without a key; a version tycho-station pushed has no record to sign (exit 1)."""
    settings = settings_for(config, registry, signing_key=sign_key)
    result = execute(settings, lambda reg: reg.sign(package, version))
    if as_json:
        echo_json(reports().sign(result))
    else:
        out(f"signed {package} {version} (signed by {result.signed_by}, "
            f"{result.fingerprint}; {plural(result.signatures, 'signature')} now)")
