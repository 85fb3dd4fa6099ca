"""Measuring: one run of a command (wall time, peak RSS, CPU), rows of runs, the budget.

Every measured command runs under ``timed.py``, a small wrapper started once per run: it
spawns the command in a session of its own, waits, kills the whole tree at the timeout, and
reads the command's peak RSS and CPU time from the kernel (``RUSAGE_CHILDREN``), so the peak
is caught exactly rather than sampled. The server's and the delay proxy's CPU time are read
around the run with psutil, by pid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.scenarios import TARGET_CLIENTS, Action, ClientName, Layout, Scenario
from benchmarks.units import KiB, MiB

HERE = Path(__file__).resolve().parent
TIMED = HERE / "timed.py"
CpuProbe = Callable[[], float | None]


def median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


@dataclass(frozen=True)
class Run:
    """One measured command."""

    wall: float  # seconds, spawn to exit
    maxrss_mib: float  # peak RSS of the largest process of the command
    cpu: float  # user + system seconds of the command and its children
    server_cpu: float | None = None  # the S3 server's CPU seconds during the run
    proxy_cpu: float | None = None  # the delay proxy's (the harness's) CPU seconds
    error: str = ""  # why the run does not count ("" when it does)
    stored_bytes: int | None = None  # directory: the size of the compressed object
    work_cpu: float | None = None  # api: CPU seconds of the call alone, start-up excluded
    # api: the requests the server got during the run; lock: those the delay proxy saw
    requests: int | None = None
    tycho_json: int | None = None  # lock: how many of those requests were for a tycho.json

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Row:
    """The runs of one client in one scenario (on one fixture layout)."""

    scenario: Scenario
    client: ClientName
    label: str  # what the table shows: the client, or its command for start-up rows
    layout: Layout | None = None
    runs: list[Run] = field(default_factory=list)
    side: Action | None = None  # lock: which of the scenario's commands (LOCK_SIDES) it runs

    @property
    def good(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    def median(self) -> float | None:
        return median(run.wall for run in self.good)

    def walls(self) -> list[float]:
        return [run.wall for run in self.good]

    def peak_rss(self) -> float | None:
        return max((run.maxrss_mib for run in self.good), default=None)

    def cpu(self) -> float | None:
        return median(run.cpu for run in self.good)

    def stored(self) -> int | None:
        """The compressed object's size (directory rows): the median over the runs (the
        same every time at one level, unless the client's output varies)."""
        found = median(run.stored_bytes for run in self.good if run.stored_bytes is not None)
        return None if found is None else int(found)

    def cpu_per_request(self) -> float | None:
        """Client CPU seconds per request, start-up excluded (api rows): the median over
        the runs that counted both."""
        return median(run.work_cpu / run.requests for run in self.good
                      if run.work_cpu is not None and run.requests)

    def work_cpu(self) -> float | None:
        """CPU seconds of the work alone (api rows), median over the runs."""
        return median(run.work_cpu for run in self.good if run.work_cpu is not None)

    def requests(self) -> int | None:
        found = median(run.requests for run in self.good if run.requests is not None)
        return None if found is None else int(found)

    def tycho_json(self) -> int | None:
        found = median(run.tycho_json for run in self.good if run.tycho_json is not None)
        return None if found is None else int(found)

    def most_requests(self) -> int | None:
        """The most requests any good run made (the lock group's "zero in every run")."""
        return max((run.requests for run in self.good if run.requests is not None),
                   default=None)

    def server_load(self) -> float | None:
        """The server's CPU seconds per second of the run (median over the runs)."""
        return median(run.server_cpu / run.wall for run in self.good
                      if run.server_cpu is not None and run.wall > 0)

    def proxy_load(self) -> float | None:
        return median(run.proxy_cpu / run.wall for run in self.good
                      if run.proxy_cpu is not None and run.wall > 0)

    def spent(self) -> float:
        return sum(run.wall for run in self.runs)

    def summary(self) -> dict[str, Any]:
        walls = self.walls()
        return {"scenario": self.scenario.name, "group": self.scenario.group.value,
                "action": self.scenario.action.value, "size": self.scenario.size,
                "count": self.scenario.count, "latency_ms": self.scenario.latency_ms,
                "client": self.client.value, "label": self.label,
                "layout": self.layout.value if self.layout else None,
                "median_s": self.median(), "min_s": min(walls, default=None),
                "max_s": max(walls, default=None), "peak_rss_mib": self.peak_rss(),
                "client_cpu_s": self.cpu(), "server_load": self.server_load(),
                "proxy_load": self.proxy_load(), "stored_bytes": self.stored(),
                "cpu_per_request_s": self.cpu_per_request(), "requests": self.requests(),
                "files": self.scenario.files or None, "level": self.scenario.level or None,
                "side": self.side.value if self.side else None,
                "runs": [asdict(run) for run in self.runs]}


