"""The command line: parse, load settings, run one coroutine on one event loop, render,
and turn errors into messages and exit codes. Nothing else lives here.

Start-up is part of the product (tests/test_startup.py keeps it so): anything beyond
typer is imported inside the command that needs it. ``--help`` loads no settings, no
event loop and no registry; a transfer loads the engine and its store, rich only to draw
bars, the S3 stack only for an S3 registry. Annotations are evaluated as the module
loads (no ``from __future__ import annotations``): typer reads every command's hints on
every run, and strings it would compile and evaluate each time.
"""

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from . import __version__
from .defaults import DEFAULT_CONFIG
from .errors import Interrupted, OutputClosed, PartialFailure, TychoError, UsageError
from .units import human_size, plural

if TYPE_CHECKING:
    from .config import Settings
    from .registry import Registry
    from .transfer import ProgressSink

T = TypeVar("T")

HELP = f"""Versioned packages and archives on S3 (or any S3-compatible store) or in a local
directory: push, promote and pull them, many at once.

With no config file ({DEFAULT_CONFIG}) and no --registry, the registry is a local
directory in your user data directory (tychoreg info shows which), so it works on a
fresh machine with nothing set up.

--registry, --config and --debug go before or after the command name (if given
in both places, the one after it wins).
--version (-V) before the command prints tychoreg's version; after pull or verify,
--version (-v) VERSION names the package version to use: tychoreg pull PKG -v 1.0.

Exit codes: 0 done (exists: yes), 1 the answer is no (not found, already exists,
nothing to pull), 2 bad usage or config, 3 transfer failed, 128+N ended by signal N
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP: uploads aborted, temp files removed), 141
standard output closed."""

# The commands register here; the root (``app``) turns each into a click command when
# it is first looked up (see LazyCommands).
commands = typer.Typer()


class LazyCommands(MutableMapping[str, Any]):
    """The root's commands by name (click's ``Group.commands``), each built from its
    function when first looked up: typer reads the signature and makes the options, about
    0.6 ms a command, so a run builds the one it runs (the root help lists summaries)."""

    def __init__(self, source: typer.Typer, like: typer.Typer) -> None:
        from typer.main import get_command_name

        self._like = like  # the Typer whose settings the commands take
        self._infos = {info.name or get_command_name(info.callback.__name__): info
                       for info in source.registered_commands if info.callback}
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            from typer.main import get_command_from_info

            self._built[name] = get_command_from_info(
                self._infos[name], pretty_exceptions_short=self._like.pretty_exceptions_short,
                rich_markup_mode=self._like.rich_markup_mode)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._infos.pop(name, None)
        self._built.pop(name, None)

    def __contains__(self, name: object) -> bool:  # without building it
        return name in self._infos or name in self._built

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._infos, *self._built]))

    def __len__(self) -> int:
        return len(set(self._infos) | set(self._built))

    def summaries(self) -> list[tuple[str, str]]:
        """Each visible command's name and summary, read from its registration (built
        only for a command registered without one, which click derives)."""
        return [(name, info.short_help or self[name].get_short_help_str())
                for name, info in self._infos.items() if not info.hidden]


class Root(TyperGroup):
    """The root command, whose commands are built on demand."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.lazy = self.commands = LazyCommands(commands, app)

    def list_commands(self, ctx: Any) -> list[str]:  # a click Context
        return list(self.commands)  # the names, in order, without building the commands

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The list of commands in the root help, built from their summaries alone."""
        with formatter.section("Commands"):
            formatter.write_dl(self.lazy.summaries())


