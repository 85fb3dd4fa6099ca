"""Removing versions: delete (all or none, or a whole package) and prune (keep the
newest, finish what was cut short)."""

from typing import Annotated

import typer

from ..units import plural
from .options import Command, ConfigOpt, JsonOpt, PackageArg, RegistryOpt
from .render import echo_json, out, reports
from .run import cli_command, execute, settings_for

group = typer.Typer()  # these commands; the root (cli/__init__.py) lists every group in order


@group.command(cls=Command, short_help="Delete versions of PACKAGE (all or none), or all of it.")
@cli_command
def delete(
    package: PackageArg,
    versions: Annotated[list[str] | None, typer.Argument(
        metavar="[VERSION]...", help="Versions to delete.", show_default=False)] = None,
    everything: Annotated[bool, typer.Option(
        "--all", help="Remove the whole package: every version (the latest too, no "
        "--force needed), its multipart uploads, then tycho.json.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Also delete the latest version (latest becomes unset).")]
        = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check and say what would be deleted; delete nothing.")] = False,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Delete versions of PACKAGE, or with --all the whole package. Every version is
    checked first and nothing is deleted if one is refused: a missing version (exit 1)
    or the latest without --force (exit 1). A deletion cut short is never trusted by a
    pull; the same command run again (or prune) finishes it."""
    settings = settings_for(config, registry)
    result = execute(settings, lambda reg: reg.delete(
        package, *(versions or []), force=force, dry_run=dry_run, everything=everything))
    if as_json:
        echo_json(reports().delete(result))
        return
    verb = "would delete" if dry_run else "deleted"
    for version in result.versions:
        out(f"{verb} {package} {version}")
    if result.package_removed:
        out(f"{'would remove' if dry_run else 'removed'} package {package}")
    elif result.latest_cleared:
        out(f"{package} has no latest version {'then' if dry_run else 'now'}")


@group.command(cls=Command, short_help="Keep the N newest versions of PACKAGE, delete the rest.")
@cli_command
def prune(
    package: PackageArg,
    keep: Annotated[int, typer.Option(
        "--keep", min=0, metavar="N", show_default=False,
        help="How many of the most recently pushed versions to keep (latest is always "
             "kept besides).")],
    older_than: Annotated[str | None, typer.Option(
        "--older-than", metavar="AGE", show_default=False,
        help="Delete only versions pushed longer ago than AGE: 30d, 12h, 2w, 90m.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Keep the N most recently pushed versions of PACKAGE and its latest; delete the
    rest (with --older-than, only those older). Also aborts the package's multipart
    uploads older than a day and finishes interrupted pushes and deletions."""
    from ..retention import parse_age

    age = parse_age(older_than) if older_than is not None else None
    settings = settings_for(config, registry)
    result = execute(settings, lambda reg: reg.prune(package, keep=keep, older_than=age,
                                                     dry_run=dry_run))
    if as_json:
        echo_json(reports().prune(result))
        return
    for version in result.finished:
        out(f"{'would finish' if dry_run else 'finished'} the interrupted push or "
             f"deletion of {package} {version}")
    if result.aborted_uploads:
        out(f"{'would abort' if dry_run else 'aborted'} "
             f"{plural(result.aborted_uploads, 'multipart upload')} older than a day")
    for version in result.deleted:
        out(f"{'would delete' if dry_run else 'deleted'} {package} {version}")
    out(f"{package}: {plural(len(result.kept), 'version')} kept, {len(result.deleted)} "
         f"{'to delete' if dry_run else 'deleted'}")

