"""delete (the registry's delete operation) as a user meets it when a
deletion is cut short: the same command line finishes it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tycho_async.registry import Registry
from tycho_async.transfer import Engine

from .support import SMALL, TYCHOREG, _env, make_bucket, opened, s3_client, write_file


def test_delete_killed_midway_is_finished_by_the_same_command(s3_endpoint: str) -> None:
    """SIGKILL once ``delete P 0 1 2`` has deleted version 0 and starts on 1: running the
    same command line again deletes what is left and exits 0."""
    bucket = make_bucket(s3_endpoint)
    env = _env(s3_endpoint, bucket)
    for version in ("0", "1", "2"):
        write_file(Path("f.bin"), 100, seed=int(version))
        assert subprocess.run([TYCHOREG, "push", "P", version, "f.bin", "-q"], env=env,
                              timeout=60, check=False).returncode == 0
    proc = subprocess.Popen([TYCHOREG, "--debug", "delete", "P", "0", "1", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stderr:  # bounded: the process ends, and so does its stderr
            seen.append(line)
            if "DELETE" in line and "tycho_1.pkg" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    client = s3_client(s3_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "P/tycho_0.pkg" not in keys and "P/tycho_2.pkg" in keys
    again = subprocess.run([TYCHOREG, "delete", "P", "0", "1", "2"], env=env, timeout=60,
                           check=False, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["P/tycho.json"]
    meta = json.loads(client.get_object(Bucket=bucket, Key="P/tycho.json")["Body"].read())
    assert meta["tychoreg"]["records"] == {}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_prune_ages_versions_by_the_registrys_clock(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """prune --older-than measures ages by the clock the registry was given: versions
    pushed a moment ago are young by the wall clock and two days old by a clock two
    days ahead, which prunes all but latest."""
    write_file(tmp_path / "f.bin", 100)
    ahead = 2 * 86400.0
    async with opened(kind, tmp_path, request) as (store, _):
        now = Registry(Engine(store, SMALL), tmp_path / "out")
        for version in ("1", "2", "3"):
            await now.push("pkg", version, tmp_path / "f.bin", promote=version == "3")
        young = await now.prune("pkg", keep=0, older_than=86400)
        assert young.deleted == []
        later = Registry(Engine(store, SMALL), tmp_path / "out",
                         clock=lambda: time.time() + ahead)
        old = await later.prune("pkg", keep=0, older_than=86400)
        assert sorted(old.deleted) == ["1", "2"]
        assert [v.version for v in await later.list_versions("pkg")] == ["3"]