app = typer.Typer(
    cls=Root,
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
PackageArg = Annotated[str, typer.Argument(metavar="PACKAGE", help="Package name.")]


class Command(TyperCommand):
    """A command whose usage line names its arguments as users know them:
    ``tychoreg push [OPTIONS] PACKAGE VERSION FILE`` (typer writes ``{PACKAGE}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:  # a click Context
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
                for piece in super().collect_usage_pieces(ctx)]


_ROOT = "tychoreg.root"  # ctx.meta key: --config/--registry given before the command


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` of this context was typed on the command line (not taken
    from an environment variable or the default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


_debug = False


def _enable_debug() -> None:
    global _debug
    if not _debug:
        from .logs import enable_debug

        _debug = True
        enable_debug()


def _to_devnull(stream: Any) -> None:
    """Point a closed stream's descriptor at /dev/null, so that what is still buffered
    (and Python's flush at exit) goes nowhere instead of failing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class SafeStream:
    """Standard error that never aborts work: progress and logs written to a closed
    terminal or pipe (SSH dropped, ``2>&1 | head``) are dropped."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _broken(self) -> None:
        _to_devnull(self._stream)

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):
            self._broken()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._broken()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _out(text: str) -> None:
    """Write to standard output; a closed one (``tychoreg list | head``) ends the command
    quietly with exit 141, with no process-wide SIGPIPE (that would also kill uploads
    whose server resets a socket)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError) as exc:
        _to_devnull(sys.stdout)
        raise OutputClosed("standard output was closed") from exc


def _say(message: str) -> None:
    from .logs import redact

    SafeStream(sys.stderr).write(f"tychoreg: {redact(message)}\n")


def _fail(exc: TychoError) -> typer.Exit:
    if isinstance(exc, OutputClosed):
        _to_devnull(sys.stdout)
        return typer.Exit(exc.exit_code)
    if isinstance(exc, PartialFailure):
        for item, err in exc.failures:
            _say(f"{item}: {err.message}")
    _say(exc.message)
    return typer.Exit(exc.exit_code)


def _settings(config: str | None, registry: str | None, *, strict: bool = True,
              **overrides: Any) -> "Settings":
    from .config import SECRET_KEYS, load_settings
    from .logs import register_secrets
    from .storage import S3Options

    settings = load_settings(config, registry, {k: v for k, v in overrides.items()
                                                if v is not None}, strict=strict)
    if isinstance(settings.store, S3Options):
        register_secrets(settings.store.client_kwargs.get(key) for key in SECRET_KEYS)
    for warning in settings.warnings:
        _say(f"warning: {warning}")
    return settings


def _run(settings: "Settings", work: Callable[["Registry"], Awaitable[T]],
         progress: "ProgressSink | None" = None) -> T:
    """Run ``work`` on one event loop; SIGINT, SIGTERM or SIGHUP cancel it, and every
    transfer cleans up (aborts uploads, removes temp files) before the command exits
    128+N. A version whose object is published is recorded first (shielded)."""
    import os
    import signal

    import anyio

    from .api import open_settings
    from .lifecycle import Liveness
    from .transfer.groups import task_group

    received: list[int] = []
    result: list[T] = []

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM,
                                        signal.SIGHUP) as signals:
            async with task_group() as tg:
                work_scope = anyio.CancelScope()

                async def watch() -> None:
                    async for signum in signals:
                        if received:  # a second signal: the user will not wait for cleanup
                            _say(f"{signal.Signals(signum).name} again: leaving without "
                                 "cleanup (the next run removes temporary files)")
                            os._exit(128 + signum)
                        received.append(signum)
                        work_scope.cancel()

                tg.start_soon(watch)
                with work_scope:
                    async with open_settings(settings, progress, liveness=Liveness
                                             .from_environment(os.environ)) as registry:
                        result.append(await work(registry))
                tg.cancel_scope.cancel()

    anyio.run(main)
    if result:  # the work finished: a signal during a shielded publication waited for it
        return result[0]
    signum = received[0] if received else signal.SIGINT
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; nothing half-written "
                      "was left behind", signum)


def _transfer(settings: "Settings", work: Callable[["Registry"], Awaitable[T]], *, verb: str,
              files: int, quiet: bool, progress: bool | None) -> T:
    """Run a command that moves bytes, with its progress display open around it."""
    from .progress import make_progress

    with make_progress(progress, quiet, verb, files=files) as sink:
        return _run(settings, work, sink)


