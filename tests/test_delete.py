"""delete (the registry's delete operation) as a user meets it when a
deletion is cut short: the same command line finishes it."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from .support import TYCHOREG, _env, make_bucket, s3_client, write_file


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
