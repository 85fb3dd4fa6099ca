"""What the commands share on their command lines: the options and arguments (as
``Annotated`` hints, one definition each) and the command class that writes usage lines."""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from ..defaults import DEFAULT_CONFIG

ConfigOpt = Annotated[str | None, typer.Option(
    "--config", "-c", metavar="PATH", envvar="TYCHOREG_CONFIG", show_default=False,
    help=f"Config file (default: {DEFAULT_CONFIG} if it exists).")]
RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", "-r", metavar="URL", envvar="TYCHOREG_REGISTRY", show_default=False,
    help="Registry to use instead of the config's: s3://BUCKET/PREFIX or a directory path.")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    "--concurrency", "-j", min=1, max=256, metavar="N", envvar="TYCHOREG_CONCURRENCY",
    show_default=False,
    help="Requests in flight at once, shared by every file of the command (default 32; "
         "config key tycho.concurrency).")]
PartSizeOpt = Annotated[str | None, typer.Option(
    "--part-size", metavar="SIZE", envvar="TYCHOREG_PART_SIZE", show_default=False,
    help="Part size for multipart uploads and ranged downloads, e.g. 8MiB (5MiB to 5GiB; "
         "default 8MiB; config key tycho.part_size). An upload keeps at most 40 MiB of "
         "parts in memory (at least 4 parts).")]
MaxUnpackedOpt = Annotated[str | None, typer.Option(
    "--max-unpacked", metavar="SIZE", show_default=False,
    help="The most a directory package without a recorded tree_size may unpack to, e.g. "
         "20GiB (default: 64 times its compressed size, at least 8GiB). A recorded "
         "tree_size is always the exact bound.")]
OutdirOpt = Annotated[str | None, typer.Option(
    "--outdir", metavar="DIR", envvar="TYCHOREG_OUTDIR", show_default=False,
    help="Directory for pulls (default: tycho.outdir, else tycho_packages).")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Print nothing but errors.")]
ProgressOpt = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", show_default=False,
    help="Force progress bars on or off (default: bars on a terminal, a plain log elsewhere).")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help='Print one JSON document on stdout ("schema": 1; keys in the README).')]
VersionOpt = Annotated[str | None, typer.Option(
    "--version", "-v", metavar="VERSION", show_default=False,
    help="Package version (default: the latest). tychoreg's own version: tychoreg -V.")]
DebugOpt = Annotated[bool, typer.Option(
    "--debug", envvar="TYCHOREG_DEBUG",
    help="Log every request and retry (ours and botocore's) to stderr, secrets "
         "redacted; show tracebacks of internal errors.")]
SignKeyOpt = Annotated[Path | None, typer.Option(
    "--sign-key", metavar="PATH", show_default=False,
    help="Sign with this SSH private key (ssh-keygen's; ed25519, ecdsa or rsa): the "
         "version's .sig names it as the signer (default: TYCHOREG_SIGNING_KEY, else "
         "config key tycho.signing_key; an encrypted key's passphrase comes from "
         "TYCHOREG_SIGNING_KEY_PASSPHRASE, else a prompt on a terminal).")]
AllowedSignersOpt = Annotated[Path | None, typer.Option(
    "--allowed-signers", metavar="FILE", show_default=False,
    help="Require a valid signature from a signer this ssh-keygen allowed_signers file "
         "allows (namespace tychoreg): any other version is refused (exit 3) before a "
         "byte is written (default: TYCHOREG_ALLOWED_SIGNERS, else config key "
         "tycho.allowed_signers; none: signatures are not checked).")]
PackageArg = Annotated[str, typer.Argument(metavar="PACKAGE", help="Package name.")]


class Command(TyperCommand):
    """A command whose usage line names its arguments as users know them:
    ``tychoreg push [OPTIONS] PACKAGE VERSION FILE`` (typer writes ``{PACKAGE}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:  # a click Context
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
                for piece in super().collect_usage_pieces(ctx)]


ItemsFileOpt = Annotated[Path | None, typer.Option(
    "--from-file", metavar="FILE", show_default=False,
    help="Read more items from FILE, one a line ('#' starts a comment); - reads "
         "standard input.")]


def list_items(items: list[str], from_file: Path | None) -> list[str]:
    """The items of pull-list and lock: the arguments, then the lines of ``from_file``
    (``-``: standard input), blank lines and ``#`` comments dropped."""
    from ..errors import UsageError

    if from_file is not None:
        try:
            lines = (sys.stdin.read() if str(from_file) == "-" else
                     from_file.read_text(encoding="utf-8")).splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read {from_file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError:
            raise UsageError(f"cannot read {from_file}: not UTF-8 text") from None
        items = [*items, *(line.split("#", 1)[0].strip() for line in lines)]
    return [item for item in items if item.strip()]