def _command(fn: Callable[..., None]) -> Callable[..., None]:
    """Every command's errors become one line on stderr and an exit code; an unexpected
    one too (exit 3), with its traceback, redacted, only under --debug.

    Every command also takes --debug, and its --config and --registry fall back to the
    ones given before the command name (``tychoreg --registry URL list``)."""
    signature = inspect.signature(fn, eval_str=True)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx: typer.Context = kwargs.pop("ctx")
        if kwargs.pop("debug"):
            _enable_debug()
        root = ctx.meta.get(_ROOT, {})
        for name in ("config", "registry"):
            if name in kwargs and name in root and not _given(ctx, name):
                kwargs[name] = root[name]
        try:
            fn(*args, **kwargs)
        except TychoError as exc:
            raise _fail(exc) from None
        except KeyboardInterrupt:
            raise _fail(Interrupted("interrupted")) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if _debug:
                import traceback

                _say("".join(traceback.format_exception(exc)))
            _say(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
            raise typer.Exit(3) from None

    keyword = inspect.Parameter.KEYWORD_ONLY
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(),
                    inspect.Parameter("debug", keyword, default=False, annotation=DebugOpt),
                    inspect.Parameter("ctx", keyword, annotation=typer.Context)])
    return wrapper


def _echo_json(data: object) -> None:
    import json  # not loaded by --help

    _out(json.dumps(data, indent=2))


def _report() -> Any:
    from . import report

    return report


