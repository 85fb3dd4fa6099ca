"""The public Python API as scripts use it: ``tycho_async.Client`` and ``open_registry``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio
import pytest

import tycho_async

from .httpproxy import FaultProxy
from .support import CREDS, REGION, Registry, make_bucket, write_file


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def test_the_readme_example_runs_as_written(s3_endpoint: str, aws_env: None) -> None:
    bucket = make_bucket(s3_endpoint)
    blob = write_file(Path("out.tar.gz"), 5000)
    Path("build").mkdir()
    Path("out.tar.gz").rename("build/out.tar.gz")
    write_file(Path("file.bin"), 300, seed=2)
    write_file(Path("a.bin"), 10, seed=3)
    write_file(Path("b.bin"), 20, seed=4)
    with tycho_async.Client(registry=f"s3://{bucket}/prefix",
                            endpoint_url=s3_endpoint) as client:
        pushed = client.push("pkg", "1.0", "build/out.tar.gz", promote=True)
        pulled = client.pull("pkg", version=None, outdir="deps", force=False)
        client.push("a", "1", "a.bin", promote=True)
        client.push("b", "2.0", "b.bin")
        many = client.pull_many(["a", "b==2.0"], outdir="deps")
        versions = client.versions("pkg")
        packages = client.packages()
        assert client.exists("pkg", "1.0") and not client.exists("pkg", "2.0")
        client.promote("pkg", "1.0")
        verified = client.verify("pkg", version="1.0")
    assert isinstance(pushed, tycho_async.PushResult) and pushed.size == 5000
    assert isinstance(pulled, tycho_async.PullResult) and not pulled.skipped
    assert pulled.path.read_bytes() == blob and pulled.version == "1.0"
    assert [(r.package, r.version, r.size) for r in many] == [("a", "1", 10), ("b", "2.0", 20)]
    assert [v.version for v in versions] == ["1.0"]
    assert [(p.name, p.latest) for p in packages] == [("a", "1"), ("b", None), ("pkg", "1.0")]
    assert verified.checked == "sha256"

    async def main() -> str:
        async with tycho_async.open_registry(registry=f"s3://{bucket}/prefix",
                                             endpoint_url=s3_endpoint) as reg:
            result = await reg.push("pkg", "1.1", "file.bin")
            return result.version

    assert anyio.run(main) == "1.1"


def test_an_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        tycho_async.Client(regsitry="s3://typo")  # type: ignore[call-arg]


def test_no_config_or_variable_is_read_unless_asked(registry: Registry,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """./.tychoreg.json (written by the fixture) and TYCHOREG_* apply only with
    from_environment; without it, the default local registry in the data folder."""
    write_file(Path("f.bin"), 100)
    assert registry.cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    monkeypatch.setenv("TYCHOREG_OUTDIR", "from-env")
    with tycho_async.Client() as plain:
        assert plain.packages() == []
    with tycho_async.Client.from_environment() as configured:
        assert [p.name for p in configured.packages()] == ["pkg"]
        assert configured.pull("pkg").path == Path("from-env/f.bin")
    with tycho_async.Client(config=".tychoreg.json") as named:
        assert named.pull("pkg").path == Path("tycho_packages/f.bin")


def test_a_partial_failure_keeps_what_succeeded(registry: Registry) -> None:
    write_file(Path("f.bin"), 100)
    assert registry.cli("push", "good", "1", "f.bin", "--promote-latest").exit_code == 0
    with tycho_async.Client(config=".tychoreg.json") as client, \
            pytest.raises(tycho_async.PartialFailure) as caught:
        client.pull_many(["good", "missing"])
    assert [r.package for r in caught.value.results] == ["good"]
    assert [item for item, _ in caught.value.failures] == ["missing"]
    assert caught.value.exit_code == 1


def test_init_and_probe_are_operations_of_the_api_too(registry: Registry) -> None:
    """What the CLI's init and info --probe do, the API does: a new package names its
    localname and has no latest (a second init is AlreadyExists), and the store says
    whether it honours conditional writes (every backend under test does), leaving no
    probe object behind."""
    with tycho_async.Client(config=".tychoreg.json") as client:
        client.init("pkg", "thing.bin")
        with pytest.raises(tycho_async.AlreadyExists):
            client.init("pkg", "other.bin")
        shown = client.show("pkg")
        probed = client.probe()
    assert (shown.localname, shown.latest, shown.versions) == ("thing.bin", None, 0)
    assert (probed.if_none_match, probed.if_match) == (True, True)
    assert registry.object_keys() == ["pkg/tycho.json"]


def test_latest_means_the_same_to_the_api_and_the_cli(registry: Registry) -> None:
    """``version="latest"`` is what ``--version latest`` is, with a fallback too: the
    latest, which exists, is the exact hit."""
    write_file(Path("f.bin"), 100)
    assert registry.cli("push", "pkg", "k-1", "f.bin", "--promote-latest").exit_code == 0
    by_cli = registry.cli("pull", "pkg", "--version", "latest", "--fallback", "k-", "--json")
    assert by_cli.exit_code == 0, by_cli.output
    with tycho_async.Client(config=".tychoreg.json") as client:
        pulled = client.pull("pkg", "latest", fallback=["k-"], force=True)
    assert (pulled.version, pulled.exact) == ("k-1", True)
    assert pulled.path.read_bytes() == Path("f.bin").read_bytes()


def test_a_client_reuses_its_connections_and_works_inside_an_event_loop(
        proxy: FaultProxy, s3_endpoint: str, aws_env: None) -> None:
    bucket = make_bucket(s3_endpoint)
    write_file(Path("f.bin"), 100)
    with tycho_async.Client(registry=f"s3://{bucket}", endpoint_url=proxy.url,
                            concurrency=4) as client:
        client.push("pkg", "1", "f.bin", promote=True)

        async def inside_a_notebook() -> None:
            for _ in range(100):
                assert client.exists("pkg", "1")

        asyncio.run(inside_a_notebook())
    assert len([r for r in proxy.requests if r.method == "HEAD"]) >= 100
    assert 1 <= proxy.connections <= 4


def test_settings_errors_are_the_public_error_tree(isolated_env: Path) -> None:
    Path("bad.json").write_text("{not json")
    with pytest.raises(tycho_async.ConfigError) as caught:
        tycho_async.Client(config="bad.json")
    assert caught.value.exit_code == 2
    assert os.environ.get("TYCHOREG_REGISTRY") is None


def test_the_ci_cache_methods_of_the_readme_example(s3_endpoint: str, aws_env: None) -> None:
    """Directories, streams as binary file objects, fallback, show, delete and prune, as
    the README's API example calls them."""
    bucket = make_bucket(s3_endpoint)
    Path("build/venv/bin").mkdir(parents=True)
    write_file(Path("build/venv/lib.py"), 3000)
    Path("build/venv/bin/python").symlink_to("/usr/bin/python3")
    log = write_file(Path("log.txt"), 7000, seed=5)
    with tycho_async.Client(registry=f"s3://{bucket}/p", endpoint_url=s3_endpoint) as client:
        first = client.push("cache", "deps-1", "build/venv", skip_existing=True)
        again = client.push("cache", "deps-1", "build/venv", skip_existing=True)
        restored = client.pull("cache", version="deps-2", fallback=["deps-"], outfile=".venv")
        with open("log.txt", "rb") as src:
            client.push("logs", "42", src, localname="log.txt")
        with open("copy.txt", "wb") as out:
            streamed = client.pull("logs", version="42", outfile=out)
        shown = client.show("cache", version="deps-1")
        client.push("cache", "deps-0", "build/venv", skip_existing=True)
        dry = client.delete("cache", "deps-0", dry_run=True)
        deleted = client.delete("cache", "deps-0")
        pruned = client.prune("cache", keep=5, older_than="30d")
        with pytest.raises(tycho_async.NotFound):
            client.delete("cache", "deps-0")
        removed = client.delete("logs", everything=True)
        left = [p.name for p in client.packages()]
    assert first.format == "tar+zstd" and not first.skipped and again.skipped
    assert again.tree_sha256 == first.tree_sha256
    assert restored.version == "deps-1" and not restored.exact
    assert Path(".venv/lib.py").read_bytes() == Path("build/venv/lib.py").read_bytes()
    assert os.readlink(".venv/bin/python") == "/usr/bin/python3"
    assert Path("copy.txt").read_bytes() == log and streamed.size == len(log)
    assert shown.localname == "venv.tar.zst" and shown.version is not None
    assert shown.version.format == "tar+zstd" and shown.tree_sha256 == first.tree_sha256
    assert dry.dry_run and dry.versions == ["deps-0"]
    assert deleted.versions == ["deps-0"] and not deleted.dry_run
    assert pruned.deleted == [] and pruned.kept == ["deps-1"]
    assert removed.package_removed and removed.versions == ["42"] and left == ["cache"]
