"""Questions that download nothing: list, list-versions, exists and show."""

from typing import Annotated

import typer

from ..units import human_size
from .options import AllowedSignersOpt, Command, ConfigOpt, JsonOpt, PackageArg, RegistryOpt
from .render import echo_json, out, reports, signature_lines, table
from .run import cli_command, execute, settings_for

group = typer.Typer()  # these commands; the root (cli/__init__.py) lists every group in order


@group.command("list", cls=Command, short_help="Every package with its latest version.")
@cli_command
def list_(
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Every package with its latest version."""
    settings = settings_for(config, registry)
    packages = execute(settings, lambda reg: reg.packages())
    if as_json:
        echo_json(reports().packages(packages))
        return
    rows = [(p.name, p.latest or "-", p.localname or "-", p.problem or "") for p in packages]
    table(("PACKAGE", "LATEST", "LOCALNAME", "NOTE"), rows)


@group.command("list-versions", cls=Command,
               short_help="Every version of PACKAGE, oldest to newest.")
@cli_command
def list_versions(
    package: PackageArg,
    allowed_signers: AllowedSignersOpt = None,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Every version of PACKAGE, oldest to newest (natural order: 1.9 < 1.10); --json
    says which are signed, and under --allowed-signers by whom (show --version V lists
    every signature)."""
    settings = settings_for(config, registry, allowed_signers=allowed_signers)
    versions = execute(settings, lambda reg: reg.versions(package))
    if as_json:
        echo_json(reports().versions(package, versions))
        return
    for v in versions:
        out(v.version)


@group.command(cls=Command, short_help="Say whether VERSION of PACKAGE exists (exit 0 or 1).")
@cli_command
def exists(
    package: PackageArg,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="Version.")],
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Say whether VERSION of PACKAGE exists; exit 0 if it does, 1 if not."""
    settings = settings_for(config, registry)
    found = execute(settings, lambda reg: reg.exists(package, version))
    if as_json:
        echo_json(reports().document("exists", package=package, version=version,
                                      exists=found))
    else:
        out(f"{package} {version} {'exists' if found else 'does not exist'}")
    if not found:
        raise typer.Exit(1)


@group.command(cls=Command, short_help="What is known of PACKAGE, or of one VERSION of it.")
@cli_command
def show(
    package: PackageArg,
    version: Annotated[str | None, typer.Option(
        "--version", "-v", metavar="VERSION", show_default=False,
        help="Describe this version (latest: the latest one). Without it, show describes "
             "the package.")] = None,
    allowed_signers: AllowedSignersOpt = None,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """What is known of PACKAGE (localname, latest, number of versions, total size), or
    with --version of one version (size, sha256, pushed_at, pushing tool, format, its
    signatures checked: under --allowed-signers, whom each is allowed as). Downloads
    nothing."""
    from ..names import check_version

    if version is not None and version != "latest":
        check_version(version)
    settings = settings_for(config, registry, allowed_signers=allowed_signers)
    result = execute(settings, lambda reg: reg.show(package, version))
    if as_json:
        echo_json(reports().show(result))
        return
    rows = [("package", result.package), ("localname", result.localname or "-"),
            ("latest", result.latest or "-"), ("versions", str(result.versions)),
            ("size", human_size(result.size))]
    if result.version is not None:
        v = result.version
        rows = [row for row in rows if row[0] != "versions"]
        rows[-1] = ("size", human_size(v.size))
        rows[1:1] = [("version", v.version)]
        rows += [("sha256", v.sha256 or "- (pushed by tycho-station: checked by size and MD5)"),
                 ("pushed_at", v.pushed_at or "-"), ("tool", result.tool or "-"),
                 ("format", v.format), ("state", v.state)]
        if result.tree_sha256:
            rows.append(("tree_sha256", result.tree_sha256))
        rows += [("signature", line) for line in signature_lines(result.signatures)] or \
            [("signature", "- (unsigned)")]
    table(("FIELD", "VALUE"), rows)

