"""The data: random files, buckets, and packages in both layouts, written before measuring.

Two layouts (``scenarios.Layout``):

- tycho-station's: ``PKG/tycho.json`` (``{"localname", "latest"}``, ``indent=2``) and
  ``PKG/tycho_1.0.pkg``. tychoreg checks such a version by size and MD5 (the ETag of a
  single-part upload), or by size alone when the ETag is a multipart one.
- tychoreg's: as a ``tychoreg push`` leaves it, with ``PKG/tycho_1.0.meta.json`` (the
  record ``{"sha256", "size", "pushed_at", "tool", "localname"}``) and the same record in
  ``tycho.json`` under
  ``"tychoreg": {"records": {"1.0": ...}}``, so tychoreg checks SHA-256.

A handful of packages are pushed with tychoreg itself; hundreds or thousands are written
object by object (``tychoreg_objects``), and ``layout_differences`` compares what that writes
with what a real ``tychoreg push`` wrote, so a change of the product's layout shows up as a
note rather than as quietly unrepresentative fixtures. Many objects go up with s5cmd (one
process, hundreds of requests in flight) when it is installed, else with boto3 threads.

The directory scenario's tree (benchmarks/tree.py plans it and makes its bytes) is written
once per run under the run's temporary directory, and summarized (files, bytes, sampled
SHA-256) for the checks of every pull.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.measure import TreeSummary, summarize_tree
from benchmarks.scenarios import PACKAGE_VERSION, Action, Group, Layout, Scenario
from benchmarks.tree import TreeSpec, corpus, file_chunks
from benchmarks.units import MiB, fmt_count, fmt_size

if TYPE_CHECKING:  # servers imports psutil, which the test extra does not install
    from benchmarks.servers import Credentials

WARMUP_KEY = "bench-warmup"  # not a package: a key at the bucket's root, not ending in .pkg
FILL_TIMEOUT = 900.0  # seconds one bulk upload may take
MAX_PAGES = 10_000  # listing pages read when emptying a bucket (1,000 keys each)


def package_names(count: int, prefix: str = "p") -> tuple[str, ...]:
    """``p00000``, ``p00001``, ...: valid package names that sort in numeric order."""
    width = max(5, len(str(count - 1)))
    return tuple(f"{prefix}{i:0{width}d}" for i in range(count))


def pkg_key(package: str, version: str = PACKAGE_VERSION) -> str:
    return f"{package}/tycho_{version}.pkg"


def record_key(package: str, version: str = PACKAGE_VERSION) -> str:
    return f"{package}/tycho_{version}.meta.json"


def meta_key(package: str) -> str:
    return f"{package}/tycho.json"


def localname(package: str) -> str:
    return f"{package}.bin"


def _dump(data: Mapping[str, Any]) -> bytes:
    """As tycho-station and tychoreg write their JSON objects: ``indent=2``."""
    return json.dumps(data, indent=2).encode()


def station_objects(package: str, data: bytes) -> dict[str, bytes]:
    """A version as tycho-station leaves it: the bytes, then tycho.json."""
    return {pkg_key(package): data,
            meta_key(package): _dump({"localname": localname(package),
                                      "latest": PACKAGE_VERSION})}


def now() -> str:
    """``pushed_at`` as tychoreg writes it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def tychoreg_record(package: str, data: bytes, tool: str, pushed_at: str) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "pushed_at": pushed_at, "tool": tool, "localname": localname(package)}


def tychoreg_objects(package: str, data: bytes, tool: str, pushed_at: str) -> dict[str, bytes]:
    """A version as ``tychoreg push --promote-latest`` leaves it, in the order it writes them
    (the bytes, the record, tycho.json with the record's copy)."""
    record = tychoreg_record(package, data, tool, pushed_at)
    meta = {"localname": localname(package), "latest": PACKAGE_VERSION,
            "tychoreg": {"records": {PACKAGE_VERSION: record}}}
    return {pkg_key(package): data, record_key(package): _dump(record),
            meta_key(package): _dump(meta)}


