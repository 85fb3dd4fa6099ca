"""The ``tychoreg`` executable: a warm ``pull-list --locked`` (every locked package
already current) answered from the local files alone, without the CLI framework (typer
and click cost several times the rest of such a run); any other command line, or any
state but "everything current", goes to the full CLI (``cli.main``), which then gives
its own output, messages and exit codes.

The lean path accepts exactly the spellings the typer command accepts for its few
options (long and short, ``--opt=value``, --config and --registry before or after the
command name) and gives byte-identical output (tests/test_entry.py holds it to the full
CLI). Anything it does not know, it hands over untouched. Under allowed signers (the
option, TYCHOREG_ALLOWED_SIGNERS or tycho.allowed_signers) it applies the same check
with no request (``pinned.check_signed``: the lock's signer allowed, its statement
digest the entry's own); any refusal goes to the full CLI, which says why (exit 3).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

COMMAND = "pull-list"
# option spelling -> (name, takes a value), before the command name and after it
ROOT = {"--config": ("config", True), "-c": ("config", True),
        "--registry": ("registry", True), "-r": ("registry", True)}
AFTER = {**ROOT, "--locked": ("locked", False), "--lockfile": ("lockfile", True),
         "--outdir": ("outdir", True), "--quiet": ("quiet", False), "-q": ("quiet", False),
         "--json": ("json", False), "--allowed-signers": ("allowed_signers", True)}
# variables that feed the command's other options (validated by click) or --debug
FULL_CLI_VARIABLES = ("TYCHOREG_CONCURRENCY", "TYCHOREG_PART_SIZE", "TYCHOREG_DEBUG")


def main() -> None:
    """Answer a warm locked pull here, or run the full CLI."""
    if not _warm(sys.argv[1:]):
        from .cli import main as full_cli

        full_cli()


def parse(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The root's and the command's options of a ``pull-list --locked`` command line
    of the lean path's shape; None for any other command line."""
    root: dict[str, Any] = {}
    command: dict[str, Any] = {}
    options, seen_command, i = ROOT, False, 0
    while i < len(argv):
        token = argv[i]
        if not seen_command and token == COMMAND:
            options, seen_command, i = AFTER, True, i + 1
            continue
        spelling, has_value, value = token.partition("=")
        if spelling not in options or (has_value and not spelling.startswith("--")):
            return None
        name, takes_value = options[spelling]
        if has_value and not takes_value:
            return None
        if takes_value and not has_value:
            if i + 1 == len(argv):
                return None
            i, value = i + 1, argv[i + 1]
        if takes_value and not value:
            return None
        (command if seen_command else root)[name] = value if takes_value else True
        i += 1
    return (root, command) if seen_command and command.get("locked") else None


def _warm(argv: list[str]) -> bool:
    """Whether the run was answered here (exit 0): False changes nothing, so that the
    full CLI can run from scratch."""
    parsed = parse(argv)
    if parsed is None or any(name in os.environ for name in FULL_CLI_VARIABLES):
        return False
    root, command = parsed
    as_json, quiet = command.get("json", False), command.get("quiet", False)
    if not (as_json or quiet) and sys.stderr.isatty():
        return False  # progress bars: the full CLI's display decides what they show
    try:
        answer = _answer(root, command)
    except Exception:  # any doubt at all: the full CLI says what is wrong
        return False
    if answer is None:
        return False
    warnings, found, signed = answer
    for warning in warnings:
        _say(f"warning: {warning}")
    if as_json:
        _out(_document(found, signed))
    elif not quiet:
        for entry, dest in found:
            _out(f"{entry.name} {entry.version} is up to date: {dest}")
    return True


def _option(root: dict[str, Any], command: dict[str, Any], name: str) -> str | None:
    """As the full CLI resolves --config and --registry: the command's, the root's, then
    the variable (an empty one counts as unset, as click has it)."""
    value = command.get(name, root.get(name))
    return value if value is not None else os.environ.get(f"TYCHOREG_{name.upper()}") or None


def _answer(root: dict[str, Any], command: dict[str, Any]
            ) -> tuple[list[str], list[tuple[Any, Any]], bool] | None:
    """The config's warnings, every entry with its current copy, as ``pinned.current``
    decides (for api.locked_current too), and whether a signer policy checked them;
    None when anything needs the full pull."""
    from pathlib import Path

    from .config import SECRET_KEYS, load_settings
    from .lockfile import DEFAULT_LOCKFILE, read
    from .pinned import current
    from .storage import S3Options

    lock = read(Path(command.get("lockfile", DEFAULT_LOCKFILE)))
    outdir = command.get("outdir") or os.environ.get("TYCHOREG_OUTDIR") or None
    overrides = {key: value for key, value in (("outdir", outdir), ("allowed_signers",
                 command.get("allowed_signers"))) if value is not None}
    settings = load_settings(_option(root, command, "config"), _option(root, command,
                             "registry"), overrides)
    if isinstance(settings.store, S3Options):  # secrets only matter to a warning's text
        from .logs import register_secrets

        register_secrets(settings.store.client_kwargs.get(key) for key in SECRET_KEYS)
    found = current(lock, settings,
                    other_registry="registry" in root or "registry" in command)
    return None if found is None else (list(settings.warnings), found,
                                       settings.allowed_signers is not None)


def _document(found: list[tuple[Any, Any]], signed: bool) -> str:
    """The JSON document of ``pull-list --json``, by the report's own functions (the
    results as ``api.locked_current`` makes them)."""
    import json

    from .report import pull_list
    from .results import PullRequest, PullResult

    requests = [PullRequest(entry.name, entry.version) for entry, _ in found]
    results = [PullResult(entry.name, entry.version, dest, entry.size, skipped=True,
                          exact=True, format=entry.format,
                          signed_by=entry.signed_by if signed else None)
               for entry, dest in found]
    return json.dumps(pull_list(requests, results, None), indent=2)


def _out(text: str) -> None:
    """Standard output, as ``cli.render.out``: a closed one ends the run with exit 141."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os._exit(141)


def _say(message: str) -> None:
    """A message on standard error, as ``cli.render.say`` writes it (redacted)."""
    from .logs import redact

    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"tychoreg: {redact(message)}\n")