class Budget:
    """How many runs a row gets: ``repeat`` of them, but no further run once the row's runs
    took ``row_seconds`` in all (it always gets one), and none at all after the deadline of
    the whole benchmark. So every repeat loop is bounded in count and in time."""

    def __init__(self, row_seconds: float, total_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.row_seconds = row_seconds
        self._clock = clock
        self.deadline = clock() + total_seconds
        self.skipped: list[str] = []

    def expired(self) -> bool:
        return self._clock() >= self.deadline

    def due(self, row: Row, repeat: int) -> bool:
        """Whether ``row`` gets another run. The rows the targets compare (tychoreg, s5cmd,
        the bare interpreter) always get their ``repeat`` runs, their medians being the
        point of the run; the time per row only trims the other clients."""
        if len(row.runs) >= repeat:
            return False
        if self.expired():
            note = f"{row.scenario.name} / {row.label}: not run (again): time limit reached"
            if note not in self.skipped:
                self.skipped.append(note)
            return False
        return not row.runs or row.client in TARGET_CLIENTS or row.spent() < self.row_seconds


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class Runner:
    """Runs measured commands in fresh working directories and appends them to their rows."""

    def __init__(self, tmp: Path, timeout: float, server_cpu: CpuProbe | None = None,
                 proxy_cpu: CpuProbe | None = None) -> None:
        self.tmp = tmp
        self.timeout = timeout
        self.server_cpu = server_cpu
        self.proxy_cpu = proxy_cpu
        self._count = 0

    def workdir(self) -> Path:
        """A fresh, empty working directory: no .tychoreg.json, nothing pulled yet."""
        self._count += 1
        path = self.tmp / "work" / f"run{self._count:05d}"
        path.mkdir(parents=True)
        return path

    def measure(self, row: Row, argv: Sequence[str], cwd: Path, env: dict[str, str], *,
                check: Callable[[], str] | None = None, through_proxy: bool = False,
                stored: Callable[[], int | None] | None = None,
                work: Callable[[], tuple[float | None, int | None]] | None = None) -> Run:
        """Run ``argv`` once under timed.py in ``cwd``; ``check`` (after a clean exit)
        returns '' when the work was really done, else what is wrong; ``stored`` (after a
        clean exit, before ``check``) the size of the object the run made or read;
        ``work`` (likewise) the CPU seconds of the work alone and the requests it made."""
        log = cwd.with_suffix(".log")
        server = self.server_cpu() if self.server_cpu else None
        proxy = self.proxy_cpu() if self.proxy_cpu and through_proxy else None
        proc = subprocess.Popen(
            [sys.executable, str(TIMED), "--log", str(log), "--timeout", str(self.timeout),
             "--", *argv],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout + 60)
        except BaseException:
            # SIGTERM, not SIGKILL: timed.py then ends the command's process tree too.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        server_cpu = _delta(self.server_cpu, server)
        proxy_cpu = _delta(self.proxy_cpu, proxy)
        if proc.returncode != 0:
            raise RuntimeError(f"timed.py failed: {stderr.strip()}")
        data = json.loads(stdout)
        error = ""
        stored_bytes = None
        work_cpu, requests = None, None
        if data["timed_out"]:
            error = f"timed out after {self.timeout:g} s"
        elif data["rc"] != 0:
            error = f"exit {data['rc']}"
        else:
            stored_bytes = stored() if stored is not None else None
            work_cpu, requests = work() if work is not None else (None, None)
            error = check() if check is not None else ""
        if error:
            error = f"{' '.join(argv[:4])} ...: {error}\n{tail(log)}".strip()
        run = Run(data["wall"], data["maxrss_kib"] / KiB, data["cpu"], server_cpu, proxy_cpu,
                  error, stored_bytes, work_cpu, requests)
        row.runs.append(run)
        state = f"{run.wall:8.3f} s  {run.maxrss_mib:4.0f} MiB" if run.ok else "FAILED"
        layout = f" [{row.layout.value}]" if row.layout else ""
        print(f"  {row.scenario.name:<36} {row.label + layout:<34} run {len(row.runs)}: "
              f"{state}", file=sys.stderr, flush=True)
        shutil.rmtree(cwd, ignore_errors=True)
        log.unlink(missing_ok=True)
        return run


S3_REQUESTS = "SeaweedFS_s3_request_total{"  # one counter per bucket, HTTP code and type


def s3_requests(metrics: str, bucket: str) -> int:
    """The S3 requests SeaweedFS answered for ``bucket``, whatever their code and type:
    the sum of its ``SeaweedFS_s3_request_total`` counters in a Prometheus text page."""
    label = f'bucket="{bucket}"'
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith(S3_REQUESTS) and label in line.split("}", 1)[0])


