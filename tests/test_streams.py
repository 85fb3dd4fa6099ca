"""Streams through the CLI, on every backend: push from standard input of unknown size,
pull to standard output, and the checks at the end of both."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from typer.testing import Result

from tycho_async.cli import app

from .support import Registry, ok, put_version, s3_head

MiB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("one_raw_client")


def push_stdin(registry: Registry, data: bytes, *args: str) -> Result:
    return registry.runner.invoke(app, ["push", *args, "-"], input=data,
                                  catch_exceptions=False)


def test_stdin_of_unknown_size_goes_up_in_several_parts(registry: Registry) -> None:
    data = random.Random(7).randbytes(11 * MiB + 321)
    pushed = push_stdin(registry, data, "logs", "1", "--localname", "log.bin",
                        "--promote-latest", "--part-size", "5MiB")
    assert pushed.exit_code == 0, (pushed.stdout, pushed.stderr)
    assert registry.get("logs/tycho_1.pkg") == data
    if registry.kind == "s3":
        etag = s3_head(registry, "logs/tycho_1.pkg")["ETag"].strip('"')
        assert int(etag.rsplit("-", 1)[1]) >= 3  # 5 MiB parts: at least three of them
    meta = registry.meta("logs")
    assert meta["localname"] == "log.bin" and meta["latest"] == "1"
    copy = meta["tychoreg"]["records"]["1"]
    assert copy["size"] == len(data) and copy["sha256"] == hashlib.sha256(data).hexdigest()
    assert copy.get("format", "file") == "file"
    assert registry.multipart_uploads() == []

    out = ok(registry.cli("pull", "logs", "-o", "-"))
    assert out.stdout_bytes == data  # byte-identical, in order, and nothing else
    assert "logs 1" in out.stderr  # progress and the summary stay on stderr
    assert sorted(p.name for p in Path().iterdir()) == [".tychoreg.json"]  # no file, no sidecar


def test_an_empty_stdin_is_an_empty_version(registry: Registry) -> None:
    pushed = push_stdin(registry, b"", "empty", "1", "--localname", "nothing.txt")
    assert pushed.exit_code == 0, (pushed.stdout, pushed.stderr)
    assert registry.get("empty/tycho_1.pkg") == b""
    copy = registry.meta("empty")["tychoreg"]["records"]["1"]
    assert copy["size"] == 0 and copy["sha256"] == hashlib.sha256(b"").hexdigest()
    out = ok(registry.cli("pull", "empty", "--version", "1", "-o", "-"))
    assert out.stdout_bytes == b""


def test_a_tampered_object_is_exit_3_on_stdout_and_to_a_file(registry: Registry) -> None:
    data = random.Random(3).randbytes(300_000)
    put_version(registry, "pkg", "1", data, latest=True)
    tampered = bytearray(data)
    tampered[150_000] ^= 0x01  # the same size: only the SHA-256 tells
    registry.put("pkg/tycho_1.pkg", bytes(tampered))

    to_stdout = registry.cli("pull", "pkg", "-o", "-")
    assert to_stdout.exit_code == 3, to_stdout.stderr
    assert "sha256" in to_stdout.stderr.lower() or "sha-256" in to_stdout.stderr.lower()
    assert "Traceback" not in to_stdout.output

    to_file = registry.cli("pull", "pkg")
    assert to_file.exit_code == 3
    assert not Path("tycho_packages/pkg.bin").exists()
    assert not Path("tycho_packages/pkg.bin.etag").exists()


def test_a_new_package_from_stdin_needs_a_localname(registry: Registry) -> None:
    result = push_stdin(registry, b"some bytes", "fresh", "1")
    assert result.exit_code == 2
    assert "--localname" in result.stderr
    assert registry.object_keys() == []
    assert registry.multipart_uploads() == []


def test_localname_names_only_a_new_package(registry: Registry) -> None:
    ok(push_stdin(registry, b"one", "pkg", "1", "--localname", "first.bin"))
    ok(push_stdin(registry, b"two", "pkg", "2"))  # an existing package keeps its name
    other = push_stdin(registry, b"three", "pkg", "3", "--localname", "other.bin")
    assert other.exit_code == 2
    assert "first.bin" in other.stderr
    assert registry.meta("pkg")["localname"] == "first.bin"
    assert registry.get("pkg/tycho_2.pkg") == b"two"
    assert registry.get("pkg/tycho_3.pkg") is None
