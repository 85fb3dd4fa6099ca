"""Running a command: its settings, its coroutine on one event loop under the signals
that end it (exit 128+N, after every transfer cleaned up), and the wrapper that turns
its errors into one message and an exit code; --debug, wherever it was given."""

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ..errors import Interrupted, TychoError
from .options import DebugOpt
from .render import fail, say

if TYPE_CHECKING:
    from pathlib import Path

    from ..api import AsyncRegistry
    from ..config import Settings
    from ..transfer import ProgressSink

T = TypeVar("T")

ROOT_OPTIONS = "tychoreg.root"  # ctx.meta key: --config/--registry given before the command


def given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` of this context was typed on the command line (not taken
    from an environment variable or the default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


_debug = False


def turn_on_debug() -> None:
    global _debug
    if not _debug:
        from ..logs import enable_debug

        _debug = True
        enable_debug()


def settings_for(config: str | None, registry: str | None, *, strict: bool = True,
                 **overrides: Any) -> "Settings":
    from ..config import SECRET_KEYS, load_settings
    from ..logs import register_secrets
    from ..storage import S3Options

    settings = load_settings(config, registry, {k: v for k, v in overrides.items()
                                                if v is not None}, strict=strict)
    if isinstance(settings.store, S3Options):
        register_secrets(settings.store.client_kwargs.get(key) for key in SECRET_KEYS)
    for warning in settings.warnings:
        say(f"warning: {warning}")
    return settings


def execute(settings: "Settings", work: Callable[["AsyncRegistry"], Awaitable[T]],
            progress: "ProgressSink | None" = None) -> T:
    """Run ``work`` on one event loop; SIGINT, SIGTERM or SIGHUP cancel it, and every
    transfer cleans up (aborts uploads, removes temp files) before the command exits
    128+N. A version whose object is published is recorded first (shielded)."""
    import os
    import signal

    import anyio

    from ..api import open_settings
    from ..lifecycle import Liveness
    from ..transfer.groups import task_group

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
                            say(f"{signal.Signals(signum).name} again: leaving without "
                                "cleanup (the next run removes temporary files)")
                            os._exit(128 + signum)
                        received.append(signum)
                        work_scope.cancel()

                tg.start_soon(watch)
                with work_scope:
                    async with open_settings(
                            settings, progress,
                            liveness=Liveness.from_environment(os.environ),
                            ask_passphrase=_ask_passphrase if sys.stdin.isatty() else None,
                    ) as registry:
                        result.append(await work(registry))
                tg.cancel_scope.cancel()

    anyio.run(main)
    if result:  # the work finished: a signal during a shielded publication waited for it
        return result[0]
    signum = received[0] if received else signal.SIGINT
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; nothing half-written "
                      "was left behind", signum)


def _ask_passphrase(path: "Path") -> bytes:
    """An encrypted signing key's passphrase, asked on the terminal (never echoed)."""
    import getpass

    return getpass.getpass(f"Passphrase for {path}: ").encode()


def execute_transfer(settings: "Settings", work: Callable[["AsyncRegistry"], Awaitable[T]], *,
                     verb: str, files: int, quiet: bool, progress: bool | None) -> T:
    """Run a command that moves bytes, with its progress display open around it."""
    from ..progress import make_progress

    with make_progress(progress, quiet, verb, files=files) as sink:
        return execute(settings, work, sink)


def cli_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Every command's errors become one line on stderr and an exit code; an unexpected
    one too (exit 3), with its traceback, redacted, only under --debug.

    Every command also takes --debug, and its --config and --registry fall back to the
    ones given before the command name (``tychoreg --registry URL list``). A command
    that declares ``ctx`` gets the click context too."""
    signature = inspect.signature(fn, eval_str=True)
    wants_ctx = "ctx" in signature.parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx: typer.Context = kwargs["ctx"] if wants_ctx else kwargs.pop("ctx")
        if kwargs.pop("debug"):
            turn_on_debug()
        root = ctx.meta.get(ROOT_OPTIONS, {})
        for name in ("config", "registry"):
            if name in kwargs and name in root and not given(ctx, name):
                kwargs[name] = root[name]
        try:
            fn(*args, **kwargs)
        except TychoError as exc:
            raise fail(exc) from None
        except KeyboardInterrupt:
            raise fail(Interrupted("interrupted")) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if _debug:
                import traceback

                say("".join(traceback.format_exception(exc)))
            say(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
            raise typer.Exit(3) from None

    keyword = inspect.Parameter.KEYWORD_ONLY
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(),
                    inspect.Parameter("debug", keyword, default=False, annotation=DebugOpt),
                    *([] if wants_ctx else
                      [inspect.Parameter("ctx", keyword, annotation=typer.Context)])])
    return wrapper

