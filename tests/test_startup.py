"""Start-up discipline (DESIGN.md: start-up is part of the product): a real ``tychoreg``
runs in a subprocess under ``python -X importtime``, whose trace on stderr names every
module the command loaded, and a command must not load what it has no use for.

The module sets are constants, so that a backend can extend them: the S3 backends add
their own (with static credentials and an http endpoint, no SDK either).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from tycho_async.cli import GROUPS, app, command_name, group_commands
from tycho_async.defaults import default_local_root

from .support import REGION, make_bucket, write_file

TYCHOREG = str(Path(sys.executable).with_name("tychoreg"))

# The S3 stack (an SDK, an HTTP framework, and what they pull in).
S3_STACK = ("aiobotocore", "aiohttp", "botocore", "boto3", "s3transfer", "urllib3",
            "dateutil", "jmespath", "yarl", "multidict", "frozenlist", "aiosignal",
            "aiohappyeyeballs", "propcache", "attr")
# Never loaded by a push, pull or pull-list of a plain file on the local backend named
# by --registry, with standard error not a terminal and no dotenv file configured: no
# bars (rich), no archive (zstandard), no user data directory (platformdirs), no dotenv,
# no signatures (cryptography: only with a key or allowed signers), and of the registry's
# operations only those that push and pull (catalog, publish, pull).
NOT_FOR_LOCAL_TRANSFERS = (*S3_STACK, "rich", "zstandard", "tycho_async.archive",
                           "platformdirs", "dotenv", "tempfile",
                           "tycho_async.lockfile", "tycho_async.pinned",
                           "cryptography", "tycho_async.sshsig", "tycho_async.statement",
                           *(f"tycho_async.registry.{name}" for name in
                             ("trees", "verify", "delete", "queries", "lock", "locked",
                              "signing")))
# Never loaded by --help (of the root or of a command): no event loop, no settings,
# no registry and nothing a transfer needs.
NOT_FOR_HELP = (*NOT_FOR_LOCAL_TRANSFERS, "asyncio", "anyio", "json", "dataclasses",
                "tycho_async.config", "tycho_async.storage", "tycho_async.registry",
                "tycho_async.transfer", "tycho_async.api", "tycho_async.progress")

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def _traced(*args: str, env: dict[str, str] | None = None
            ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the real executable; its result (the trace removed from stderr) and the
    modules it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", TYCHOREG, *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL, env=env)
    modules = set(_IMPORTED.findall(done.stderr))
    done.stderr = "".join(line for line in done.stderr.splitlines(keepends=True)
                          if not line.startswith("import time:"))
    return done, modules


def _loaded(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages (or modules) that were loaded, each once."""
    return sorted({name for name in forbidden for module in modules
                   if module == name or module.startswith(name + ".")})


def check_transfers(registry: list[str], forbidden: tuple[str, ...], workdir: Path,
                    env: dict[str, str] | None = None) -> None:
    """A push of a 1 KiB file, a pull that downloads it, one that finds it current, one
    to another file, and a pull-list, each run as a user runs it against ``registry``
    (options naming it), none loading any of ``forbidden``; the bytes arrive intact."""
    blob = write_file(workdir / "data.bin", 1024)
    commands = [["push", *registry, "pkg", "1.0", "data.bin", "--promote-latest"],
                ["pull", *registry, "pkg"],
                ["pull", *registry, "pkg"],
                ["pull", *registry, "pkg", "--force", "--outfile", "copy.bin"],
                ["pull-list", *registry, "pkg", "--force"]]
    for command in commands:
        done, modules = _traced(*command, env=env)
        assert done.returncode == 0, (command, done.stderr)
        assert "tycho_async.registry.catalog" in modules  # the trace is read
        # the engine loads the half it uses: a push never the download code, a pull
        # never the upload code
        other_half = "download" if command[0] == "push" else "upload"
        assert _loaded(modules, (*forbidden, f"tycho_async.transfer.{other_half}")) == [], \
            command
    assert (workdir / "tycho_packages" / "data.bin").read_bytes() == blob
    assert (workdir / "copy.bin").read_bytes() == blob