def requests_for(targets: Iterable[str], name: str = "") -> int:
    """How many of these request targets (path and query string, as sent) are for a key
    named ``name`` (any key when ``name`` is empty): ``/b/p1/tycho.json?x-id=GetObject``
    is one for ``tycho.json``."""
    return sum(1 for target in targets
               if not name or target.split("?", 1)[0].endswith(f"/{name}"))


def harness_cpu() -> float:
    """This process's own CPU seconds: while a client runs, the harness only waits, so
    this is the delay proxy's work (it runs in a thread here)."""
    times = os.times()
    return times.user + times.system


def _delta(probe: CpuProbe | None, before: float | None) -> float | None:
    if probe is None or before is None:
        return None
    after = probe()
    return None if after is None else after - before


def files_of_size(outdir: Path, size: int, count: int) -> str:
    """'' when ``outdir`` holds exactly ``count`` files of ``size`` bytes (sidecars aside)."""
    if not outdir.is_dir():
        return f"nothing written to {outdir}"
    found = [p for p in outdir.rglob("*") if p.is_file() and p.suffix != ".etag"]
    right = sum(1 for p in found if p.stat().st_size == size)
    if right == count == len(found):
        return ""
    return f"expected {count} files of {size} bytes in {outdir}, found {right} of {len(found)}"


SAMPLE_EDGE = 1 * MiB  # a sampled file larger than twice this is hashed at both ends only


@dataclass(frozen=True)
class TreeSummary:
    """What a pull's check compares: counts, bytes, and the SHA-256 of sampled files."""

    files: int
    dirs: int
    bytes: int
    others: int  # entries neither files nor directories (symlinks, ...)
    samples: tuple[tuple[str, str], ...]  # (relative path, sample_digest)


def sample_digest(path: Path) -> str:
    """SHA-256 of the file; of a large one, of its size, first and last MiB (cheap)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= 2 * SAMPLE_EDGE:
                digest.update(f.read())
            else:
                digest.update(str(size).encode())
                digest.update(f.read(SAMPLE_EDGE))
                f.seek(size - SAMPLE_EDGE)
                digest.update(f.read(SAMPLE_EDGE))
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return digest.hexdigest()


PULL_PROOF = ".tychoreg-pull"  # tychoreg's proof at the root of a pulled tree: not content


def summarize_tree(root: Path, samples: Sequence[str]) -> TreeSummary:
    """Walk ``root`` (links not followed): its files, directories and bytes, and the
    digests of the ``samples`` (paths relative to it); the proof tychoreg writes at the
    root of a pulled tree is left out."""
    files = dirs = total = others = 0
    for parent, subdirs, names in os.walk(root):
        for name in (*names, *subdirs):
            if name == PULL_PROOF and parent == os.fspath(root):
                continue
            info = os.lstat(os.path.join(parent, name))
            if stat.S_ISREG(info.st_mode):
                files += 1
                total += info.st_size
            elif stat.S_ISDIR(info.st_mode):
                dirs += 1
            else:  # a symlink (to a directory too: os.walk lists those with subdirs)
                others += 1
    return TreeSummary(files, dirs, total, others,
                       tuple((rel, sample_digest(root / rel)) for rel in samples))


def tree_difference(expected: TreeSummary, found: TreeSummary) -> str:
    """'' when the two trees agree, else what differs."""
    problems = [f"{what}: {theirs:,}, expected {mine:,}" for what, mine, theirs in (
        ("files", expected.files, found.files), ("directories", expected.dirs, found.dirs),
        ("bytes", expected.bytes, found.bytes), ("other entries", expected.others,
                                                 found.others)) if mine != theirs]
    wrong = [rel for (rel, mine), (_, theirs) in zip(expected.samples, found.samples,
                                                      strict=True) if mine != theirs]
    if wrong:
        problems.append(f"{len(wrong)} of {len(expected.samples)} sampled files differ "
                        f"(e.g. {wrong[0]})")
    return "; ".join(problems)


def tree_mismatch(expected: TreeSummary, root: Path) -> str:
    """'' when the tree extracted at ``root`` matches the source, else what differs."""
    if not root.is_dir():
        return f"no directory at {root}"
    difference = tree_difference(expected, summarize_tree(
        root, [rel for rel, _ in expected.samples]))
    return f"the tree at {root} differs from the source: {difference}" if difference else ""


def rate_mib_s(nbytes: int, seconds: float | None) -> float | None:
    """MiB/s, or None when there is no positive time to divide by."""
    if seconds is None or seconds <= 0:
        return None
    return nbytes / MiB / seconds


def is_transfer(scenario: Scenario) -> bool:
    """Whether the scenario's rate is in MiB/s (one file, one tree) rather than
    packages/s."""
    return scenario.action in (Action.PUSH, Action.PULL, Action.PUSH_DIR, Action.PULL_DIR)
