"""What a pull may replace and when it is up to date, on every backend: a directory's
proof inside it (package, version, ETag, manifest), sidecars that prove nothing,
localnames that would pass for a sidecar or for tychoreg's own files, local edits of a
pulled tree, and destinations that are standard output, a terminal, /dev or /proc."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.archive.proof import local_edits, read_proof, write_proof
from tycho_async.layout import PROOF

from .support import (
    ONE,
    TWO,
    TYCHOREG,
    Registry,
    _env,
    contents,
    listing,
    make_bucket,
    make_tree,
    ok,
    put_archive,
    put_version,
    s3_head,
    tree_tar,
    write_file,
)
from .trees import hand_tar, member, snapshot

pytestmark = pytest.mark.usefixtures("one_raw_client")


def etag_of(registry: Registry, key: str) -> str:
    """The ETag exactly as HeadObject returns it (quotes included), as sidecars hold it."""
    if registry.kind == "s3":
        return str(s3_head(registry, key)["ETag"])
    from tycho_async.storage.local import _etag

    return _etag(Path(registry.root, key).stat())


def rename_localname(registry: Registry, package: str, localname: str) -> None:
    """Give a package a localname no tychoreg would accept, as another client could."""
    meta = registry.meta(package)
    meta["localname"] = localname
    registry.put(f"{package}/tycho.json", json.dumps(meta, indent=2).encode())


def proof_of(path: Path) -> dict[str, Any]:
    return dict(json.loads((path / PROOF).read_text()))


# -- A2: what a pull may replace --------------------------------------------------------------

def test_an_etag_file_beside_a_user_directory_is_no_proof(registry: Registry) -> None:
    """The issue's repro: a file package named src.etag next to the user's ws/src made
    ``pull tree`` replace ws/src (and delete ws/src/main.c)."""
    make_tree(Path("build/src"))
    ok(registry.cli("push", "tree", "1", "build/src", "--promote-latest"))
    Path("ws/src").mkdir(parents=True)
    Path("ws/src/main.c").write_text("int main(void) { return 0; }\n")

    refused = registry.cli("pull", "tree", "--outdir", "ws")
    assert refused.exit_code == 2, (refused.stdout, refused.stderr)

    put_version(registry, "sneaky", "1", b"anything", latest=True)
    rename_localname(registry, "sneaky", "src.etag")
    named = registry.cli("pull", "sneaky", "--outdir", "ws")
    assert named.exit_code == 3, (named.stdout, named.stderr)
    assert ".etag" in named.stderr and "--outfile" in named.stderr
    assert not Path("ws/src.etag").exists()
    # written on purpose (or by tychoreg 0.1.0, or by hand), it still proves nothing
    ok(registry.cli("pull", "sneaky", "-o", "ws/src.etag"))

    for args in ((), ("--force",)):
        again = registry.cli("pull", "tree", "--outdir", "ws", *args)
        assert again.exit_code == 2, (args, again.stdout, again.stderr)
        assert "src.etag" in again.stderr and "not proof" in again.stderr
        assert "rm -r" in again.stderr
    assert Path("ws/src/main.c").read_text() == "int main(void) { return 0; }\n"
    assert listing(Path("ws/src")) == ["main.c"]


def test_a_fifo_in_the_proofs_place_is_no_proof_and_no_hang(registry: Registry) -> None:
    """A FIFO named like the proof (made by the user, or anything) is refused as "no
    proof" at once; opening it for reading used to wait for a writer forever."""
    make_tree(Path("build/src"))
    ok(registry.cli("push", "tree", "1", "build/src", "--promote-latest"))
    Path("ws/src").mkdir(parents=True)
    os.mkfifo(Path("ws/src", PROOF))
    refused = registry.cli("pull", "tree", "--outdir", "ws")
    assert refused.exit_code == 2, (refused.stdout, refused.stderr)
    assert f"no {PROOF} inside" in refused.stderr
    assert listing(Path("ws/src")) == [PROOF]