@pytest.fixture
def local_registry(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def test_a_local_push_pull_and_pull_list_load_only_what_they_use(
        local_registry: Path, isolated_env: Path) -> None:
    check_transfers(["--registry", str(local_registry)], NOT_FOR_LOCAL_TRANSFERS,
                    isolated_env)


def test_an_s3_push_pull_and_pull_list_with_static_keys_load_no_sdk(
        seaweed_endpoint: str, isolated_env: Path) -> None:
    """The same commands on SeaweedFS, with static keys and an http endpoint: the lean
    client's modules only, nothing of the SDK."""
    bucket = make_bucket(seaweed_endpoint)
    env = {**os.environ, "AWS_ENDPOINT_URL": seaweed_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    check_transfers(["--registry", f"s3://{bucket}"], NOT_FOR_LOCAL_TRANSFERS, isolated_env,
                    env)


def test_a_locked_pull_list_loads_only_what_a_pull_list_does(
        seaweed_endpoint: str, isolated_env: Path) -> None:
    """pull-list --locked, cold (one GET) and warm (no request), with static keys: no
    SDK, no HTTP framework, no upload code; warm, not even an event loop or a store."""
    import anyio

    from tycho_async.layout import version_key
    from tycho_async.lockfile import Lock, Locked, dump
    from tycho_async.storage import S3Options, open_store

    bucket = make_bucket(seaweed_endpoint)
    env = {**os.environ, "AWS_ENDPOINT_URL": seaweed_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    reg = ["--registry", f"s3://{bucket}"]
    write_file(isolated_env / "data.bin", 1024)
    done, _ = _traced("push", *reg, "pkg", "1.0", "data.bin", env=env)
    assert done.returncode == 0, done.stderr
    options = S3Options(bucket, "", {"endpoint_url": seaweed_endpoint, "region_name": REGION,
                                     "aws_access_key_id": "testing",
                                     "aws_secret_access_key": "testing"})

    async def head() -> Any:
        async with open_store(options) as store:
            return await store.head(version_key("pkg", "1.0"))

    info = anyio.run(head)
    sha256 = hashlib.sha256((isolated_env / "data.bin").read_bytes()).hexdigest()
    (isolated_env / "tychoreg.lock").write_bytes(dump(Lock(f"s3://{bucket}/", [
        Locked("pkg", "1.0", "data.bin", info.size, info.etag, sha256=sha256)])))
    for run in ("cold", "warm"):
        done, modules = _traced("pull-list", *reg, "--locked", env=env)
        assert done.returncode == 0, done.stderr
        assert "tycho_async.pinned" in modules
        assert _loaded(modules, (*NOT_FOR_LOCAL_TRANSFERS, "tycho_async.transfer.upload")) \
            == ["tycho_async.lockfile", "tycho_async.pinned",
                *(["tycho_async.registry.locked"] if run == "cold" else [])]
        # warm: the local files tell everything; no event loop, no store, no registry
        store = _loaded(modules, ("asyncio", "tycho_async.registry", "tycho_async.storage.s3"))
        assert store == ([] if run == "warm" else
                         ["asyncio", "tycho_async.registry", "tycho_async.storage.s3"])
    assert "up to date" in done.stdout


def test_a_warm_locked_pull_loads_no_cli_framework_event_loop_or_store(
        isolated_env: Path) -> None:
    """A warm pull-list --locked (everything current) is answered by the lean entry:
    no typer or click, no event loop, no store, no SDK; the same answer as before."""
    reg = ["--registry", str(isolated_env / "registry")]
    write_file(isolated_env / "data.bin", 1024)
    for argv in (["push", *reg, "pkg", "1.0", "data.bin", "--promote-latest"],
                 ["lock", *reg, "pkg"], ["pull-list", *reg, "--locked"]):
        done, _ = _traced(*argv)
        assert done.returncode == 0, done.stderr
    done, modules = _traced("pull-list", "--locked", *reg)
    assert done.returncode == 0, done.stderr
    assert "pkg 1.0 is up to date" in done.stdout
    assert _loaded(modules, ("typer", "click", "anyio", "asyncio", "botocore", "aiohttp",
                             "tycho_async.transfer.engine", "tycho_async.storage.local",
                             "tycho_async.registry", "tycho_async.cli")) == []


def test_bars_and_directories_still_load_what_they_need(
        local_registry: Path, isolated_env: Path) -> None:
    """The sets above are not vacuous: forced bars load rich, a directory zstandard,
    and the default registry (no --registry, no config) platformdirs."""
    tree = isolated_env / "tree"
    tree.mkdir()
    write_file(tree / "a.bin", 100)
    reg = ["--registry", str(local_registry)]
    done, modules = _traced("push", *reg, "dir", "1.0", "tree", "--promote-latest")
    assert done.returncode == 0, done.stderr
    assert _loaded(modules, NOT_FOR_LOCAL_TRANSFERS) == ["tycho_async.archive", "zstandard"]
    done, modules = _traced("pull", *reg, "dir", "--progress")
    assert done.returncode == 0, done.stderr
    assert "rich" in _loaded(modules, NOT_FOR_LOCAL_TRANSFERS)
    assert (isolated_env / "tycho_packages" / "tree" / "a.bin").exists()
    done, modules = _traced("list")
    assert done.returncode == 0, done.stderr
    assert _loaded(modules, ("platformdirs",)) == ["platformdirs"]


@pytest.mark.parametrize("command", [[], ["pull"], ["pull-list"], ["push"]])
def test_help_loads_no_event_loop_settings_or_registry(command: list[str]) -> None:
    done, modules = _traced(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: tychoreg" in done.stdout
    assert "typer" in modules
    assert _loaded(modules, NOT_FOR_HELP) == []


def test_a_usage_error_loads_no_rich_and_no_event_loop() -> None:
    """typer renders errors with rich unless told not to (``rich_markup_mode=None``)."""
    done, modules = _traced("pull")
    assert done.returncode == 2
    assert "Missing argument 'PACKAGE'" in done.stderr
    assert _loaded(modules, NOT_FOR_HELP) == []


def test_help_lists_every_command_and_says_where_the_default_registry_is() -> None:
    """The root help names every command, and sends the user to ``info`` for the default
    registry's directory (finding it takes platformdirs, which --help does not load)."""
    done, _ = _traced("--help")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in
              done.stdout.split("Commands:\n", 1)[1].splitlines() if line.strip()]
    names = list(typer.main.get_group(app).commands)
    assert listed == names
    assert len(names) >= 13
    assert "(tychoreg info shows which)" in " ".join(done.stdout.split())
    info, _ = _traced("info")
    assert info.returncode == 0, info.stderr
    assert str(default_local_root()) in info.stdout
    for name in names:
        sub, _ = _traced(name, "--help")
        assert sub.returncode == 0, (name, sub.stderr)
        assert f"Usage: tychoreg {name} [OPTIONS]" in sub.stdout


def test_command_annotations_are_evaluated_once_at_import() -> None:
    """typer reads every command's type hints on every run; string annotations (``from
    __future__ import annotations``) would be evaluated again each time."""
    for info in (info for group in GROUPS for info in group_commands(group)):
        assert info.callback is not None
        hints = info.callback.__annotations__
        assert hints, info.name
        assert [name for name, hint in hints.items() if isinstance(hint, str)] == [], \
            info.name


def test_the_command_table_names_every_command_of_every_group_in_order() -> None:
    """The root lists and finds commands by GROUPS without importing the groups: the
    table must say exactly what each group module registers, and name every module that
    registers commands."""
    assert {group: tuple(command_name(info) for info in group_commands(group))
            for group in GROUPS} == GROUPS
    package = Path(__file__).resolve().parent.parent / "tycho_async" / "cli"
    registering = {path.stem for path in package.glob("*.py")
                   if "group = typer.Typer()" in path.read_text(encoding="utf-8")}
    assert registering == set(GROUPS)


def test_a_run_imports_only_the_group_of_its_command(tmp_path: Path) -> None:
    done, modules = _traced("exists", "--registry", str(tmp_path), "pkg", "1.0")
    assert done.returncode == 1, done.stderr
    assert {m for m in modules if m.startswith("tycho_async.cli.")} >= {
        "tycho_async.cli.queries", "tycho_async.cli.run"}
    assert _loaded(modules, tuple(f"tycho_async.cli.{group}" for group in GROUPS
                                  if group != "queries")) == []


def test_a_run_builds_only_the_command_it_runs(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """typer turns a command's function into a click command by reading its signature;
    a run needs only the one it runs, and the root help none."""
    built: list[str] = []
    build = typer.main.get_command_from_info

    def counted(*args: Any, **kwargs: Any) -> Any:
        command = build(*args, **kwargs)
        built.append(str(command.name))
        return command

    monkeypatch.setattr(typer.main, "get_command_from_info", counted)
    runner = CliRunner()
    result = runner.invoke(app, ["exists", "--registry", str(tmp_path), "pkg", "1.0"])
    assert result.exit_code == 1, result.output
    assert built == ["exists"]
    assert runner.invoke(app, ["--help"]).exit_code == 0
    assert built == ["exists"]  # the root help lists the commands by their summaries


def test_a_mistyped_command_is_still_told_the_close_ones() -> None:
    result = CliRunner().invoke(app, ["pul"])
    assert result.exit_code == 2
    assert "No such command 'pul'. Did you mean 'pull'" in result.output


def test_help_loads_no_engine_and_no_s3_library() -> None:
    code = ("import sys\nfrom tycho_async.cli import app\n"
            "print(','.join(m for m in ('tycho_async.transfer.engine', 'aiobotocore', "
            "'botocore', 'aiohttp', 'rich.progress') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == ""
