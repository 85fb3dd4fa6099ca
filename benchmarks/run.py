"""Benchmark tychoreg against the tycho-station approach, the AWS CLI and s5cmd on SeaweedFS.

One command: starts SeaweedFS on loopback (or moto with ``--server moto``, or uses
``--endpoint URL``), adds latency with a delay proxy where a scenario asks for it, writes the
fixtures, runs every scenario with every client, repeated and interleaved, and prints a
table (medians, ranges, net throughput, ratios to s5cmd and tycho-station, peak RSS, CPU,
compressed sizes), the marginal cost per package, the targets of issues 9 and 10 with
PASS or MISS, and issue 16's as a table of ratios (to s5cmd, or to a bare ``python -c
pass`` of tychoreg's interpreter) with PASS, MISS or not run. Every client runs as a user
runs it, as its own process, timed from spawn to exit; a directory is pushed and pulled by
tychoreg and by a tar | zstd | s5cmd pipeline; ``pull_many`` runs through the Python API.
See benchmarks/README.md.

    python benchmarks/run.py [--quick] [--server seaweedfs|moto | --endpoint URL] [--json FILE]

This module parses the command line and runs the plan; the rest lives beside it:
scenarios.py (what runs), servers.py (server and proxy), fixtures.py (data), clients.py
(command lines), measure.py (runs and rows), report.py (table and targets).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.clients import (
    BarePython,
    Client,
    Job,
    Tychoreg,
    locate,
    make_clients,
    missing_pipeline_tools,
    tychoreg_python,
)
from benchmarks.fixtures import Admin, Fixtures, PackageSet, SourceTree, make_file, pkg_key
from benchmarks.measure import Budget, Row, Run, Runner, files_of_size, harness_cpu, tree_mismatch
from benchmarks.report import (
    DIRECTORY_LEGEND,
    LEGEND,
    Results,
    Target,
    Verdict,
    ab_table,
    directory_tree,
    header,
    issue16_verdicts,
    issue18_table,
    issue18_verdicts,
    issue19_verdicts,
    lock_summary,
    machine_info,
    marginal_lines,
    readme_with_results,
    sign_table,
    summary,
    table,
    target_table,
    targets,
    verdict_summary,
)
from benchmarks.scenarios import (
    DEFAULT_CLIENTS,
    FULL,
    LOCK_SIDES,
    QUICK,
    Action,
    ClientName,
    Group,
    Layout,
    Options,
    Scenario,
    build_scenarios,
    directory_spec,
    latencies_used,
    parse_lists,
    push_list_items,
    repeat_for,
    scaling_lengths,
    with_directory,
)
from benchmarks.servers import Endpoints, ServerKind, can_delay, open_endpoints
from benchmarks.units import parse_counts, parse_latencies, parse_size

SETUP_TIMEOUT = 900.0  # seconds an unmeasured set-up command (a fixture push) may take
DIR_PACKAGE = "tree"  # the directory scenario's package
SIGNER = "ci@example.com"  # the sign group's principal


@dataclass(frozen=True)
class Config:
    options: Options
    server: ServerKind
    endpoint: str | None
    clients: tuple[ClientName, ...]
    timeout: float
    budget: float
    max_minutes: float
    json: Path | None
    readme: Path | None = None  # whose results block the report replaces
    argv: tuple[str, ...] = ()  # the options given, as the README quotes them
    baseline: str | None = None  # --baseline: another tychoreg, run as tychoreg-base


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of about a minute: 16 MiB, one run each, lists of "
                             "20 x 1 MiB and 100 x 16 KiB, scaling 50/200/500 (300 vs s5cmd), "
                             "pull_many of 100 x 16 KiB, a tree of 40 MiB with 2,000 small "
                             "files")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", choices=[ServerKind.SEAWEEDFS.value, ServerKind.MOTO.value],
                       default=ServerKind.SEAWEEDFS.value,
                       help="the S3 server started on loopback (default seaweedfs)")
    where.add_argument("--endpoint", metavar="URL",
                       help="use this S3 endpoint instead of starting a server; credentials "
                            "from the AWS_* variables; latency only for http:// endpoints")
    parser.add_argument("--size", metavar="SIZE",
                        help="push and pull size (default 256MiB; a bare number is bytes, as "
                             "for tychoreg)")
    parser.add_argument("--lists", metavar="COUNTxSIZE,...",
                        help="pull-list scenarios (default 100x1MiB,500x16KiB)")
    parser.add_argument("--latencies", metavar="MS,...",
                        help="round trips added for pull-list, in ms (default 0,20)")
    parser.add_argument("--list-lengths", metavar="N,...",
                        help="scaling: pull-list lengths for the marginal cost per package "
                             "(default 100,1000,10000)")
    parser.add_argument("--s5cmd-length", type=int, metavar="N",
                        help="scaling: the length whose time must beat s5cmd's (default 5000)")
    parser.add_argument("--scaling-size", metavar="SIZE",
                        help="scaling: size of each package (default 4KiB)")
    parser.add_argument("--dir-size", metavar="SIZE",
                        help="directory: the tree's total size (default 500MiB; a bare number "
                             "is bytes)")
    parser.add_argument("--dir-files", metavar="N",
                        help="directory: its small files, 200 B to 6 KiB each (default "
                             "20000); three large files share the rest of --dir-size")
    parser.add_argument("--dir-level", metavar="N",
                        help="directory: the zstd level given to tychoreg (--level) and to "
                             "the pipeline's zstd (default 3)")
    parser.add_argument("--dir-seed", type=int, metavar="N",
                        help="directory: the seed the tree's layout and bytes follow from "
                             "(default 10)")
    parser.add_argument("--scenarios", metavar="NAMES",
                        default=",".join(g.value for g in Group),
                        help=f"subset of {','.join(g.value for g in Group)} (default all)")
    parser.add_argument("--clients", metavar="NAMES",
                        default=",".join(c.value for c in DEFAULT_CLIENTS),
                        help=f"subset of {','.join(c.value for c in ClientName)} (default: "
                             "all but raw-http, a single plain HTTP request as a ceiling; "
                             "python is python -c pass of tychoreg's interpreter, in the "
                             "start-up scenarios)")
    parser.add_argument("--baseline", metavar="EXE",
                        help="another tychoreg executable (say, the venv of the wheel before a "
                             "change): run as the client tychoreg-base beside tychoreg, "
                             "interleaved, in every scenario tychoreg runs, and compared in an "
                             "A/B table (tychoreg's median / tychoreg-base's)")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="runs per client and scenario (default 5, as issue 16's targets "
                             "ask; start-up at least 5; 1 with --quick)")
    parser.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="seconds one run may take before it is killed (default 600)")
    parser.add_argument("--budget", type=float, default=45, metavar="S",
                        help="seconds after which a client is not run again in a scenario "
                             "(it runs at least once; default 45); tychoreg, s5cmd and "
                             "python, whose medians the targets compare, always get --repeat")
    parser.add_argument("--max-minutes", type=float, metavar="M",
                        help="no new run after this many minutes (default 120; 10 with "
                             "--quick)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all results here")
    parser.add_argument("--readme", type=Path, metavar="FILE",
                        help="after a run that was not interrupted, replace the results "
                             "block of this README (benchmarks/README.md) with the report")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    try:
        options = replace(
            base,
            size=parse_size(args.size) if args.size else base.size,
            lists=parse_lists(args.lists) if args.lists else base.lists,
            latencies=parse_latencies(args.latencies) if args.latencies else base.latencies,
            list_lengths=parse_counts(args.list_lengths) if args.list_lengths else
            base.list_lengths,
            s5cmd_length=args.s5cmd_length or base.s5cmd_length,
            scaling_size=parse_size(args.scaling_size) if args.scaling_size else
            base.scaling_size,
            repeat=args.repeat or base.repeat,
            groups=Group.parse(args.scenarios),
        )
        options = with_directory(options, size=args.dir_size, files=args.dir_files,
                                 level=args.dir_level, seed=args.dir_seed)
        clients = ClientName.parse(args.clients)
    except ValueError as exc:
        parser.error(str(exc))
    if args.baseline is not None:
        if not os.access(args.baseline, os.X_OK):
            parser.error(f"--baseline {args.baseline}: not an executable file")
        if ClientName.BASELINE not in clients and ClientName.TYCHOREG in clients:
            at = clients.index(ClientName.TYCHOREG) + 1  # runs right after tychoreg
            clients = (*clients[:at], ClientName.BASELINE, *clients[at:])
    if options.repeat < 1 or not options.latencies or min(options.latencies) < 0 or \
            options.s5cmd_length < 1 or args.timeout <= 0 or args.budget < 0:
        parser.error("--repeat, --s5cmd-length and --timeout must be positive, --latencies "
                     "not negative")
    if args.endpoint and not can_delay(args.endpoint) and max(options.latencies) > 0:
        print("--endpoint over https: the delay proxy speaks plain HTTP; running at 0 ms only",
              file=sys.stderr)
        options = replace(options, latencies=(0,), lock_latency=0)
    if args.readme is not None:  # said now, not after the run
        try:
            readme_with_results(args.readme.read_text(), "", "", "")
        except (OSError, ValueError) as exc:
            parser.error(f"--readme {args.readme}: {exc}")
    server = ServerKind.ENDPOINT if args.endpoint else ServerKind(args.server)
    max_minutes = args.max_minutes or (10.0 if args.quick else 120.0)
    return Config(options, server, args.endpoint, clients, args.timeout, args.budget,
                  max_minutes, args.json, args.readme,
                  tuple(sys.argv[1:] if argv is None else argv), args.baseline)


def run_setup(argv: Sequence[str], cwd: Path, env: dict[str, str],
              ) -> subprocess.CompletedProcess[str]:
    """An unmeasured command (a fixture push), in a session of its own, so that a timeout
    or Ctrl-C ends its whole process tree (a pipeline's tar, zstd and s5cmd too)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=SETUP_TIMEOUT)
    except BaseException:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def base_env(tmp: Path, endpoints: Endpoints) -> dict[str, str]:
    """The clients' environment: the server's credentials; no TYCHOREG_* or AWS profile
    from outside, no ~/.aws config that could change the AWS CLI's transfer settings, no
    instance-metadata lookups."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TYCHOREG_", "AWS_"))}
    env.update(AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true")
    env.update(endpoints.backend.credentials.env())
    return env


class Bench:
    """Runs the scenarios: fixtures made once and shared, runs interleaved across clients."""

    def __init__(self, config: Config, clients: dict[ClientName, Client], endpoints: Endpoints,
                 admin: Admin, runner: Runner, budget: Budget, env: dict[str, str],
                 tmp: Path) -> None:
        self.config = config
        self.options = config.options
        self.clients = clients
        self.endpoints = endpoints
        self.admin = admin
        self.runner = runner
        self.budget = budget
        self.env = env
        self.tmp = tmp
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.fixtures = Fixtures(admin, tmp, self.push_with_tychoreg,
                                 max(scaling_lengths(self.options)))
        self._dir_objects: dict[ClientName, tuple[str, int]] = {}  # client: (bucket, size)
        self._tree: SourceTree | None = None
        self._signed: dict[str, Path] = {}  # sign group: bucket -> its allowed_signers

    # -- fixtures ------------------------------------------------------------------------

    def client_env(self, bucket: str | None, latency_ms: int = 0) -> dict[str, str]:
        env = {**self.env, "AWS_ENDPOINT_URL": self.endpoints.url(latency_ms)}
        if bucket is not None:
            env["TYCHOREG_REGISTRY"] = f"s3://{bucket}"
        return env

    def push_with_tychoreg(self, bucket: str, package: str, file: Path) -> None:
        """An unmeasured ``tychoreg push --promote-latest`` (fixtures of its layout)."""
        exe = self.clients.get(ClientName.TYCHOREG)
        if exe is None:
            path = locate(ClientName.TYCHOREG)
            if path is None:
                raise RuntimeError("tychoreg is not installed: no fixtures of its layout")
            exe = Tychoreg(path)
        workdir = self.runner.workdir()
        argv = exe.push(Job(self.admin.endpoint, bucket, workdir, package, file))
        done = subprocess.run(argv, cwd=workdir, env=self.client_env(bucket),
                              capture_output=True, text=True, timeout=SETUP_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)
        if done.returncode != 0:
            raise RuntimeError(f"fixture push {package} failed (exit {done.returncode}): "
                               f"{done.stderr[-2000:]}")

    # -- runs ----------------------------------------------------------------------------

    def new_row(self, scenario: Scenario, client: ClientName, layout: Layout | None) -> Row:
        row = Row(scenario, client, self.clients[client].label(scenario.action), layout)
        self.rows.append(row)
        return row

    def clients_for(self, scenario: Scenario) -> list[ClientName]:
        chosen = [name for name in self.config.clients if name in self.clients]
        if scenario.group is Group.DIRECTORY and ClientName.S5CMD in chosen:
            missing = missing_pipeline_tools()
            if missing:
                note = f"directory: the shell pipeline needs {', '.join(missing)}; skipped"
                if note not in self.notes:
                    self.notes.append(note)
                chosen.remove(ClientName.S5CMD)
        return chosen

    def run_scenario(self, scenario: Scenario) -> None:
        if scenario.group in (Group.LOCK, Group.SIGN):
            self.run_lock(scenario)
            return
        pairs = scenario.runs(self.clients_for(scenario))
        if not pairs:
            return
        print(f"{scenario.name}", file=sys.stderr, flush=True)
        rows = [self.new_row(scenario, client, layout) for client, layout in pairs]
        setups: dict[int, PackageSet] = {}
        for row in rows:  # fixtures first, so that no run waits on them midway
            if row.layout is not None:
                setups[id(row)] = self.fixtures.for_scenario(scenario, row.layout)
        if scenario.group is Group.DIRECTORY:
            self.tree()
            if scenario.action is Action.PULL_DIR:
                rows = [row for row in rows if self.directory_object(row)]
        repeat = repeat_for(scenario, self.options)
        for _ in range(repeat):
            for row in rows:
                if self.budget.due(row, repeat):
                    self.run_once(row, setups.get(id(row)))

    # -- the directory scenario ----------------------------------------------------------

    def tree(self) -> SourceTree:
        """The directory scenario's tree, planned and written on first use."""
        if self._tree is None:
            self._tree = self.fixtures.tree(directory_spec(self.options))
        return self._tree

    def dir_job(self, url: str, bucket: str, workdir: Path) -> Job:
        return Job(url, bucket, workdir, DIR_PACKAGE, tree=self.tree().path,
                   level=self.options.dir_level)

    def directory_object(self, row: Row) -> bool:
        """The object a directory pull of ``row``'s client reads: pushed once, unmeasured,
        by that client into a bucket of its own. False, with a failed run in the row (so
        the table and the targets show it), when that push fails."""
        if row.client in self._dir_objects:
            return True
        bucket = self.admin.new_bucket()
        workdir = self.runner.workdir()
        try:
            job = self.dir_job(self.endpoints.backend.endpoint, bucket, workdir)
            done = run_setup(self.clients[row.client].command(Action.PUSH_DIR, job), workdir,
                             self.client_env(bucket))
            size = self.admin.object_size(bucket, pkg_key(DIR_PACKAGE))
            if done.returncode != 0 or size is None:
                raise RuntimeError(f"exit {done.returncode}, object "
                                   f"{'missing' if size is None else f'of {size} bytes'}: "
                                   f"{(done.stderr or done.stdout)[-2000:].strip()}")
        except Exception as exc:
            row.runs.append(Run(0.0, 0.0, 0.0, error=f"the set-up push (unmeasured) for the "
                                                     f"pulls failed: {exc}"))
            print(f"  {row.scenario.name}: {row.label}'s set-up push failed; no pull runs",
                  file=sys.stderr, flush=True)
            return False
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self._dir_objects[row.client] = (bucket, size)
        return True

    def run_push_dir(self, row: Row, client: Client, url: str, workdir: Path,
                     measure: Callable[..., object]) -> None:
        """A fresh bucket for every run, as for files; the object's size is what the run
        compressed to, and must hold at least the tree's random bytes."""
        tree = self.tree()
        bucket = self.admin.new_bucket()
        sizes: list[int | None] = []

        def stored() -> int | None:
            sizes.append(self.admin.object_size(bucket, pkg_key(DIR_PACKAGE)))
            return sizes[-1]

        def check() -> str:
            found = sizes[-1] if sizes else None
            least = tree.spec.random_bytes
            if found is None:
                return f"no object at {pkg_key(DIR_PACKAGE)}"
            if found < least:
                return (f"the object is {found} bytes, less than the tree's {least} random "
                        "bytes: not the whole tree")
            return ""

        try:
            measure(row, client.command(Action.PUSH_DIR, self.dir_job(url, bucket, workdir)),
                    workdir, self.client_env(bucket), check=check, stored=stored)
        finally:
            self.admin.drop_bucket(bucket)

    def run_pull_dir(self, row: Row, client: Client, url: str, workdir: Path,
                     measure: Callable[..., object]) -> None:
        """Into a fresh, empty directory (removed after the run); the tree extracted must
        match the source."""
        bucket, size = self._dir_objects[row.client]
        job = self.dir_job(url, bucket, workdir)
        job.outdir.mkdir()
        measure(row, client.command(Action.PULL_DIR, job), workdir, self.client_env(bucket),
                check=partial(tree_mismatch, self.tree().summary, job.outtree),
                stored=lambda: size)

    # -- the lock group (issue 18) --------------------------------------------------------

    def run_lock(self, scenario: Scenario) -> None:
        """The scenario's two commands (LOCK_SIDES), interleaved, on the set-up made once:
        the lock file of the fixture's packages and, for "all current", an outdir one
        unmeasured locked pull filled; push-list gets a fresh bucket per run."""
        tychoreg = self.clients.get(ClientName.TYCHOREG)
        if not isinstance(tychoreg, Tychoreg):  # not installed, or not in --clients
            return
        python = self.clients.get(ClientName.PYTHON) or BarePython(tychoreg_python())
        if scenario.group is Group.SIGN and shutil.which("ssh-keygen") is None:
            note = "sign: skipped, ssh-keygen is not installed (it makes the signing key)"
            print(f"{scenario.name}: {note}", file=sys.stderr, flush=True)
            if note not in self.notes:
                self.notes.append(note)
            return
        print(f"{scenario.name}", file=sys.stderr, flush=True)
        rows = []
        for client, action, label in LOCK_SIDES[scenario.action]:
            rows.append(Row(scenario, client, label, scenario.layouts[0] if
                            scenario.layouts and client.is_tychoreg else None, side=action))
        self.rows += rows
        sides: dict[ClientName, Client] = {ClientName.TYCHOREG: tychoreg,
                                           ClientName.PYTHON: python}
        place = self.tmp / scenario.group.value / scenario.action.value
        place.mkdir(parents=True)
        try:
            job = self.lock_setup(scenario, tychoreg, place)
        except Exception as exc:
            rows[0].runs.append(Run(0.0, 0.0, 0.0, error=f"the set-up (unmeasured) failed: "
                                                         f"{exc}"))
            print(f"  {scenario.name}: set-up failed; no runs", file=sys.stderr, flush=True)
            return
        repeat = repeat_for(scenario, self.options)
        try:
            for _ in range(repeat):
                for row in rows:
                    if self.budget.due(row, repeat):
                        self.run_lock_once(row, sides[row.client], job)
        finally:
            shutil.rmtree(place, ignore_errors=True)

    def lock_setup(self, scenario: Scenario, tychoreg: Tychoreg, place: Path) -> Job:
        """What every run of the scenario shares (a Job whose workdir each run replaces):
        the push-list's files, or the packages, their lock file (``tychoreg lock``,
        at 0 ms) and for "all current" the outdir a first locked pull filled; for the sign
        group, first the key and allowed_signers file, the versions signed with it, and the
        lock and first pull made under that policy."""
        if scenario.action is Action.PUSH_LIST:
            packages, versions, _ = self.options.lock_push
            items = tuple((package, version, make_file(place / f"{package}-{version}.bin",
                                                       scenario.size))
                          for package, version in push_list_items(packages, versions))
            return Job("", "", place, items=items)
        fixture = self.fixtures.for_scenario(scenario, Layout.TYCHOREG)
        job = Job(self.endpoints.backend.endpoint, fixture.bucket, place, fixture.names[0],
                  packages=fixture.names[:scenario.count], lockfile=place / "tychoreg.lock")
        env = self.client_env(fixture.bucket)
        steps = []
        if scenario.group is Group.SIGN:  # the versions signed once, for both scenarios
            job.allowed_signers = self._signed.get(fixture.bucket)
            if job.allowed_signers is None:
                keys = self.tmp / "sign-key" / scenario.action.value  # outlives ``place``
                keys.mkdir(parents=True)
                job.allowed_signers, key = self.signing_key(keys, env)
                steps.append(tychoreg.sign_each(job, key))
        if scenario.action is not Action.SIGN_PULL:  # the cold signed pull needs no lock
            steps.append(tychoreg.lock(job))
        if scenario.action in (Action.PULL_CURRENT, Action.SIGN_CURRENT):
            job.kept_outdir = place / "current"
            steps.append(tychoreg.command(scenario.action, job))
        for argv in steps:
            done = run_setup(argv, place, env)
            if done.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv[1:3])}: exit {done.returncode}: "
                                   f"{(done.stderr or done.stdout)[-2000:].strip()}")
        if job.allowed_signers is not None:
            self._signed[fixture.bucket] = job.allowed_signers
        return job

    def signing_key(self, place: Path, env: dict[str, str]) -> tuple[Path, Path]:
        """(allowed_signers, key): an ed25519 key made in ``place`` (a new folder) and the
        one-line allowed_signers file that trusts it (``ci@example.com`` and the .pub's
        key)."""
        key = place / "key"
        done = run_setup(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", SIGNER,
                          "-f", str(key)], place, env)
        if done.returncode != 0:
            raise RuntimeError(f"ssh-keygen: exit {done.returncode}: {done.stderr.strip()}")
        kind, blob = key.with_suffix(".pub").read_text().split()[:2]
        allowed = place / "allowed_signers"
        allowed.write_text(f"{SIGNER} {kind} {blob}\n")
        return allowed, key

    def run_lock_once(self, row: Row, client: Client, shared: Job) -> None:
        """One run of one side, its requests counted at the delay proxy (cleared first)."""
        scenario = row.scenario
        assert row.side is not None
        proxy = self.endpoints.proxy(scenario.latency_ms)
        workdir = self.runner.workdir()
        job = replace(shared, endpoint=self.endpoints.url(scenario.latency_ms),
                      workdir=workdir)
        if proxy is not None:
            proxy.clear()

        def seen() -> tuple[float | None, int | None]:
            return None, proxy.seen() if proxy is not None else None

        measure = partial(self.runner.measure, through_proxy=proxy is not None, work=seen)
        try:
            if row.side is Action.HELP:
                measure(row, client.help()[1], workdir, self.client_env(None))
            elif row.side in (Action.PUSH_LIST, Action.PUSH_EACH):
                self.run_push_items(row, client, job, measure)
            else:
                measure(row, client.command(row.side, job), workdir,
                        self.client_env(job.bucket, scenario.latency_ms),
                        check=partial(files_of_size, job.outdir, scenario.size,
                                      len(job.packages)))
            if proxy is not None and row.runs[-1].ok:  # what the difference is made of
                row.runs[-1] = replace(row.runs[-1], tycho_json=proxy.seen("tycho.json"))
        finally:
            if proxy is not None:
                proxy.clear()

    def run_push_items(self, row: Row, client: Client, job: Job,
                       measure: Callable[..., object]) -> None:
        """A fresh bucket per run (dropped after it); every item's object must be there,
        of its size."""
        bucket = self.admin.new_bucket()
        job = replace(job, bucket=bucket)

        def check() -> str:
            for package, version, _ in job.items:
                found = self.admin.object_size(bucket, pkg_key(package, version))
                if found != row.scenario.size:
                    return (f"{pkg_key(package, version)} is {found} bytes, "
                            f"{row.scenario.size} expected")
            return ""

        try:
            assert row.side is not None
            measure(row, client.command(row.side, job), job.workdir,
                    self.client_env(bucket, row.scenario.latency_ms), check=check)
        finally:
            self.admin.drop_bucket(bucket)

    # -- one run -------------------------------------------------------------------------

    def run_once(self, row: Row, fixture: PackageSet | None) -> None:
        scenario = row.scenario
        client = self.clients[row.client]
        proxy = self.endpoints.proxy(scenario.latency_ms)
        url = self.endpoints.url(scenario.latency_ms)
        workdir = self.runner.workdir()
        measure = partial(self.runner.measure, through_proxy=proxy is not None)
        try:
            if scenario.action is Action.HELP or client.baseline:
                measure(row, client.help()[1], workdir, self.client_env(None))
            elif scenario.action is Action.PUSH_DIR:
                self.run_push_dir(row, client, url, workdir, measure)
            elif scenario.action is Action.PULL_DIR:
                self.run_pull_dir(row, client, url, workdir, measure)
            elif scenario.action is Action.PUSH:
                self.run_push(row, client, url, workdir, measure)
            elif scenario.action is Action.PULL_MANY:
                assert fixture is not None
                self.run_pull_many(row, client, fixture, workdir, measure)
            else:
                assert fixture is not None
                self.run_pull(row, client, fixture, url, workdir, measure)
        finally:
            if proxy is not None:
                proxy.clear()

    def run_push(self, row: Row, client: Client, url: str, workdir: Path,
                 measure: Callable[..., object]) -> None:
        """A fresh bucket for every run (dropped after it, which frees its volumes)."""
        size = row.scenario.size
        bucket = self.admin.new_bucket()
        try:
            job = Job(url, bucket, workdir, "big", self.fixtures.file_of(size),
                      presign=self.admin.presigner(bucket))

            def check() -> str:
                found = self.admin.object_size(bucket, pkg_key(job.package))
                return "" if found == size else f"the object is {found} bytes, {size} expected"

            measure(row, client.command(Action.PUSH, job), workdir,
                    self.client_env(bucket, row.scenario.latency_ms), check=check)
        finally:
            self.admin.drop_bucket(bucket)

    def run_pull(self, row: Row, client: Client, fixture: PackageSet, url: str, workdir: Path,
                 measure: Callable[..., object]) -> None:
        scenario = row.scenario
        names = fixture.names[:scenario.count]
        job = Job(url, fixture.bucket, workdir, names[0], packages=names,
                  presign=self.admin.presigner(fixture.bucket))
        check = partial(files_of_size, job.outdir, scenario.size, len(names)) \
            if client.writes_files else None
        measure(row, client.command(scenario.action, job), workdir,
                self.client_env(fixture.bucket, scenario.latency_ms), check=check)


    def run_pull_many(self, row: Row, client: Client, fixture: PackageSet, workdir: Path,
                      measure: Callable[..., object]) -> None:
        """pull_many in one process; its requests are the server's count for the bucket
        (before and after), so nothing but the server is on the path."""
        scenario = row.scenario
        names = fixture.names[:scenario.count]
        job = Job(self.endpoints.backend.endpoint, fixture.bucket, workdir, names[0],
                  packages=names)
        before = self.endpoints.backend.requests(fixture.bucket)

        def work() -> tuple[float | None, int | None]:
            try:
                cpu = float(json.loads(job.api_report.read_text())["cpu_s"])
            except (OSError, ValueError, KeyError, TypeError):
                cpu = None
            after = self.endpoints.backend.requests(fixture.bucket)
            return cpu, None if before is None or after is None else after - before

        measure(row, client.command(Action.PULL_MANY, job), workdir,
                self.client_env(fixture.bucket), work=work,
                check=partial(files_of_size, job.outdir, scenario.size, len(names)))


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def report_text(bench: Bench, config: Config, info: dict[str, object],
                interrupted: bool) -> tuple[str, list[Target], list[Verdict]]:
    """The whole report as printed (and as ``--readme`` puts it in the README), with
    the targets of issues 9 and 10 and the verdicts on issue 16's."""
    results = Results(bench.rows, config.options)
    found = targets(results)
    verdicts = issue16_verdicts(results)
    lock_verdicts = issue18_verdicts(results)
    latencies = latencies_used(row.scenario for row in bench.rows) or (0,)
    out = [header(info, config.options, latencies)]
    if interrupted:
        out.append("INTERRUPTED: what was measured before Ctrl-C")
    out += ["", table(results, bench.endpoints.backend.saturates_at), "", LEGEND]
    tree = directory_tree(results)
    if tree is not None:
        out += [DIRECTORY_LEGEND, f"directory tree: {tree.describe()}"]
    marginal = marginal_lines(results)
    if marginal:
        out += ["", "marginal cost per package (scaling, 0 ms):"]
        out += [f"  {line}" for line in marginal]
    versus_base = ab_table(results)
    if versus_base:
        out += ["", "A/B: tychoreg against tychoreg-base (--baseline), medians of interleaved "
                "runs:", versus_base]
    out += ["", "targets of issue 16 (medians of interleaved runs; shown, not asserted):",
            target_table(verdicts), "",
            "targets of issue 18 (the lock group at "
            f"{config.options.lock_latency} ms; medians of interleaved runs; shown, not "
            "asserted):", issue18_table(lock_verdicts), "",
            f"targets of issue 19 (the sign group at {config.options.lock_latency} ms; "
            "medians of interleaved runs; shown, not asserted):",
            *([signed, ""] if (signed := sign_table(results)) else []),
            issue18_table(issue19_verdicts(results), issue=19), "",
            "targets of issues 9 and 10 (shown, not asserted):"]
    out += [f"  {target.state}  {target.name}: {target.measured}" for target in found]
    failures = [(row, run.error) for row in bench.rows for run in row.runs if not run.ok]
    if bench.notes or failures:
        out += ["", "notes:"]
        out += [f"  - {note}" for note in bench.notes]
        out += [f"  - FAILED {row.scenario.name} / {row.label}: {error}"
                for row, error in failures]
    return "\n".join(out), found, verdicts