def test_a_pulled_directory_carries_its_proof_and_no_sidecar(registry: Registry) -> None:
    src = make_tree(Path("build/src"))
    pushed = json.loads(ok(registry.cli("push", "tree", "1", "build/src", "--promote-latest",
                                        "--json")).stdout)
    ok(registry.cli("pull", "tree"))
    dest = Path("tycho_packages/src")
    assert listing(Path("tycho_packages")) == ["src"]  # no src.etag any more
    proof = proof_of(dest)
    assert (proof["package"], proof["version"]) == ("tree", "1")
    assert proof["etag"] == etag_of(registry, "tree/tycho_1.pkg")
    files = proof["manifest"]
    assert "a/text.txt" in files and PROOF not in files
    assert files["a/text.txt"][2:] == [(dest / "a/text.txt").stat().st_size,
                                       (dest / "a/text.txt").stat().st_mtime_ns]

    # pushing the pulled tree back packs the same tree: the proof is not part of it
    same = json.loads(ok(registry.cli("push", "tree", "2", str(dest), "--json")).stdout)
    assert same["tree_sha256"] == pushed["tree_sha256"]
    stored = registry.get("tree/tycho_2.pkg")
    assert stored is not None
    with tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(stored),
                      mode="r|") as archive:
        assert PROOF not in [m.name for m in archive]
    assert json.loads(ok(registry.cli("push", "tree", "1", str(src), "--skip-existing",
                                      "--json")).stdout)["skipped"] is True


def test_two_packages_with_one_directory_name_never_replace_each_other(
        registry: Registry) -> None:
    make_tree(Path("one/tree"), seed=1)
    make_tree(Path("two/tree"), seed=2)
    ok(registry.cli("push", "first", "1", "one/tree", "--promote-latest"))
    ok(registry.cli("push", "second", "1", "two/tree", "--promote-latest"))
    ok(registry.cli("pull", "first"))
    before = contents(Path("tycho_packages/tree"))

    other = registry.cli("pull", "second")
    assert other.exit_code == 2, (other.stdout, other.stderr)
    assert "'first'" in other.stderr and "--outfile" in other.stderr
    for args in (("--force",), ("--outfile", "tycho_packages/tree")):
        assert registry.cli("pull", "second", *args).exit_code == 2, args
    both = registry.cli("pull-list", "first", "second")
    assert both.exit_code == 2, (both.stdout, both.stderr)
    assert contents(Path("tycho_packages/tree")) == before
    assert proof_of(Path("tycho_packages/tree"))["package"] == "first"
    ok(registry.cli("pull", "second", "--outfile", "elsewhere"))
    assert proof_of(Path("elsewhere"))["package"] == "second"


def test_thing_and_thing_etag_never_clobber_each_other(registry: Registry) -> None:
    write_file(Path("thing"), 500, seed=1)
    ok(registry.cli("push", "thing", "1", "thing", "--promote-latest"))
    put_version(registry, "clash", "1", b"not an etag", latest=True)
    rename_localname(registry, "clash", "thing.etag")
    Path("thing").unlink()

    both = registry.cli("pull-list", "thing", "clash")
    assert both.exit_code == 3, (both.stdout, both.stderr)
    assert "clash" in both.stderr and "thing.etag" in both.stderr
    sidecar = Path("tycho_packages/thing.etag")
    assert sidecar.read_text() == etag_of(registry, "thing/tycho_1.pkg")
    assert "up to date" in ok(registry.cli("pull", "thing")).stdout
    assert listing(Path("tycho_packages")) == ["thing", "thing.etag"]