def layout_differences(real: Mapping[str, bytes], synthetic: Mapping[str, bytes]) -> list[str]:
    """What differs between the objects a real push wrote and ``tychoreg_objects``' (keys,
    and for JSON objects their parsed content); [] when they are the same."""
    out: list[str] = []
    for key in sorted(set(real) - set(synthetic)):
        out.append(f"a real push writes {key}, the fixtures do not")
    for key in sorted(set(synthetic) - set(real)):
        out.append(f"the fixtures write {key}, a real push does not")
    for key in sorted(set(real) & set(synthetic)):
        if key.endswith(".json"):
            try:
                same = json.loads(real[key]) == json.loads(synthetic[key])
            except ValueError:
                same = real[key] == synthetic[key]
            if not same:
                out.append(f"{key}: a real push wrote {real[key].decode(errors='replace')}, "
                           f"the fixtures write {synthetic[key].decode(errors='replace')}")
        elif real[key] != synthetic[key]:
            out.append(f"{key}: the bytes differ")
    return out


def make_file(path: Path, size: int) -> Path:
    """``size`` random bytes (incompressible, so no layer can shortcut them)."""
    with path.open("wb") as out:
        for offset in range(0, size, 8 * MiB):
            out.write(os.urandom(min(8 * MiB, size - offset)))
    return path


@dataclass(frozen=True)
class SourceTree:
    """The directory scenario's tree, written: its spec, where it is, its summary."""

    spec: TreeSpec
    path: Path  # the tree's root (its name is the spec's)
    summary: TreeSummary


def write_tree(spec: TreeSpec, parent: Path) -> SourceTree:
    """Write the tree at ``parent/NAME`` and check that it is the one planned."""
    root = parent / spec.name
    root.mkdir(parents=True)
    for rel in spec.dirs:
        (root / rel).mkdir()
    text = corpus(spec.seed)
    for file in spec.files:
        with (root / file.path).open("wb") as out:
            for chunk in file_chunks(file, text, spec.seed):
                out.write(chunk)
    summary = summarize_tree(root, [f.path for f in spec.samples()])
    if (summary.files, summary.dirs, summary.bytes) != (
            len(spec.files), len(spec.dirs), spec.total_bytes):
        raise RuntimeError(f"the tree written at {root} is not the one planned: {summary}")
    return SourceTree(spec, root, summary)


@dataclass(frozen=True)
class PackageSet:
    """Packages of one size in one bucket and layout; a scenario reads the first ``count``."""

    bucket: str
    layout: Layout
    names: tuple[str, ...]
    size: int