def write_readme(path: Path, report: str, argv: Sequence[str], date: str) -> str:
    """Put the report in the README's results block, through a temporary file renamed
    over it (never half-written); what to tell the user."""
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    temp = path.with_name(f".{path.name}.tmp")
    try:
        temp.write_text(readme_with_results(path.read_text(), report, command, date))
        os.replace(temp, path)
    except (OSError, ValueError) as exc:
        temp.unlink(missing_ok=True)
        return f"README not updated: {exc}"
    return f"results written to {path}'s results block"


def _with_bytecode() -> None:
    """Start-up as users see it: their Python caches bytecode, so every client runs with
    it (a PYTHONDONTWRITEBYTECODE from the caller's environment would time the compiling
    of every module instead), and tychoreg's own modules are compiled before the first run."""
    import compileall

    import tycho_async

    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        print("note: PYTHONDONTWRITEBYTECODE unset for the clients (start-up is timed with "
              "bytecode cached, as users run)", file=sys.stderr)
    compileall.compile_dir(str(Path(tycho_async.__file__).parent), quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    _with_bytecode()
    tmp = Path(tempfile.mkdtemp(prefix="tychobench-"))
    notes: list[str] = []
    clients = make_clients(config.clients, notes, config.baseline)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    scenarios = build_scenarios(config.options)
    largest = max([config.options.size, config.options.tiny,
                   *(size for _, size in config.options.lists),
                   config.options.dir_size if Group.DIRECTORY in config.options.groups else 0])
    started = time.monotonic()
    interrupted = False
    bench: Bench | None = None
    try:
        with open_endpoints(config.server, url=config.endpoint, largest_object=largest,
                            tmp=tmp) as endpoints:
            print(f"server: {endpoints.backend.description} at {endpoints.backend.endpoint}",
                  file=sys.stderr, flush=True)
            admin = Admin(endpoints.backend.endpoint, endpoints.backend.credentials,
                          clients[ClientName.S5CMD].exe if ClientName.S5CMD in clients
                          else None, tmp)
            runner = Runner(tmp, config.timeout, endpoints.backend.cpu, harness_cpu)
            budget = Budget(config.budget, config.max_minutes * 60)
            bench = Bench(config, clients, endpoints, admin, runner, budget,
                          base_env(tmp, endpoints), tmp)
            bench.notes += notes
            try:
                for scenario in scenarios:
                    try:
                        bench.run_scenario(scenario)
                    except Exception as exc:  # the others may still run: say, go on
                        traceback.print_exc()
                        bench.notes.append(f"{scenario.name}: stopped by an error: {exc!r}")
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bench.notes += (bench.fixtures.notes + admin.notes + budget.skipped
                                + endpoints.proxy_errors())
                if config.server is ServerKind.ENDPOINT:  # ours vanish with the server
                    bench.notes += admin.drop_all()
            info = machine_info(locate(ClientName.AWS), locate(ClientName.S5CMD),
                                endpoints.backend.description)
        print(f"done in {time.monotonic() - started:.0f} s; servers stopped", file=sys.stderr)
        report, found, verdicts = report_text(bench, config, info, interrupted)
        print()
        print(report)
        if config.readme is not None:
            print()
            print(write_readme(config.readme, report, config.argv, str(info["date"]))
                  if not interrupted else "README not updated: the run was interrupted")
        if config.json is not None:
            data = summary(Results(bench.rows, config.options), info, found, bench.notes)
            data["issue16"] = [verdict_summary(v) for v in verdicts]
            data["issue18"] = [lock_summary(v) for v in
                               issue18_verdicts(Results(bench.rows, config.options))]
            data["issue19"] = [lock_summary(v) for v in
                               issue19_verdicts(Results(bench.rows, config.options))]
            data["report"] = report
            config.json.parent.mkdir(parents=True, exist_ok=True)
            config.json.write_text(json.dumps(data, indent=2, default=str))
            print(f"\nresults written to {config.json}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if interrupted:
        print("\ninterrupted: servers stopped, temporary data removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
