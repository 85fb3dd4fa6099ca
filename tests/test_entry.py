"""The lean entry (``tycho_async.entry``) against the full CLI as its oracle: for the
same command line and the same files, the real ``tychoreg`` and ``cli.main`` print the
same bytes on stdout and stderr and exit the same, and the lean path (no typer loaded)
was taken exactly when a ``pull-list --locked`` found everything current."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import write_file

TYCHOREG = str(Path(sys.executable).with_name("tychoreg"))
FULL = [sys.executable, "-c",
        "import sys; sys.argv[0] = 'tychoreg'; from tycho_async.cli import main; main()"]
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYCHOREG_")}
    return {**env, **extra}


def _run(command: list[str], cwd: Path, env: dict[str, str]
         ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)
    modules = set(_IMPORTED.findall(done.stderr))
    done.stderr = "".join(line for line in done.stderr.splitlines(keepends=True)
                          if not line.startswith("import time:"))
    return done, modules


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local registry of three packages, locked, and pulled into tycho_packages and
    into "other" (so both are current); the registry at ./reg, named by TYCHOREG_REGISTRY."""
    base = tmp_path_factory.mktemp("entry")
    work = base / "work"
    work.mkdir()
    env = _env(TYCHOREG_REGISTRY=str(base / "reg"))
    lines = []
    for i in range(3):
        write_file(work / f"f{i}.bin", 100 + i)
        lines.append(f"pkg{i} 1.0 f{i}.bin\n")
    (work / "list.txt").write_text("".join(lines))
    for argv in (["push-list", "--from-file", "list.txt", "-q"],
                 ["lock", "pkg0==1.0", "pkg1==1.0", "pkg2==1.0", "-q"],
                 ["pull-list", "--locked", "-q"],
                 ["pull-list", "--locked", "-q", "--outdir", "other"]):
        done, _ = _run([*FULL, *argv], work, env)
        assert done.returncode == 0, done.stderr
    return base


def _compare(state: Path, argv: list[str], *, prepare: str = "",
             **variables: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run ``argv`` through the real executable and through the full CLI, each in its
    own copy of the working directory (``prepare``: a change made to both first); they
    must agree. The result, and whether the lean path answered."""
    env = _env(**{"TYCHOREG_REGISTRY": str(state / "reg"), **variables})
    answers = []
    for side, command in (("lean", [sys.executable, "-X", "importtime", TYCHOREG]),
                          ("full", FULL)):
        work = state / f"{side}-{os.urandom(4).hex()}"
        shutil.copytree(state / "work", work, symlinks=True)
        if prepare == "malformed":
            (work / "tychoreg.lock").write_text("version = 1\n[[package]]\nname = 3\n")
        elif prepare == "stale":
            (work / "tycho_packages" / "f1.bin").write_bytes(b"edited")
        elif prepare == "config":
            (work / ".tychoreg.json").write_text(json.dumps(
                {"tycho": {"outdir": "other", "outdri": "typo"}}))
        answers.append(_run([*command, *argv], work, env))
        shutil.rmtree(work)
    (lean, modules), (full, _) = answers
    assert (lean.stdout, lean.stderr, lean.returncode) == \
        (full.stdout, full.stderr, full.returncode)
    return lean, "typer" not in modules


CURRENT = [
    ["pull-list", "--locked"],
    ["pull-list", "--locked", "--json"],
    ["pull-list", "-q", "--locked"],
    ["pull-list", "--quiet", "--locked", "--json"],
    ["pull-list", "--locked", "--lockfile", "tychoreg.lock"],
    ["pull-list", "--locked", "--lockfile=tychoreg.lock"],
    ["pull-list", "--locked", "--outdir", "other"],
    ["pull-list", "--locked", "--outdir=other", "--json"],
]


@pytest.mark.parametrize("argv", CURRENT, ids=" ".join)
def test_everything_current_is_answered_lean_and_the_same(state: Path,
                                                          argv: list[str]) -> None:
    done, lean = _compare(state, argv)
    assert done.returncode == 0 and lean
    if "-q" not in argv and "--quiet" not in argv:
        assert "pkg1" in done.stdout


def test_outdir_from_the_variable_and_from_the_config(state: Path) -> None:
    done, lean = _compare(state, ["pull-list", "--locked"], TYCHOREG_OUTDIR="other")
    assert lean and "other/f0.bin" in done.stdout
    done, lean = _compare(state, ["pull-list", "--locked"], prepare="config")
    assert lean and "other/f0.bin" in done.stdout
    assert "outdri" in done.stderr  # the config's warning, printed as the full CLI does


def test_a_registry_typed_on_the_command_line(state: Path) -> None:
    """A lock of another registry: refused (full CLI, exit 2) unless --registry is typed,
    before or after the command name; the variable alone does not count."""
    elsewhere = str(state / "elsewhere")
    done, lean = _compare(state, ["pull-list", "--locked"], TYCHOREG_REGISTRY=elsewhere)
    assert done.returncode == 2 and not lean
    for argv in (["pull-list", "--locked", "-r", elsewhere],
                 ["--registry", elsewhere, "pull-list", "--locked"],
                 ["pull-list", "--locked", f"--registry={elsewhere}"],
                 ["-c", ".none.json", "-r", elsewhere, "pull-list", "--locked"]):
        done, lean = _compare(state, argv)
        assert (done.returncode, lean) == ((2, False) if "-c" in argv else (0, True))


@pytest.mark.parametrize(("argv", "prepare", "code"), [
    (["pull-list", "--locked"], "stale", 0),  # one entry not current: pulled again
    (["pull-list", "--locked", "--json"], "malformed", 2),
    (["pull-list", "--locked", "--lockfile", "missing.lock"], "", 2),
    (["pull-list", "--locked", "--force", "-q"], "", 0),
    (["pull-list", "--locked", "pkg0"], "", 2),
    (["pull-list", "--lockfile", "tychoreg.lock"], "", 2),
    (["pull-list", "--locked", "--outdir"], "", 2),
    (["pull-list", "--locked", "--debug"], "", 0),
    (["pull-list", "--locked", "--help"], "", 0),
    (["pull-list", "--locked", "-qj", "1"], "", 0),
    (["--version"], "", 0),
])
def test_anything_else_goes_to_the_full_cli(state: Path, argv: list[str], prepare: str,
                                            code: int) -> None:
    done, lean = _compare(state, argv, prepare=prepare)
    assert done.returncode == code and not lean


SPELLINGS = {"lockfile": [["--lockfile", "tychoreg.lock"], ["--lockfile=tychoreg.lock"]],
             "outdir": [["--outdir", "tycho_packages"], ["--outdir=tycho_packages"]],
             "quiet": [["-q"], ["--quiet"]], "json": [["--json"]]}


@settings(max_examples=4, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(SPELLINGS)), unique=True).flatmap(
    lambda names: st.tuples(*(st.sampled_from(SPELLINGS[name]) for name in names))
).flatmap(lambda groups: st.permutations([*groups, ["--locked"]])))
def test_options_in_any_order_and_spelling(state: Path, groups: list[list[str]]) -> None:
    argv = ["pull-list", *(token for group in groups for token in group)]
    done, lean = _compare(state, argv)
    assert done.returncode == 0 and lean
