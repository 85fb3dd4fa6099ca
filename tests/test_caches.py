"""CI caches of environments whose files are hard links into a cache outside the tree (uv's
default on Linux, conda's): pushed as plain files, pulled back byte for byte, on every
backend, with a hand-made tree of that shape and with a real uv environment."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tycho_async.archive.pack import tree_sha256
from tycho_async.archive.tree import scan

from .support import Registry
from .trees import pulled_snapshot, set_mtimes


def ok(result: object) -> None:
    code = getattr(result, "exit_code", None)
    assert code == 0, (getattr(result, "stdout", ""), getattr(result, "stderr", ""))


def linked_env(tmp: Path) -> Path:
    """An environment as uv or conda leaves it: ``lib/mod.py`` a hard link to a file of a
    cache outside the tree, ``lib/twin-a.py`` and ``lib/twin-b.py`` two links inside the
    tree to one cached file, beside a file of its own and a symlink."""
    cache = tmp / "cache"
    cache.mkdir()
    (cache / "mod.py").write_text("VALUE = 42\n")
    (cache / "twin.py").write_bytes(b"twin\n" * 1000)
    env = tmp / "env"
    (env / "lib").mkdir(parents=True)
    os.link(cache / "mod.py", env / "lib" / "mod.py")
    os.link(cache / "twin.py", env / "lib" / "twin-a.py")
    os.link(cache / "twin.py", env / "lib" / "twin-b.py")
    (env / "own.txt").write_text("not linked\n")
    os.symlink("lib/mod.py", env / "link")
    set_mtimes(env)
    assert (env / "lib" / "mod.py").stat().st_nlink == 2
    assert (env / "lib" / "twin-a.py").stat().st_nlink == 3
    return env


def test_a_hard_link_into_a_cache_outside_is_pushed_as_its_content(
        registry: Registry, tmp_path: Path) -> None:
    env = linked_env(tmp_path)
    ok(registry.cli("push", "envs", "1", str(env), "--promote-latest"))
    out = registry.workdir / "restored"
    ok(registry.cli("pull", "envs", "-o", str(out)))

    assert pulled_snapshot(out) == pulled_snapshot(env)
    restored = (out / "lib" / "mod.py").lstat()
    assert stat.S_ISREG(restored.st_mode) and restored.st_nlink == 1
    assert (out / "lib" / "mod.py").read_bytes() == b"VALUE = 42\n"
    # the two links inside stay one file with two names, nothing more
    twin = (out / "lib" / "twin-a.py").stat()
    assert twin.st_nlink == 2 and twin.st_ino == (out / "lib" / "twin-b.py").stat().st_ino
    # the archive does not depend on the cache: a plain copy of the tree hashes the same
    copy = tmp_path / "copy"
    shutil.copytree(env, copy, symlinks=True)
    os.unlink(copy / "lib" / "twin-b.py")
    os.link(copy / "lib" / "twin-a.py", copy / "lib" / "twin-b.py")
    set_mtimes(copy)
    record = registry.meta("envs")["tychoreg"]["records"]["1"]
    assert record["tree_sha256"] == tree_sha256(scan(copy))


# -- a real uv environment -------------------------------------------------------------------

def uv_binary() -> str | None:
    """uv from the test extras (its wheel puts the binary beside the interpreter), else
    from PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def tiny_wheel(where: Path) -> Path:
    """A pure-Python wheel written by hand, so installing it needs no network at all."""
    files = {
        "tinycache/__init__.py": b"ANSWER = 42\n",
        "tinycache/data.txt": b"cached data\n" * 100,
        "tinycache-1.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: tinycache\nVersion: 1.0\n",
        "tinycache-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rows = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        rows.append(f"{name},sha256={digest.decode()},{len(data)}")
    rows.append("tinycache-1.0.dist-info/RECORD,,")
    files["tinycache-1.0.dist-info/RECORD"] = ("\n".join(rows) + "\n").encode()
    wheel = where / "tinycache-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def test_a_uv_environment_with_hard_links_into_its_cache_round_trips(
        registry: Registry, tmp_path: Path) -> None:
    uv = uv_binary()
    if uv is None:
        pytest.skip("uv is not installed (it is in the test extras)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_LINK_MODE="hardlink",
               UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_OFFLINE="1")
    venv = tmp_path / "venv"
    wheel = tiny_wheel(tmp_path)
    for command in ([uv, "venv", "--python", sys.executable, str(venv)],
                    [uv, "pip", "install", "--offline", "--python", str(venv / "bin" / "python"),
                     str(wheel)]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    installed = list(venv.glob("lib/python*/site-packages/tinycache/__init__.py"))
    assert len(installed) == 1
    assert installed[0].stat().st_nlink > 1  # a hard link into uv's cache, as by default

    ok(registry.cli("push", "uv-env", "1", str(venv), "--promote-latest"))
    out = registry.workdir / "restored"
    ok(registry.cli("pull", "uv-env", "-o", str(out)))
    assert pulled_snapshot(out) == pulled_snapshot(venv)
    restored = out / installed[0].relative_to(venv)
    assert restored.lstat().st_nlink == 1 and stat.S_ISREG(restored.lstat().st_mode)
    ran = subprocess.run([str(out / "bin" / "python"), "-c",
                          "import tinycache; print(tinycache.ANSWER)"],
                         capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == "42", ran.stderr