class Admin:
    """Buckets and fixtures, written with boto3 directly (fast, never measured)."""

    def __init__(self, endpoint: str, credentials: Credentials, s5cmd: str | None,
                 tmp: Path) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.s5cmd = s5cmd
        self.tmp = tmp
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint, region_name=credentials.region,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.session_token,
            config=Config(max_pool_connections=16, retries={"max_attempts": 5},
                          connect_timeout=10, read_timeout=120),
        )
        self._token = secrets.token_hex(3)
        self._count = 0
        self.buckets: set[str] = set()
        self.notes: list[str] = []

    # -- buckets -------------------------------------------------------------------------

    def new_bucket(self) -> str:
        """A new bucket with one object in it, so that the server has set the bucket's
        storage up (SeaweedFS grows a volume on the first write) before anything is timed."""
        self._count += 1
        bucket = f"tychobench-{self._token}-{self._count}"
        self.client.create_bucket(Bucket=bucket)
        self.buckets.add(bucket)
        self.client.put_object(Bucket=bucket, Key=WARMUP_KEY, Body=b"warm-up")
        return bucket

    def drop_bucket(self, bucket: str) -> None:
        """Empty and delete it (SeaweedFS then frees the bucket's volumes)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for pages, page in enumerate(paginator.paginate(Bucket=bucket)):
            if pages >= MAX_PAGES:
                raise RuntimeError(f"bucket {bucket} has more than {MAX_PAGES} pages of keys")
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            with contextlib.suppress(ClientError):  # a killed client's, gone meanwhile
                self.client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])
        self.client.delete_bucket(Bucket=bucket)
        self.buckets.discard(bucket)

    def drop_all(self) -> list[str]:
        """Delete every bucket this run made; the warnings for those it could not."""
        warnings = []
        for bucket in sorted(self.buckets):
            try:
                self.drop_bucket(bucket)
            except Exception as exc:  # cleanup goes on; say what was left behind
                warnings.append(f"could not delete bucket {bucket}: {exc}")
        return warnings

    # -- reading -------------------------------------------------------------------------

    def object_size(self, bucket: str, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError:
            return None

    def etag(self, bucket: str, key: str) -> str:
        return str(self.client.head_object(Bucket=bucket, Key=key)["ETag"])

    def objects_under(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix`` (one listing page: a package has a few)."""
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return {item["Key"]: self.client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                .read() for item in listing.get("Contents", [])}

    def presigner(self, bucket: str) -> Callable[[str, str], str]:
        def presign(method: str, key: str) -> str:
            return str(self.client.generate_presigned_url(
                method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600))

        return presign

    # -- writing -------------------------------------------------------------------------

    def put_objects(self, bucket: str, objects: Mapping[str, bytes]) -> None:
        for key, body in objects.items():
            self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def put_station_large(self, bucket: str, package: str, file: Path) -> None:
        """As tycho-station pushes a large file: boto3's upload_file (multipart, 8 MiB
        parts, so a multipart ETag: tychoreg can check only the size), then tycho.json."""
        self.client.upload_file(str(file), bucket, pkg_key(package))
        self.client.put_object(Bucket=bucket, Key=meta_key(package),
                               Body=station_objects(package, b"")[meta_key(package)])

    def fill(self, bucket: str, layout: Layout, names: Sequence[str], size: int,
             tool: str) -> PackageSet:
        """Write ``names`` as packages of ``size`` random bytes in ``layout``, then check one
        of them: a tycho-station package must carry a plain-MD5 ETag to be checked by MD5."""
        pushed_at = now()

        def objects(name: str) -> dict[str, bytes]:
            data = os.urandom(size)
            if layout is Layout.STATION:
                return station_objects(name, data)
            return tychoreg_objects(name, data, tool, pushed_at)

        if self.s5cmd is not None:
            self._fill_with_s5cmd(bucket, names, objects)
        else:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda name: self.put_objects(bucket, objects(name)), names))
        sample = self.client.get_object(Bucket=bucket, Key=pkg_key(names[0]))
        body = sample["Body"].read()
        if len(body) != size:
            raise RuntimeError(f"fixture {bucket}/{pkg_key(names[0])}: {len(body)} bytes "
                               f"read back, {size} written")
        if sample["ETag"].strip('"') != hashlib.md5(body).hexdigest():
            self.notes.append(f"{layout.value} fixtures of {size} bytes: the server's ETag "
                              f"{sample['ETag']} is not the MD5 of the bytes")
        return PackageSet(bucket, layout, tuple(names), size)

    def _fill_with_s5cmd(self, bucket: str, names: Sequence[str],
                         objects: Callable[[str], dict[str, bytes]]) -> None:
        """A local tree of the objects, uploaded in one ``s5cmd cp tree/ s3://bucket/``."""
        assert self.s5cmd is not None
        with self._scratch("tree") as tree:
            for name in names:
                for key, body in objects(name).items():
                    path = tree / key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(body)
            env = {**os.environ, **self.credentials.env()}
            done = subprocess.run(
                [self.s5cmd, "--endpoint-url", self.endpoint, "--log", "error", "cp",
                 f"{tree}/", f"s3://{bucket}/"],
                env=env, capture_output=True, text=True, timeout=FILL_TIMEOUT,
                stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise RuntimeError(f"filling {bucket} with s5cmd failed (exit "
                                   f"{done.returncode}): {done.stderr[-2000:]}")

    @contextlib.contextmanager
    def _scratch(self, name: str) -> Iterator[Path]:
        self._count += 1
        path = self.tmp / f"{name}-{self._count}"
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


PushWithTychoreg = Callable[[str, str, Path], None]  # (bucket, package, file)


class Fixtures:
    """The data every scenario reads, made on first use and shared by every client and
    latency (pulls change nothing): data files, single packages, package sets."""

    def __init__(self, admin: Admin, tmp: Path, push_with_tychoreg: PushWithTychoreg,
                 scaling_count: int) -> None:
        self.admin = admin
        self.tmp = tmp
        self.push_with_tychoreg = push_with_tychoreg
        self.scaling_count = scaling_count
        self.notes: list[str] = []
        self._files: dict[int, Path] = {}
        self._sets: dict[tuple[object, ...], PackageSet] = {}
        self._tool: str | None = None
        self._tree: SourceTree | None = None

    def tree(self, spec: TreeSpec) -> SourceTree:
        """The directory scenario's tree, written on first use (one per run)."""
        if self._tree is None or self._tree.spec != spec:
            if self._tree is not None:
                shutil.rmtree(self._tree.path.parent, ignore_errors=True)
            started = time.monotonic()
            self._tree = write_tree(spec, self.tmp / "dirtree")
            print(f"  fixtures: the tree, {spec.describe()}, written in "
                  f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        return self._tree

    def file_of(self, size: int) -> Path:
        """A file of ``size`` random bytes (one per size, made once)."""
        if size not in self._files:
            self._files[size] = make_file(self.tmp / f"data-{size}.bin", size)
        return self._files[size]

    def for_scenario(self, scenario: Scenario, layout: Layout) -> PackageSet:
        if scenario.action is Action.PULL:
            package = "tiny" if scenario.group is Group.STARTUP else "big"
            return self.single(layout, scenario.size, package)
        count = self.scaling_count if scenario.group is Group.SCALING else scenario.count
        return self.many(layout, scenario.size, count)

    def tool(self) -> str:
        """The record's ``tool`` as a real push writes it. On first use, one real push is
        compared with what ``tychoreg_objects`` writes for the same bytes, tool and time;
        each difference becomes a note."""
        if self._tool is not None:
            return self._tool
        bucket = self.admin.new_bucket()
        data = os.urandom(1024)
        probe = self.tmp / "probe.bin"  # named as the fixtures name the localname
        probe.write_bytes(data)
        self.push_with_tychoreg(bucket, "probe", probe)
        probe.unlink()
        real = self.admin.objects_under(bucket, "probe/")
        try:
            record = json.loads(real.get(record_key("probe"), b"{}"))
        except ValueError:
            record = {}
        self._tool = str(record.get("tool", "tychoreg"))
        synthetic = tychoreg_objects("probe", data, self._tool, str(record.get("pushed_at")))
        for difference in layout_differences(real, synthetic):
            self.notes.append(f"tychoreg-layout fixtures differ from a real push: {difference}")
        self.admin.drop_bucket(bucket)
        return self._tool

    def single(self, layout: Layout, size: int, package: str) -> PackageSet:
        """One package of ``size`` bytes in a bucket of its own: pushed by tychoreg itself,
        or as tycho-station pushes (boto3's upload_file: multipart above 8 MiB)."""
        key = ("single", layout, size, package)
        if key not in self._sets:
            bucket = self.admin.new_bucket()
            file = self.tmp / localname(package)
            shutil.copyfile(self.file_of(size), file)
            try:
                if layout is Layout.TYCHOREG:
                    self.push_with_tychoreg(bucket, package, file)
                else:
                    self.admin.put_station_large(bucket, package, file)
            finally:
                file.unlink()
            self._sets[key] = PackageSet(bucket, layout, (package,), size)
        return self._sets[key]

    def many(self, layout: Layout, size: int, count: int) -> PackageSet:
        """``count`` packages of ``size`` bytes in a bucket that holds exactly them (the AWS
        CLI copies a pull-list's bucket recursively). Scaling asks for its longest list once;
        a shorter list reads the first names (a pull-list names its packages)."""
        key = ("many", layout, size, count)
        if key not in self._sets:
            tool = self.tool() if layout is Layout.TYCHOREG else ""
            started = time.monotonic()
            bucket = self.admin.new_bucket()
            self._sets[key] = self.admin.fill(bucket, layout, package_names(count), size, tool)
            print(f"  fixtures: {fmt_count(count)} x {fmt_size(size)} [{layout.value}] in "
                  f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        return self._sets[key]