@commands.command(cls=Command, short_help="Create PACKAGE and the file name pulls save it as.")
@_command
def init(
    package: PackageArg,
    filename: Annotated[str, typer.Argument(
        metavar="FILENAME", help="File name pulls are saved as (localname).")],
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Create a package: PKG/tycho.json with its local file name and no latest version."""
    settings = _settings(config, registry)
    _run(settings, lambda reg: reg.init(package, filename))
    if as_json:
        _echo_json(_report().document("init", package=package, localname=filename))
    else:
        _out(f"initialized {package} (pulls save as {filename})")


@commands.command(cls=Command,
                  short_help="Upload a file, a directory or stdin as a new VERSION.")
@_command
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
    settings = _settings(config, registry, concurrency=concurrency, part_size=part_size)
    what: Any = sys.stdin.buffer if source == "-" else Path(source)
    result = _transfer(settings, lambda reg: reg.push(
        package, version, what, promote=promote_latest, localname=localname, level=level,
        skip_existing=skip_existing, skip_identical=skip_identical), verb="pushed", files=1,
        quiet=quiet or as_json, progress=progress)
    if result.created_registry:
        _say(f"created a new local registry at {result.created_registry}")
    for warning in result.warnings:
        _say(f"warning: {warning}")
    if as_json:
        _echo_json(_report().push(result))
        return
    if quiet:
        return
    if result.initialized:
        _out(f"initialized {package}")
    if result.skipped:
        how = {True: "is already there with the same content",
               False: "is already there with other content (kept as it is)",
               None: "is already there, or being pushed by another push (content not "
                     "compared)"}[result.same_content]
        _out(f"{package} {version} {how}; nothing uploaded")
    else:
        kind = " (a directory, tar+zstd)" if result.tree_sha256 else ""
        _out(f"pushed {package} {version}{kind} ({human_size(result.size)}, "
             f"sha256 {result.sha256})")
    if result.promoted:
        _out(f"promoted {package} {version} to latest")


@commands.command(cls=Command, short_help="Make an existing VERSION the latest of PACKAGE.")
@_command
def promote(
    package: PackageArg,
    version: Annotated[str, typer.Argument(
        metavar="VERSION", help="Existing version to make the latest.")],
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Make an existing VERSION the latest of PACKAGE."""
    settings = _settings(config, registry)
    _run(settings, lambda reg: reg.promote(package, version))
    if as_json:
        _echo_json(_report().document("promote", package=package, latest=version))
    else:
        _out(f"promoted {package} {version} to latest")


@commands.command(cls=Command, short_help="Download a version of PACKAGE unless already current.")
@_command
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
    outdir: Annotated[str | None, typer.Option(
        "--outdir", metavar="DIR", envvar="TYCHOREG_OUTDIR", show_default=False,
        help="Directory for pulls (default: tycho.outdir, else tycho_packages).")] = None,
    max_unpacked: MaxUnpackedOpt = None,
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
    settings = _settings(config, registry, concurrency=concurrency, part_size=part_size,
                         outdir=outdir)
    to_stdout = outfile is not None and (str(outfile) == "-" or _is_stdout(outfile))
    if to_stdout and as_json:
        raise UsageError("--json and --outfile - both want standard output; choose one")
    target: Any = sys.stdout.buffer if to_stdout else outfile
    result = _transfer(settings, lambda reg: reg.pull(
        request, force=force, outfile=target, raw=raw, fallback=tuple(fallback or ()),
        max_unpacked=limit),
        verb="pulled", files=1, quiet=quiet or as_json, progress=progress)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    if as_json:
        _echo_json(_report().pull(result))
    elif to_stdout:
        if not quiet:
            _say(f"pulled {result.package} {result.version} to standard output "
                 f"({human_size(result.size)}){_hit(result, fallback)}")
    elif not quiet:
        _echo_pull(result, fallback)


def _max_unpacked(value: str | None) -> int | None:
    from .config import parse_size

    return None if value is None else parse_size(value, "--max-unpacked")


def _is_stdout(path: Path) -> bool:
    from .localfs import same_as_stdout

    return same_as_stdout(path)


def _hit(result: Any, fallback: list[str] | None) -> str:
    if not fallback:
        return ""
    return " (exact hit)" if result.exact else " (fallback: not the exact version asked)"


def _pull_request(package: str, version: str | None) -> Any:
    from .names import check_package, check_version
    from .results import PullRequest

    if version is None:
        return PullRequest.parse(package)
    return PullRequest(check_package(package), check_version(version))


def _echo_pull(result: Any, fallback: list[str] | None = None) -> None:
    if result.skipped:
        _out(f"{result.package} {result.version} is up to date: {result.path}"
             f"{_hit(result, fallback)}")
    else:
        _out(f"pulled {result.package} {result.version} -> {result.path} "
             f"({human_size(result.size)}){_hit(result, fallback)}")


@commands.command("pull-list", cls=Command,
                  short_help="Pull many packages at once; failures reported at the end.")
@_command
def pull_list(
    packages: Annotated[list[str] | None, typer.Argument(
        metavar="PACKAGE...", help="Packages to pull: PKG (its latest) or PKG==VERSION.",
        show_default=False)] = None,
    from_file: Annotated[Path | None, typer.Option(
        "--from-file", metavar="FILE", show_default=False,
        help="Read more items from FILE, one a line ('#' starts a comment); - reads "
             "standard input.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Download even when local copies are current.")] = False,
    outdir: Annotated[str | None, typer.Option(
        "--outdir", metavar="DIR", envvar="TYCHOREG_OUTDIR", show_default=False,
        help="Directory for pulls (default: tycho.outdir, else tycho_packages).")] = None,
    max_unpacked: MaxUnpackedOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Pull many packages at once; every failure is reported at the end (what was
    pulled is still listed)."""
    from .results import PullRequest

    items = list(packages or [])
    if from_file is not None:
        try:
            lines = (sys.stdin.read() if str(from_file) == "-" else
                     from_file.read_text(encoding="utf-8")).splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read {from_file}: {exc.strerror or exc}") from exc
        items += [line.split("#", 1)[0].strip() for line in lines]
        items = [item for item in items if item]
    if not items:
        raise UsageError("name at least one package (or --from-file FILE)")
    requests = [PullRequest.parse(item) for item in items]
    limit = _max_unpacked(max_unpacked)
    settings = _settings(config, registry, concurrency=concurrency, part_size=part_size,
                         outdir=outdir)
    from .progress import make_progress

    failure: PartialFailure | None = None
    # the items (stdout) first, then the summary (stderr): in a CI log too
    display = make_progress(progress, quiet or as_json, "pulled", files=len(requests),
                            summary_last=True)
    with display as sink:
        try:
            results = _run(settings, lambda reg: reg.pull_many(requests, force=force,
                                                                   max_unpacked=limit), sink)
        except PartialFailure as exc:
            failure, results = exc, exc.results
    for result in results:
        for warning in result.warnings:
            _say(f"warning: {warning}")
    if as_json:
        _echo_json(_report().pull_list(requests, results, failure))
    elif not quiet:
        for result in results:
            _echo_pull(result)
    display.summarize()
    if failure is not None:
        raise failure


@commands.command(cls=Command, short_help="Re-check a stored version against its SHA-256 record.")
@_command
def verify(
    package: PackageArg,
    version: VersionOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Finish what an interrupted push left: record a version whose "
        "upload completed (from the stored bytes' SHA-256), clear one whose upload did "
        "not, restore a lost copy of the record in tycho.json.")] = False,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
    concurrency: ConcurrencyOpt = None, part_size: PartSizeOpt = None,
    quiet: QuietOpt = False, progress: ProgressOpt = None,
) -> None:
    """Re-check a stored version against its SHA-256 record (size and MD5 for versions
    pushed by tycho-station) without keeping a file; exit 3 if it does not match."""
    request = _pull_request(package, version)
    settings = _settings(config, registry, concurrency=concurrency, part_size=part_size)
    result = _transfer(settings, lambda reg: reg.verify(request, repair=repair),
                       verb="verified", files=1, quiet=quiet or as_json, progress=progress)
    if as_json:
        _echo_json(_report().verify(result))
        return
    if result.repaired:
        _out(f"{result.package} {result.version}: {result.repaired}")
    if not quiet:
        _out(f"{result.package} {result.version} is intact ({human_size(result.size)}, "
             f"sha256 {result.sha256}; checked {result.checked})")


@commands.command("list", cls=Command, short_help="Every package with its latest version.")
@_command
def list_(
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Every package with its latest version."""
    settings = _settings(config, registry)
    packages = _run(settings, lambda reg: reg.list_packages())
    if as_json:
        _echo_json(_report().packages(packages))
        return
    rows = [(p.name, p.latest or "-", p.localname or "-", p.problem or "") for p in packages]
    _table(("PACKAGE", "LATEST", "LOCALNAME", "NOTE"), rows)


@commands.command("list-versions", cls=Command,
                  short_help="Every version of PACKAGE, oldest to newest.")
@_command
def list_versions(
    package: PackageArg,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Every version of PACKAGE, oldest to newest (natural order: 1.9 < 1.10)."""
    settings = _settings(config, registry)
    versions = _run(settings, lambda reg: reg.list_versions(package))
    if as_json:
        _echo_json(_report().versions(package, versions))
        return
    for v in versions:
        _out(v.version)


@commands.command(cls=Command, short_help="Say whether VERSION of PACKAGE exists (exit 0 or 1).")
@_command
def exists(
    package: PackageArg,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="Version.")],
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """Say whether VERSION of PACKAGE exists; exit 0 if it does, 1 if not."""
    settings = _settings(config, registry)
    found = _run(settings, lambda reg: reg.exists(package, version))
    if as_json:
        _echo_json(_report().document("exists", package=package, version=version,
                                      exists=found))
    else:
        _out(f"{package} {version} {'exists' if found else 'does not exist'}")
    if not found:
        raise typer.Exit(1)


@commands.command(cls=Command, short_help="What is known of PACKAGE, or of one VERSION of it.")
@_command
def show(
    package: PackageArg,
    version: Annotated[str | None, typer.Option(
        "--version", "-v", metavar="VERSION", show_default=False,
        help="Describe this version (latest: the latest one). Without it, show describes "
             "the package.")] = None,
    as_json: JsonOpt = False, config: ConfigOpt = None, registry: RegistryOpt = None,
) -> None:
    """What is known of PACKAGE (localname, latest, number of versions, total size), or
    with --version of one version (size, sha256, pushed_at, pushing tool, format).
    Downloads nothing."""
    from .names import check_version

    if version is not None and version != "latest":
        check_version(version)
    settings = _settings(config, registry)
    result = _run(settings, lambda reg: reg.show(package, version))
    if as_json:
        _echo_json(_report().show(result))
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
    _table(("FIELD", "VALUE"), rows)


@commands.command(cls=Command, short_help="Delete versions of PACKAGE (all or none), or all of it.")
@_command
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
    settings = _settings(config, registry)
    result = _run(settings, lambda reg: reg.delete(package, versions or [], force=force,
                                                   dry_run=dry_run, everything=everything))
    if as_json:
        _echo_json(_report().delete(result))
        return
    verb = "would delete" if dry_run else "deleted"
    for version in result.versions:
        _out(f"{verb} {package} {version}")
    if result.package_removed:
        _out(f"{'would remove' if dry_run else 'removed'} package {package}")
    elif result.latest_cleared:
        _out(f"{package} has no latest version {'then' if dry_run else 'now'}")


@commands.command(cls=Command, short_help="Keep the N newest versions of PACKAGE, delete the rest.")
@_command
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
    from .retention import parse_age

    age = parse_age(older_than) if older_than is not None else None
    settings = _settings(config, registry)
    result = _run(settings, lambda reg: reg.prune(package, keep=keep, older_than=age,
                                                  dry_run=dry_run))
    if as_json:
        _echo_json(_report().prune(result))
        return
    for version in result.finished:
        _out(f"{'would finish' if dry_run else 'finished'} the interrupted push or "
             f"deletion of {package} {version}")
    if result.aborted_uploads:
        _out(f"{'would abort' if dry_run else 'aborted'} "
             f"{plural(result.aborted_uploads, 'multipart upload')} older than a day")
    for version in result.deleted:
        _out(f"{'would delete' if dry_run else 'deleted'} {package} {version}")
    _out(f"{package}: {plural(len(result.kept), 'version')} kept, {len(result.deleted)} "
         f"{'to delete' if dry_run else 'deleted'}")


@commands.command(cls=Command, short_help="Where the registry is and which settings apply.")
@_command
def info(
    config: ConfigOpt = None, registry: RegistryOpt = None, as_json: JsonOpt = False,
    probe: Annotated[bool, typer.Option(
        "--probe", help="Also ask the store whether it honours conditional writes, by "
        "writing and removing a probe object under the registry root.")] = False,
) -> None:
    """Where the registry is and which settings apply (no network unless --probe)."""
    import os

    from .config import SECRET_KEYS
    from .logs import redact_url
    from .storage import S3Options

    settings = _settings(config, registry, strict=False)
    data: dict[str, Any] = {
        "version": __version__,
        "config": str(settings.config_path) if settings.config_path else None,
        "backend": settings.backend,
        "registry": redact_url(settings.location),
        "outdir": str(settings.outdir),
        "concurrency": settings.transfer.concurrency,
        "part_size": human_size(settings.transfer.part_size),
    }
    for unset in settings.unset:
        data.setdefault("unset", []).append(unset)
    if isinstance(settings.store, S3Options):
        kwargs = settings.store.client_kwargs
        env = os.environ
        endpoint = (kwargs.get("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3")
                    or env.get("AWS_ENDPOINT_URL"))
        data["endpoint_url"] = redact_url(str(endpoint)) if endpoint else None
        data["region"] = (kwargs.get("region_name") or env.get("AWS_REGION")
                          or env.get("AWS_DEFAULT_REGION"))
        data["credentials"] = ("from the config" if kwargs.get(SECRET_KEYS[0])
                               else "the AWS credential chain")
        data["connect_timeout"] = settings.store.connect_timeout  # seconds
        data["read_timeout"] = settings.store.read_timeout
    if probe:
        if settings.unset:
            raise UsageError("cannot --probe while a config value is unset: "
                             + "; ".join(settings.unset))
        found = _run(settings, lambda reg: reg.probe())
        data["conditional_writes"] = ("honoured" if found.if_none_match and found.if_match
                                      else "IGNORED (If-None-Match: "
                                      f"{'ok' if found.if_none_match else 'ignored'}, If-Match: "
                                      f"{'ok' if found.if_match else 'ignored'})")
    if as_json:
        _echo_json({"schema": 1, "command": "info", **data})
        return
    _table(("SETTING", "VALUE"), [(k, "-" if v is None else
                                   "; ".join(v) if isinstance(v, list) else str(v))
                                  for k, v in data.items()])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table on a terminal; tab-separated lines for scripts."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, box=None, highlight=False)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    for row in rows:
        _out("\t".join(row).rstrip())


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tychoreg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=version_callback, is_eager=True,
        help="Print tychoreg's version and exit. (After pull or verify, --version/-v "
             "VERSION names a package version.)")] = False,
    config: ConfigOpt = None, registry: RegistryOpt = None,
    debug: DebugOpt = False,
) -> None:
    ctx.meta[_ROOT] = {name: value for name, value in (("config", config),
                                                       ("registry", registry))
                       if _given(ctx, name)}
    if debug:
        _enable_debug()


def main() -> None:
    sys.stderr = SafeStream(sys.stderr)
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("tychoreg: interrupted\n")
        sys.exit(130)
