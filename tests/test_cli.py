"""CLI conventions: usage lines, metavars, global options before or after the command
name, the two meanings of --version, shell completion, command summaries, results on
stdout only, and closed pipes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tycho_async.logs
from tycho_async import __version__
from tycho_async.cli import app
from tycho_async.cli import run as cli

from .support import TYCHOREG, MiB, Registry, _env, make_bucket, s3_client, write_file

COMMANDS = ["init", "push", "push-list", "promote", "sign", "pull", "pull-list", "verify", "lock",
            "list", "list-versions", "exists", "show", "delete", "prune", "info"]


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), prog_name="tychoreg", env=env,
                              catch_exceptions=False)


def commands_section(help_text: str) -> list[str]:
    lines = help_text.split("Commands:\n", 1)[1].splitlines()
    return [line for line in lines if line.strip()]


@pytest.fixture
def local_reg(tmp_path: Path, isolated_env: Path) -> Path:
    """A local registry directory holding pkg 1.0, made by a push."""
    root = tmp_path / "reg"
    write_file(isolated_env / "f.bin", 100)
    assert run("push", "--registry", str(root), "pkg", "1.0", "f.bin").exit_code == 0
    return root


def test_usage_lines_name_arguments_as_users_know_them() -> None:
    usage = "Usage: tychoreg push [OPTIONS] PACKAGE VERSION FILE|DIR|-\n"
    assert usage in run("push", "-h").stdout
    assert "Usage: tychoreg pull [OPTIONS] PACKAGE\n" in run("pull", "--help").stdout
    assert "Usage: tychoreg init [OPTIONS] PACKAGE FILENAME\n" in run("init", "-h").stdout
    assert "Usage: tychoreg pull-list [OPTIONS] [PACKAGE...]\n" in run("pull-list", "-h").stdout
    missing = run("pull")
    assert missing.exit_code == 2
    assert "Missing argument 'PACKAGE'" in missing.output


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_has_no_type_metavars(command: str | None) -> None:
    result = run(*([command] if command else []), "--help")
    assert result.exit_code == 0
    for bad in ("<str>", "<int", "<list", "<path", "<bool", "{package}", "{"):
        assert bad not in result.stdout, (command, bad)


def test_command_summaries_are_not_cut_off() -> None:
    rows = commands_section(run("--help").stdout)
    assert [row.split()[0] for row in rows] == COMMANDS
    for row in rows:
        assert not row.rstrip().endswith("..."), row


@pytest.mark.parametrize("order", ["before", "after"])
def test_registry_before_or_after_the_command(local_reg: Path, order: str) -> None:
    option = ["--registry", str(local_reg)]
    args = [*option, "list", "--json"] if order == "before" else ["list", "--json", *option]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert [p["package"] for p in json.loads(result.stdout)["packages"]] == ["pkg"]
    short = ["-r", str(local_reg)]
    args = [*short, "exists", "pkg", "1.0"] if order == "before" else [
        "exists", "pkg", "1.0", *short]
    assert run(*args).exit_code == 0


def test_registry_after_the_command_wins(local_reg: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    assert run("--registry", missing, "list", "--registry", str(local_reg)).exit_code == 0
    assert run("--registry", str(local_reg), "list", "--registry", missing).exit_code == 2


def test_registry_option_before_the_command_beats_the_variable(local_reg: Path,
                                                                tmp_path: Path) -> None:
    env = {"TYCHOREG_REGISTRY": str(tmp_path / "missing")}
    assert run("list", env=env).exit_code == 2
    result = run("--registry", str(local_reg), "list", env=env)
    assert result.exit_code == 0, result.output
    assert run("list", env={"TYCHOREG_REGISTRY": str(local_reg)}).exit_code == 0


@pytest.mark.parametrize("order", ["before", "after"])
def test_config_before_or_after_the_command(local_reg: Path, tmp_path: Path,
                                            order: str) -> None:
    config = tmp_path / "elsewhere.json"
    config.write_text(json.dumps({"tycho": {"backend": "local"},
                                  "local": {"path": str(local_reg)}}))
    option = ["--config", str(config)]
    args = [*option, "list-versions", "pkg"] if order == "before" else [
        "list-versions", "pkg", *option]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["1.0"]


@pytest.mark.parametrize("order", ["before", "after", "env"])
def test_debug_before_or_after_the_command(local_reg: Path, monkeypatch: pytest.MonkeyPatch,
                                           order: str) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(tycho_async.logs, "enable_debug", lambda: calls.append(True))
    monkeypatch.setattr(cli, "_debug", False)
    base = ["list", "--registry", str(local_reg)]
    env = {"TYCHOREG_DEBUG": "1"} if order == "env" else None
    args = ({"before": ["--debug", *base], "after": [*base, "--debug"]}.get(order, base))
    result = run(*args, env=env)
    assert result.exit_code == 0, result.output
    assert calls == [True]
    assert cli._debug


def test_no_debug_without_asking(local_reg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(tycho_async.logs, "enable_debug", lambda: calls.append(True))
    monkeypatch.setattr(cli, "_debug", False)
    assert run("list", "--registry", str(local_reg)).exit_code == 0
    assert calls == []


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_before_the_command_prints_the_tools_version(flag: str) -> None:
    result = run(flag)
    assert result.exit_code == 0
    assert result.stdout == f"tychoreg {__version__}\n"


def test_help_documents_both_meanings_of_version() -> None:
    root = run("--help").stdout
    assert "-V, --version" in root
    assert "--version (-v) VERSION" in root
    for command in ("pull", "verify"):
        assert "-v, --version VERSION" in run(command, "--help").stdout


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_after_pull_names_a_package_version(registry: Registry, tmp_path: Path,
                                                    flag: str) -> None:
    old = write_file(tmp_path / "old.bin", 1000, seed=1)
    write_file(tmp_path / "new.bin", 1000, seed=2)
    assert registry.cli("push", "pkg", "1.0", str(tmp_path / "old.bin")).exit_code == 0
    assert registry.cli("push", "pkg", "2.0", str(tmp_path / "new.bin"),
                        "--promote-latest").exit_code == 0
    result = registry.cli("pull", "pkg", flag, "1.0", "-o", "got.bin")
    assert result.exit_code == 0, result.output
    assert "pulled pkg 1.0" in result.stdout
    assert (registry.workdir / "got.bin").read_bytes() == old
    verified = registry.cli("verify", "pkg", flag, "1.0")
    assert verified.exit_code == 0, verified.output
    assert "pkg 1.0 is intact" in verified.stdout


def test_shell_completion_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    root = run("--help").stdout
    assert "--install-completion" in root
    assert "--show-completion" in root
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="tychoreg")
    assert script.exit_code == 0
    assert "_TYCHOREG_COMPLETE" in script.stdout


def test_completion_completes_commands_and_options() -> None:
    tychoreg = str(Path(sys.executable).with_name("tychoreg"))
    env = {**os.environ, "_TYCHOREG_COMPLETE": "complete_bash"}
    commands = subprocess.run([tychoreg], env={**env, "COMP_WORDS": "tychoreg pu",
                                               "COMP_CWORD": "1"},
                              capture_output=True, text=True, timeout=60, check=True)
    assert commands.stdout.split() == ["push", "push-list", "pull", "pull-list"]
    options = subprocess.run([tychoreg], env={**env, "COMP_WORDS": "tychoreg pull --ve",
                                              "COMP_CWORD": "2"},
                             capture_output=True, text=True, timeout=60, check=True)
    assert options.stdout.split() == ["--version"]


def test_results_go_to_stdout_only(registry: Registry) -> None:
    write_file(Path("f.bin"), 3000)
    pushed = registry.cli("push", "pkg", "1.0", "f.bin", "--promote-latest", "--no-progress")
    assert pushed.stderr == "" and "pushed pkg 1.0 (2.9 KiB, sha256 " in pushed.stdout
    pulled = registry.cli("pull", "pkg", "--no-progress")
    assert pulled.stderr == "" and "(2.9 KiB)" in pulled.stdout


def test_a_closed_stdout_ends_quietly_with_141(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    for i in range(40):
        client.put_object(Bucket=bucket, Key=f"p{i}/tycho.json",
                          Body=json.dumps({"localname": "x", "latest": None}))
    proc = subprocess.Popen([TYCHOREG, "list"], env=_env(s3_endpoint, bucket),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # as `| head` does once it has its lines
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert err == b""


def test_a_closed_stderr_never_aborts_a_push(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("big.bin"), 12 * MiB)
    env = _env(s3_endpoint, bucket)
    proc = subprocess.Popen([TYCHOREG, "--debug", "push", "big", "1.0", "big.bin",
                             "--promote-latest", "--part-size", "5MiB", "--progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    proc.stderr.close()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"pushed big 1.0" in out
    meta = json.loads(s3_client(s3_endpoint).get_object(Bucket=bucket, Key="big/tycho.json")[
        "Body"].read())
    assert meta["latest"] == "1.0"
    assert meta["tychoreg"]["records"]["1.0"]["sha256"] == hashlib.sha256(blob).hexdigest()
