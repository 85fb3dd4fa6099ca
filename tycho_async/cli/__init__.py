"""The command line: the ``tychoreg`` app, its root options and ``main``; the commands
live in one module per group (``publish``, ``pull``, ``lock``, ``queries``, ``delete``,
``info``), beside what they share: ``options`` (the command-line options), ``run``
(settings, one coroutine on one event loop, signals, errors into messages and exit
codes) and ``render`` (standard output and error, tables, JSON).

Start-up is part of the product (tests/test_startup.py keeps it so): anything beyond
typer is imported inside the command that needs it. ``--help`` loads no settings, no
event loop and no registry; a transfer loads the engine and its store, rich only to draw
bars, the S3 stack only for an S3 registry. Annotations are evaluated as the modules
load (no ``from __future__ import annotations`` in this package): typer reads every
command's hints on every run, and strings it would compile and evaluate each time.
"""

import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.models import CommandInfo

from .. import __version__
from ..defaults import DEFAULT_CONFIG
from .options import ConfigOpt, DebugOpt, RegistryOpt
from .render import SafeStream
from .run import ROOT_OPTIONS, given, turn_on_debug

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

# Every command, in the order the root help lists them, by the module (group) that
# defines it: a run imports the group of the command it runs, the root help every group
# (tests/test_startup.py holds this table to the groups' registrations).
GROUPS = {
    "publish": ("init", "push", "push-list", "promote", "sign"),
    "pull": ("pull", "pull-list", "verify"),
    "lock": ("lock",),
    "queries": ("list", "list-versions", "exists", "show"),
    "delete": ("delete", "prune"),
    "info": ("info",),
}


def group_commands(group: str) -> list[CommandInfo]:
    """The commands the module ``group`` registers, in its order (importing it, by the
    import statement's own path, which ``-X importtime`` traces; importlib's is not)."""
    name = f"{__name__}.{group}"
    __import__(name)
    registered: list[CommandInfo] = sys.modules[name].group.registered_commands
    return registered


def command_name(info: CommandInfo) -> str:
    from typer.main import get_command_name

    return info.name or get_command_name(info.callback.__name__ if info.callback else "")


class LazyCommands(MutableMapping[str, Any]):
    """The root's commands by name (click's ``Group.commands``), each built from its
    function when first looked up: typer reads the signature and makes the options, about
    0.6 ms a command, so a run builds the one it runs (the root help lists summaries), and
    imports only that command's group."""

    def __init__(self, like: typer.Typer) -> None:
        self._like = like  # the Typer whose settings the commands take
        self._where = {name: group for group, names in GROUPS.items() for name in names}
        self._infos: dict[str, CommandInfo] = {}
        self._built: dict[str, Any] = {}

    def _info(self, name: str) -> CommandInfo:
        """The registration of ``name`` (KeyError for no such command)."""
        if name not in self._infos:
            for info in group_commands(self._where[name]):
                self._infos[command_name(info)] = info
        return self._infos[name]

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            from typer.main import get_command_from_info

            self._built[name] = get_command_from_info(
                self._info(name), pretty_exceptions_short=self._like.pretty_exceptions_short,
                rich_markup_mode=self._like.rich_markup_mode)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._where.pop(name, None)
        self._infos.pop(name, None)
        self._built.pop(name, None)

    def __contains__(self, name: object) -> bool:  # without importing or building it
        return name in self._where or name in self._built

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._where, *self._built]))

    def __len__(self) -> int:
        return len(set(self._where) | set(self._built))

    def summaries(self) -> list[tuple[str, str]]:
        """Each visible command's name and summary, read from its registration (built
        only for a command registered without one, which click derives)."""
        return [(name, info.short_help or self[name].get_short_help_str())
                for name in self._where if not (info := self._info(name)).hidden]


class Root(TyperGroup):
    """The root command, whose commands are built on demand."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.lazy = self.commands = LazyCommands(app)

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
    ctx.meta[ROOT_OPTIONS] = {name: value for name, value in (("config", config),
                                                              ("registry", registry))
                              if given(ctx, name)}
    if debug:
        turn_on_debug()


def main() -> None:
    sys.stderr = SafeStream(sys.stderr)
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("tychoreg: interrupted\n")
        sys.exit(130)
