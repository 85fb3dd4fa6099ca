"""Faults that only exist at the HTTP level, injected by a proxy on loopback in front of a
real S3 server: sockets reset mid-request, stores that ignore conditional writes, a
malformed answer to a ranged GET of an empty object, a slow link."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .httpproxy import FaultProxy
from .support import REGION, TYCHOREG, Registry, _env, make_bucket, write_file

MiB = 1024 * 1024


def _through(proxy: FaultProxy, s3_registry: Registry) -> Registry:
    """The same bucket, reached through the proxy."""
    s3_registry.endpoint = proxy.url
    s3_registry.write_config()
    return s3_registry


def test_a_socket_reset_mid_put_is_retried(proxy: FaultProxy, s3_registry: Registry) -> None:
    reg = _through(proxy, s3_registry)
    blob = write_file(Path("f.bin"), 300_000)
    proxy.reset_once("PUT", "tycho_1.0.pkg", 50_000)
    result = reg.cli("push", "pkg", "1.0", "f.bin", "--promote-latest")
    assert result.exit_code == 0, result.output
    puts = [r for r in proxy.requests if r.method == "PUT" and "tycho_1.0.pkg" in r.path]
    assert len(puts) == 2 and proxy.resets_armed == 0
    assert reg.get("pkg/tycho_1.0.pkg") == blob


def test_a_socket_reset_mid_part_is_retried(proxy: FaultProxy, s3_registry: Registry) -> None:
    reg = _through(proxy, s3_registry)
    blob = write_file(Path("f.bin"), 11 * MiB)
    proxy.reset_once("PUT", "partNumber=2", MiB)
    result = reg.cli("push", "pkg", "1.0", "f.bin", "--part-size", "5MiB")
    assert result.exit_code == 0, result.output
    assert len([r for r in proxy.requests if "partNumber=2" in r.path]) == 2
    assert reg.get("pkg/tycho_1.0.pkg") == blob


def test_on_a_store_that_ignores_conditional_writes_creates_look_first(
        proxy: FaultProxy, s3_registry: Registry) -> None:
    reg = _through(proxy, s3_registry)
    proxy.strip_conditionals = True
    probe = reg.cli("info", "--probe", "--json")
    assert probe.exit_code == 0, probe.output
    assert json.loads(probe.stdout)["conditional_writes"].startswith("IGNORED")
    assert reg.object_keys() == []  # the probe object is gone
    assert reg.cli("init", "pkg", "x.bin").exit_code == 0
    write_file(Path("f.bin"), 1000)
    assert reg.cli("push", "pkg", "1.0", "f.bin", "--promote-latest").exit_code == 0
    meta = reg.meta("pkg")
    again = reg.cli("init", "pkg", "y.bin")
    assert again.exit_code == 1 and "already exists" in again.stderr
    write_file(Path("f.bin"), 1000, seed=9)
    repush = reg.cli("push", "pkg", "1.0", "f.bin")
    assert repush.exit_code == 1 and "already exists" in repush.stderr
    assert reg.meta("pkg") == meta and meta["latest"] == "1.0"
    proxy.strip_conditionals = False
    honoured = reg.cli("info", "--probe", "--json")
    assert json.loads(honoured.stdout)["conditional_writes"] == "honoured"


def test_an_empty_version_pulls_where_a_ranged_get_of_it_is_malformed(
        proxy: FaultProxy, s3_registry: Registry) -> None:
    Path("empty.bin").write_bytes(b"")
    assert s3_registry.cli("push", "pkg", "0.1", "empty.bin", "--promote-latest").exit_code == 0
    reg = _through(proxy, s3_registry)
    proxy.malformed_empty_range = True
    for args in (["pull", "pkg"], ["pull-list", "pkg", "--force"],
                 ["verify", "pkg"], ["pull", "pkg", "-o", "copy.bin"]):
        result = reg.cli(*args)
        assert result.exit_code == 0, (args, result.output)
    assert Path("tycho_packages/empty.bin").read_bytes() == b""
    assert Path("copy.bin").read_bytes() == b""
    ranged = [r for r in proxy.requests if r.method == "GET" and "range" in r.headers
              and "tycho_0.1.pkg" in r.path]
    assert ranged, "the fault was never met"


def test_a_slow_transfer_prints_plain_progress_lines(proxy: FaultProxy,
                                                     s3_endpoint: str) -> None:
    """Not a terminal (CI): one line once 10 s have passed, with percent and ETA."""
    bucket = make_bucket(s3_endpoint)
    write_file(Path("big.bin"), 12 * MiB)
    assert subprocess.run([TYCHOREG, "push", "big", "1", "big.bin", "--promote-latest", "-q"],
                          env=_env(s3_endpoint, bucket), timeout=120,
                          check=False).returncode == 0
    proxy.rate = MiB
    env = _env(proxy.url, bucket)
    env["AWS_DEFAULT_REGION"] = REGION
    result = subprocess.run([TYCHOREG, "pull", "big", "--concurrency", "1"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, lines
    assert lines[0].startswith("pulling: ") and " of 12.0 MiB (" in lines[0]
    assert "iB/s, ETA 0:00:0" in lines[0]
    assert result.stdout.startswith("pulled big 1 -> tycho_packages/big.bin (12.0 MiB)")


def test_a_store_that_ignores_range_never_corrupts_a_pull(proxy: FaultProxy,
                                                          s3_registry: Registry) -> None:
    """Ranged GETs answered with the whole object (200): bytes from offset 0 must never be
    written at a later range's offset. A size-only version (a tycho-station multipart
    upload) would not catch it at the end, so the answer is refused as it comes."""
    blob = write_file(Path("big.bin"), 20 * MiB)
    reg = s3_registry
    reg.put("old/tycho.json", b'{"localname": "big.bin", "latest": "1"}')
    reg.put("old/tycho_1.pkg", blob)  # single-part: size and MD5 would still catch it
    through = _through(proxy, reg)
    proxy.ignore_range = True
    result = through.cli("pull", "old", "--part-size", "5MiB")
    assert result.exit_code == 3, result.output
    assert "asked for bytes from" in result.stderr
    assert not Path("tycho_packages").exists()
    proxy.ignore_range = False
    assert through.cli("pull", "old", "--part-size", "5MiB").exit_code == 0
    assert Path("tycho_packages/big.bin").read_bytes() == blob
