"""Publishing: init, push and promote (the registry's publish operations)."""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..units import human_size
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
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Upload FILE, DIR or standard input (-) as a new VERSION of PACKAGE. A new package
    takes FILE's name (DIR's name + .tar.zst; --localname for stdin)."""
    settings = settings_for(config, registry, concurrency=concurrency, part_size=part_size)
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
        return
    if quiet:
        return
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
        out(f"pushed {package} {version}{kind} ({human_size(result.size)}, "
             f"sha256 {result.sha256})")
    if result.promoted:
        out(f"promoted {package} {version} to latest")


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