def test_localnames_that_pass_for_sidecars_or_tychoregs_files_are_refused(
        registry: Registry) -> None:
    registry.write_config(dotenv=".env.ci")
    Path(".env.ci").write_text("X=1\n")
    write_file(Path("f.bin"), 10)
    for args in (("init", "a", "thing.etag"), ("init", "b", ".tychoreg.json"),
                 ("init", "c", PROOF), ("push", "d", "1", "f.bin", "--localname", "x.etag"),
                 ("push", "e", "1", ".env.ci"), ("push", "g", "1", ".tychoreg.json")):
        result = registry.cli(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.output
    assert registry.object_keys() == []

    put_version(registry, "dotenv", "1", b"X=2\n", latest=True)
    rename_localname(registry, "dotenv", ".env.ci")
    pulled = registry.cli("pull", "dotenv", "--outdir", ".")
    assert pulled.exit_code == 3, (pulled.stdout, pulled.stderr)
    assert Path(".env.ci").read_text() == "X=1\n"


def test_a_file_pull_never_writes_a_directorys_proof(registry: Registry) -> None:
    make_tree(Path("build/src"))
    ok(registry.cli("push", "tree", "1", "build/src", "--promote-latest"))
    ok(registry.cli("pull", "tree"))
    proof = (Path("tycho_packages/src") / PROOF).read_bytes()
    put_version(registry, "forger", "1", json.dumps({"package": "other"}).encode(),
                latest=True)
    rename_localname(registry, "forger", PROOF)
    for args in (("--outdir", "tycho_packages/src"),
                 ("--outfile", f"tycho_packages/src/{PROOF}")):
        result = registry.cli("pull", "forger", *args)
        assert result.exit_code in (2, 3), (args, result.stdout, result.stderr)
        assert PROOF in result.stderr
    assert (Path("tycho_packages/src") / PROOF).read_bytes() == proof


def test_an_archive_holding_a_proof_of_its_own_is_refused(registry: Registry) -> None:
    forged = json.dumps({"package": "victim", "version": "1", "etag": "x", "manifest": {}})
    put_archive(registry, "evil", "1", hand_tar([member(PROOF, data=forged.encode()),
                                                 member("f", data=b"x")]))
    result = registry.cli("pull", "evil")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert PROOF in result.stderr
    assert listing(Path("tycho_packages")) == []


# -- B15: the manifest decides "up to date" ---------------------------------------------------

def test_an_edited_tree_is_pulled_again_with_a_warning(registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    ok(registry.cli("pull", "cache", "--outfile", "restored"))
    dest = Path("restored")
    assert "up to date" in ok(registry.cli("pull", "cache", "--outfile", "restored")).stdout

    edits = {
        "deleted": lambda: (dest / "top.txt").unlink(),
        "modified": lambda: (dest / "a/text.txt").write_bytes(b"version 0ne\n"),
        "added": lambda: (dest / "a/new.txt").write_text("mine"),
    }
    for what, edit in edits.items():
        edit()
        again = ok(registry.cli("pull", "cache", "--outfile", "restored"))
        assert "up to date" not in again.stdout, what
        assert "pulled cache 1" in again.stdout, what
        assert "warning" in again.stderr and what in again.stderr, (what, again.stderr)
        assert contents(dest) == ONE, what
    quiet = ok(registry.cli("pull", "cache", "--outfile", "restored"))
    assert "up to date" in quiet.stdout and "warning" not in quiet.stderr


def test_a_new_version_replaces_local_edits_and_names_them(registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    ok(registry.cli("pull", "cache"))
    dest = Path("tycho_packages/cache")
    (dest / "a/text.txt").write_text("my edit\n")
    for n in range(8):
        (dest / f"scratch-{n}.txt").write_text("scratch")
    put_archive(registry, "cache", "2", tree_tar(TWO))

    newer = ok(registry.cli("pull", "cache", "--json"))
    doc = json.loads(newer.stdout)
    assert doc["version"] == "2" and contents(dest) == TWO
    (warning,) = doc["warnings"]
    assert "a/text.txt (modified)" in warning and "scratch-0.txt (added)" in warning
    assert "more" in warning  # a few paths named, not every one
    assert "a/text.txt" in newer.stderr
    clean = json.loads(ok(registry.cli("pull", "cache", "--json")).stdout)
    assert clean["skipped"] is True and clean["warnings"] == []


FILES = st.sampled_from(["a", "b", "d/c", "d/e", "d/f/g"])
EDITS = st.lists(st.tuples(st.sampled_from(["delete", "rewrite", "touch", "chmod", "add"]),
                           FILES), max_size=4)


def _state(root: Path) -> dict[str, tuple[Any, ...]]:
    """What a user would call the tree's content (directories by mode only: adding a
    file moves its directory's mtime, which is not an edit of its own)."""
    return {path: entry[:2] if entry[0] == "dir" else entry
            for path, entry in snapshot(root).items()}


@settings(max_examples=60, deadline=None)
@given(files=st.sets(FILES, min_size=1), edits=EDITS)
def test_the_manifest_names_exactly_what_changed(files: set[str],
                                                 edits: list[tuple[str, str]]) -> None:
    """Whatever is done to a pulled tree, its proof names exactly the paths that differ
    (and nothing when nothing does), each as added, deleted or modified."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in files:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
            os.utime(root / name, (1_600_000_000, 1_600_000_000))
        write_proof(root, "pkg", "1", '"etag"')
        proof = read_proof(root)
        assert proof is not None and local_edits(root, proof) == []
        before = _state(root)
        for op, name in edits:
            path = root / name
            if op == "add":
                if not path.exists() and not any(p.is_file() for p in path.parents):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("new")
            elif path.is_file():
                if op == "delete":
                    path.unlink()
                elif op == "rewrite":
                    path.write_text(name + " edited")
                elif op == "touch":
                    os.utime(path, (1_700_000_000, 1_700_000_000))
                else:
                    path.chmod(0o600 if path.stat().st_mode & 0o044 else 0o644)
        after = _state(root)
        want = sorted(f"{p} (added)" if p not in before else f"{p} (deleted)"
                      if p not in after else f"{p} (modified)"
                      for p in before.keys() | after.keys() if before.get(p) != after.get(p))
        assert local_edits(root, proof) == want


# -- section C: destinations ------------------------------------------------------------------

@pytest.mark.parametrize("order", ["missing last", "missing first"])
def test_pull_list_collisions_count_only_versions_that_exist(registry: Registry,
                                                             order: str) -> None:
    put_version(registry, "tool", "1.0", b"one", latest=True)
    put_version(registry, "tool", "2.0", b"two")
    items = ["tool==1.0", "tool==7"] if order == "missing last" else ["tool==7", "tool==1.0"]
    result = registry.cli("pull-list", *items)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "tool 7 does not exist" in result.stderr and "both write" not in result.stderr
    assert Path("tycho_packages/tool.bin").read_bytes() == b"one"

    both = registry.cli("pull-list", "tool==1.0", "tool==2.0", "--force")
    assert both.exit_code == 2, (both.stdout, both.stderr)
    assert "both write" in both.stderr


def test_a_missing_version_is_not_found_whatever_the_destination(registry: Registry) -> None:
    put_archive(registry, "cache", "1", tree_tar(ONE))
    ok(registry.cli("pull", "cache", "--outfile", "restored"))
    missing = registry.cli("pull", "cache", "--version", "missing", "--outfile", "restored")
    assert missing.exit_code == 1, (missing.stdout, missing.stderr)
    assert "does not exist" in missing.stderr
    assert contents(Path("restored")) == ONE


def test_outfile_naming_a_directory_suggests_outdir(registry: Registry) -> None:
    put_version(registry, "pkg", "1", b"bytes", latest=True)
    Path("somedir").mkdir()
    result = registry.cli("pull", "pkg", "-o", "somedir/")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "--outdir somedir" in result.stderr
    assert listing(Path("somedir")) == []


@pytest.mark.parametrize("package", ["pkg", "cache"])
def test_outdir_in_proc_is_a_usage_error(registry: Registry, package: str) -> None:
    put_version(registry, "pkg", "1", b"bytes", latest=True)
    put_archive(registry, "cache", "1", tree_tar(ONE))
    for args in (("pull", package, "--outdir", "/proc/tychoreg-x"),
                 ("pull", package, "--outfile", "/proc/tychoreg-x"),
                 ("pull-list", package, "--outdir", "/proc/tychoreg-x")):
        result = registry.cli(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.output


# -- A7: standard output by any name, terminals -------------------------------------------------

@pytest.fixture(params=["local", "s3"])
def cli_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of a real tychoreg process using a fresh registry."""
    if request.param == "local":
        env = dict(os.environ)
        env["TYCHOREG_REGISTRY"] = str(tmp_path / "registry")
        return env
    endpoint = request.getfixturevalue("s3_endpoint")
    return _env(endpoint, make_bucket(endpoint))


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _tychoreg(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess[
        bytes]:
    return subprocess.run([TYCHOREG, *args], env=env, timeout=60, check=False, **kwargs)


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "same file"])
def test_outfile_that_is_standard_output_is_like_dash(cli_env: dict[str, str],
                                                      name: str) -> None:
    data = b"line one\nline two\n"
    Path("log.txt").write_bytes(data)
    assert _tychoreg(cli_env, "push", "logs", "1", "log.txt", "-q").returncode == 0
    out = Path("out.txt")
    dev_sidecar = _mtime(Path("/dev/stdout.etag"))  # (another process may have left one)
    with out.open("wb") as stdout:
        result = _tychoreg(cli_env, "pull", "logs", "-v", "1", "-o",
                           str(out) if name == "same file" else name,
                           stdout=stdout, stderr=subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data  # no status line mixed into the data
    assert b"to standard output" in result.stderr
    assert _mtime(Path("/dev/stdout.etag")) == dev_sidecar  # nothing written into /dev
    assert sorted(p.name for p in Path().iterdir()) == ["log.txt", "out.txt"]

    piped = _tychoreg(cli_env, "pull", "logs", "-v", "1", "-o", "/dev/stdout",
                      capture_output=True)
    assert piped.returncode == 0 and piped.stdout == data
    both = _tychoreg(cli_env, "pull", "logs", "-v", "1", "-o", "/dev/stdout", "--json",
                     capture_output=True)
    assert both.returncode == 2 and both.stdout == b""


def _on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, bytes, bytes]:
    """Run tychoreg with standard output on a pseudo-terminal: exit code, what the
    terminal showed, stderr."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([TYCHOREG, *args], env=env, stdout=slave,
                                stderr=subprocess.PIPE)
        os.close(slave)
        shown = b""
        poller = select.poll()  # not select(): in a long test run the fd may be > 1023
        poller.register(master, select.POLLIN)
        for _ in range(6000):  # bounded: at most a minute
            if poller.poll(10):
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other end closed
                    chunk = b""
                shown += chunk
                if not chunk and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        assert proc.stderr is not None
        err = proc.stderr.read()
        return proc.wait(timeout=60), shown, err
    finally:
        os.close(master)


def test_binary_to_a_terminal_is_refused_unless_raw(cli_env: dict[str, str]) -> None:
    make_tree(Path("tree"))
    Path("notes.txt").write_text("plain text\n")
    Path("blob.bin").write_bytes(bytes(range(256)) * 4)
    for args in (("tree", "1", "tree"), ("notes", "1", "notes.txt"),
                 ("blob", "1", "blob.bin")):
        assert _tychoreg(cli_env, "push", *args, "--promote-latest", "-q").returncode == 0

    for package in ("tree", "blob"):
        code, shown, err = _on_a_terminal(cli_env, "pull", package, "-o", "-")
        assert code == 2, (package, err)
        assert shown == b"" and b"--raw" in err, (package, shown, err)
    code, shown, _ = _on_a_terminal(cli_env, "pull", "notes", "-o", "-")
    assert code == 0 and b"plain text" in shown
    code, shown, err = _on_a_terminal(cli_env, "pull", "blob", "-o", "-", "--raw")
    assert code == 0 and len(shown) >= 1024, err
    code, shown, err = _on_a_terminal(cli_env, "pull", "tree", "-o", "-", "--force")
    assert code == 0 and shown.startswith(b"\x28\xb5\x2f\xfd"), err  # the zstd archive
    assert sorted(p.name for p in Path().iterdir()) == ["blob.bin", "notes.txt", "tree"]


def test_a_descriptor_is_written_in_place_and_dev_gets_no_sidecar(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    data = b"log line\n"
    Path("log.txt").write_bytes(data)
    assert _tychoreg(cli_env, "push", "logs", "1", "log.txt", "-q").returncode == 0
    with Path("fd.txt").open("wb") as target:
        fd = target.fileno()
        result = _tychoreg(cli_env, "pull", "logs", "-v", "1", "-o", f"/dev/fd/{fd}",
                           pass_fds=(fd,), capture_output=True)
    assert result.returncode == 0, result.stderr
    assert Path("fd.txt").read_bytes() == data
    assert b"pulled logs 1" in result.stdout

    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm here")
    outdir = shm / f"tychoreg-test-{tmp_path.name}"
    try:
        for _ in range(2):  # no sidecar, so never current: both pulls write
            pulled = _tychoreg(cli_env, "pull", "logs", "-v", "1", "--outdir", str(outdir),
                               capture_output=True)
            assert pulled.returncode == 0 and b"up to date" not in pulled.stdout
        assert sorted(p.name for p in outdir.iterdir()) == ["log.txt"]
        assert (outdir / "log.txt").read_bytes() == data
    finally:
        for path in outdir.glob("*"):
            path.unlink()
        if outdir.exists():
            outdir.rmdir()
