"""Config file, env indirection, dotenv, registry URLs, defaults, and their errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from tycho_async.cli import app
from tycho_async.config import load_settings, parse_size, resolve_env
from tycho_async.errors import ConfigError

from .support import REGION, TYCHOREG, Registry, _env, make_bucket, write_file


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_no_config_means_a_local_registry_in_the_data_dir(isolated_env: Path,
                                                          tmp_path: Path) -> None:
    write_file(Path("f.bin"), 10)
    assert _cli("push", "pkg", "1.0", "f.bin", "--promote-latest").exit_code == 0
    root = tmp_path / "xdg-data" / "tychoreg" / "registry"
    assert (root / "pkg" / "tycho_1.0.pkg").read_bytes() == Path("f.bin").read_bytes()
    info = json.loads(_cli("info", "--json").stdout)
    assert info["backend"] == "local" and info["registry"] == str(root)
    assert info["config"] is None


def test_env_indirection_and_dotenv(s3_endpoint: str, isolated_env: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = make_bucket(s3_endpoint)
    Path("secrets.env").write_text(
        f"REG_KEY=testing\nREG_SECRET=testing\nREG_BUCKET={bucket}\n")
    config = {
        "tycho": {"backend": "s3", "dotenv": "secrets.env", "outdir": "pkgs"},
        "s3": {"bucket": {"env": "REG_BUCKET", "default": "wrong-bucket"},
               "endpoint_url": {"env": "REG_ENDPOINT", "default": s3_endpoint},
               "region_name": REGION,
               "aws_access_key_id": {"env": "REG_KEY", "default": "bad"},
               "aws_secret_access_key": {"env": "REG_SECRET"}},
    }
    Path(".tychoreg.json").write_text(json.dumps(config))
    blob = write_file(Path("f.bin"), 321)
    assert _cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    assert _cli("pull", "pkg").exit_code == 0
    assert Path("pkgs/f.bin").read_bytes() == blob


def test_registry_url_and_the_aws_chain(s3_endpoint: str, isolated_env: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = make_bucket(s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("TYCHOREG_REGISTRY", f"s3://{bucket}/team/artifacts")
    blob = write_file(Path("f.bin"), 99)
    assert _cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    assert _cli("pull", "pkg").exit_code == 0
    assert Path("tycho_packages/f.bin").read_bytes() == blob
    reg = Registry("s3", bucket, s3_endpoint, isolated_env, CliRunner())
    assert "team/artifacts/pkg/tycho_1.pkg" in reg.object_keys()


def test_registry_option_with_a_directory(isolated_env: Path, tmp_path: Path) -> None:
    write_file(Path("f.bin"), 5)
    target = tmp_path / "elsewhere"
    assert _cli("push", "pkg", "1", "f.bin", "--registry", str(target)).exit_code == 0
    assert (target / "pkg" / "tycho_1.pkg").exists()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"tycho": {"backend": "s3"}}', "no such section"),
    ('{"tycho": {"backend": "s3"}, "s3": {}}', "needs a 'bucket'"),
    ('{"tycho": {"backend": "gcs"}, "gcs": {}}', "unknown backend"),
    ('{"tycho": {"concurrency": 0}}', "at least 1"),
    ('{"tycho": {"part_size": "1MiB"}}', "between 5MiB and 5GiB"),
    ('{"tycho": {"backend": "s3"}, "s3": {"bucket": {"env": "NOPE_X"}}}', "NOPE_X is not set"),
    ('{"tycho": {"backend": "s3"}, "s3": {"bucket": "b", "bogus_key": 1}}', "unknown key"),
    ('{"tycho": {"backend": "s3"}, "s3": {"bucket": "b", "read_timeout": "soon"}}',
     "number of seconds"),
])
def test_bad_config_is_a_one_line_usage_error(isolated_env: Path, content: str,
                                              message: str) -> None:
    Path(".tychoreg.json").write_text(content)
    result = _cli("list")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_missing_explicit_config(isolated_env: Path) -> None:
    result = _cli("list", "--config", "nowhere.json")
    assert result.exit_code == 2 and "cannot read config" in result.stderr


def test_secrets_never_printed_and_world_readable_config_warned(
        s3_endpoint: str, isolated_env: Path) -> None:
    bucket = make_bucket(s3_endpoint)
    secret = "SuperSecretValue123"
    config = {"tycho": {"backend": "s3"},
              "s3": {"bucket": bucket, "endpoint_url": s3_endpoint, "region_name": REGION,
                     "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": secret}}
    path = Path(".tychoreg.json")
    path.write_text(json.dumps(config))
    path.chmod(0o644)
    result = _cli("pull", "ghost")
    assert "readable by other users" in result.stderr
    assert secret not in result.output
    info = _cli("info")
    assert secret not in info.output and "AKIAEXAMPLE" not in info.output


def test_precedence_option_over_env_over_file(isolated_env: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".tychoreg.json").write_text('{"tycho": {"concurrency": 3, "part_size": "6MiB"}}')
    assert load_settings().transfer.concurrency == 3
    monkeypatch.setenv("TYCHOREG_CONCURRENCY", "5")
    assert load_settings().transfer.concurrency == 5
    assert load_settings(overrides={"concurrency": 7}).transfer.concurrency == 7
    assert load_settings().transfer.part_size == 6 * 1024 * 1024


@pytest.mark.parametrize(("text", "size"), [("8MiB", 8 << 20), ("512k", 512 << 10),
                                            ("1G", 1 << 30), ("123", 123), (64, 64)])
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text, "x") == size


@pytest.mark.parametrize("text", ["", "eight", "8 parsecs", "-1", True])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(text, "x")


@given(st.integers(0, 10**6), st.sampled_from(["", "k", "K", "KiB", "m", "MB", "MiB", "g", "GiB"]))
def test_sizes_parse_with_any_unit(number: int, unit: str) -> None:
    factor = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit[:1].lower()]
    assert parse_size(f"{number}{unit}", "x") == number * factor


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3).filter(lambda k: k != "env"), inner,
                                      max_size=3), max_leaves=10),
       st.text(min_size=1, max_size=8))
def test_env_indirection_replaces_only_env_objects(value: object, default: str) -> None:
    assert resolve_env(value, "x") == value  # nothing to replace: unchanged
    wrapped = {"key": {"env": "TYCHOREG_TEST_SURELY_UNSET", "default": default}, "keep": value}
    assert resolve_env(wrapped, "x") == {"key": default, "keep": value}


def _no_default_registry(tmp_path: Path) -> None:
    """Nothing was written to the default registry in the user data folder."""
    assert not (tmp_path / "xdg-data" / "tychoreg").exists()


def test_a_local_section_without_path_is_refused_not_the_default(
        isolated_env: Path, tmp_path: Path) -> None:
    Path(".tychoreg.json").write_text(json.dumps(
        {"tycho": {"backend": "local"}, "local": {"pth": str(tmp_path / "reg")}}))
    write_file(Path("f.bin"), 10)
    result = _cli("push", "pkg", "1", "f.bin")
    assert result.exit_code == 2, result.output
    assert "needs a 'path'" in result.stderr and "did you mean 'path'" in result.stderr
    assert "Traceback" not in result.output
    _no_default_registry(tmp_path)


def test_a_backend_section_nobody_chooses_is_refused(isolated_env: Path,
                                                     tmp_path: Path) -> None:
    Path(".tychoreg.json").write_text(json.dumps(
        {"tyco": {"backend": "local"}, "local": {"path": str(tmp_path / "reg")}}))
    result = _cli("list")
    assert result.exit_code == 2, result.output
    assert "no tycho.backend" in result.stderr
    assert "unknown section 'tyco'" in result.stderr and "did you mean 'tycho'" in result.stderr
    _no_default_registry(tmp_path)
    # a registry named on the command line needs no backend section
    target = tmp_path / "elsewhere"
    target.mkdir()
    assert _cli("list", "--registry", str(target)).exit_code == 0


def test_a_misspelt_s3_key_is_exit_2_naming_the_right_one(s3_endpoint: str,
                                                          isolated_env: Path) -> None:
    Path(".tychoreg.json").write_text(json.dumps(
        {"tycho": {"backend": "s3"},
         "s3": {"bucket": make_bucket(s3_endpoint), "endpoint": s3_endpoint}}))
    result = _cli("list")
    assert result.exit_code == 2, result.output
    assert "unknown key 'endpoint'" in result.stderr
    assert "did you mean 'endpoint_url'" in result.stderr
    assert "Traceback" not in result.output and "unexpected keyword" not in result.output


def test_unknown_keys_and_sections_warn_with_the_closest_name(isolated_env: Path,
                                                             tmp_path: Path) -> None:
    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "local", "outdri": "x"},
        "local": {"path": str(tmp_path / "reg"), "paht": "y"},
        "s3": {"bucket": "unused", "regin_name": "eu-west-1"},
        "locla": {}}))
    (tmp_path / "reg").mkdir()
    result = _cli("list")
    assert result.exit_code == 0, result.output
    for typo, meant in (("outdri", "outdir"), ("paht", "path"), ("regin_name", "region_name"),
                        ("locla", "local")):
        assert f"{typo!r}" in result.stderr and f"did you mean {meant!r}" in result.stderr
    _no_default_registry(tmp_path)


def test_no_backend_named_still_means_the_default_registry(isolated_env: Path,
                                                           tmp_path: Path) -> None:
    Path(".tychoreg.json").write_text(json.dumps({"tycho": {"outdir": "deps"}}))
    write_file(Path("f.bin"), 10)
    assert _cli("push", "pkg", "1", "f.bin", "--promote-latest").exit_code == 0
    pulled = _cli("pull", "pkg")
    assert pulled.exit_code == 0 and pulled.stderr == ""
    assert Path("deps/f.bin").read_bytes() == Path("f.bin").read_bytes()
    assert (tmp_path / "xdg-data" / "tychoreg" / "registry" / "pkg").is_dir()


def test_the_s3_keys_are_what_the_client_takes_and_the_readme_lists_them() -> None:
    import inspect

    from aiobotocore.session import AioSession

    from tycho_async.config import S3_CLIENT_KEYS, S3_OWN_KEYS

    taken = set(inspect.signature(AioSession._create_client).parameters)
    assert set(S3_CLIENT_KEYS) == taken - {"self", "service_name", "config"}
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Config keys"):]
    for key in (*S3_CLIENT_KEYS, *S3_OWN_KEYS):
        assert f"`{key}`" in table, key


def test_timeouts_come_from_the_s3_section_or_the_environment(
        isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tycho_async.storage import S3Options

    Path(".tychoreg.json").write_text(json.dumps(
        {"tycho": {"backend": "s3"}, "s3": {"bucket": "b", "read_timeout": 2.5}}))
    store = load_settings().store
    assert isinstance(store, S3Options)
    assert (store.connect_timeout, store.read_timeout) == (5.0, 2.5)
    monkeypatch.setenv("TYCHOREG_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("TYCHOREG_READ_TIMEOUT", "3s")
    store = load_settings().store
    assert isinstance(store, S3Options)
    assert (store.connect_timeout, store.read_timeout) == (1.0, 3.0)
    assert "read_timeout" not in store.client_kwargs
    info = json.loads(_cli("info", "--json").stdout)
    assert (info["connect_timeout"], info["read_timeout"]) == (1.0, 3.0)


@pytest.mark.parametrize("where", ["config", "AWS_ENDPOINT_URL"])
def test_credentials_in_an_endpoint_url_are_never_shown(
        s3_endpoint: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch,
        where: str) -> None:
    bucket = make_bucket(s3_endpoint)
    endpoint = s3_endpoint.replace("http://", "http://AKUSERID:SKPASSWORD@")
    if where == "config":
        Path(".tychoreg.json").write_text(json.dumps({
            "tycho": {"backend": "s3"},
            "s3": {"bucket": bucket, "endpoint_url": endpoint, "region_name": REGION}}))
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("TYCHOREG_REGISTRY", f"s3://{bucket}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    shown = [_cli("info"), _cli("info", "--json")]
    assert json.loads(shown[1].stdout)["endpoint_url"] == s3_endpoint.replace(
        "http://", "http://***@")
    write_file(Path("f.bin"), 10)
    for args in (["list"], ["push", "pkg", "1", "f.bin"], ["pull", "pkg"]):
        result = _cli(*args)
        assert result.exit_code == 2, result.output
        assert "holds credentials" in result.stderr and "***@" in result.stderr
        shown.append(result)
    for result in shown:
        assert "SKPASSWORD" not in result.output and "AKUSERID" not in result.output
    from tycho_async import Client, ConfigError

    with pytest.raises(ConfigError) as caught, Client(registry=f"s3://{bucket}",
                                                      endpoint_url=endpoint) as client:
        client.packages()
    assert "SKPASSWORD" not in str(caught.value) and "AKUSERID" not in str(caught.value)


def test_a_typod_local_registry_is_exit_2_and_a_push_says_it_creates_one(
        isolated_env: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tycho_async.cli import app

    runner = CliRunner()
    typo = str(tmp_path / "typo" / "dir")
    for args in (["list"], ["exists", "pkg", "1"], ["pull", "pkg"], ["list-versions", "pkg"],
                 ["promote", "pkg", "1"]):
        result = runner.invoke(app, [*args, "--registry", typo])
        assert result.exit_code == 2, (args, result.output)
        assert typo in result.stderr and "does not exist" in result.stderr
    assert not Path(typo).exists()
    write_file(Path("f.bin"), 10)
    pushed = runner.invoke(app, ["push", "pkg", "1", "f.bin", "--registry", typo])
    assert pushed.exit_code == 0, pushed.output
    assert f"created a new local registry at {typo}" in pushed.stderr
    assert runner.invoke(app, ["exists", "pkg", "1", "--registry", typo]).exit_code == 0


def test_the_default_registry_is_simply_empty_before_its_first_push(
        isolated_env: Path) -> None:
    from typer.testing import CliRunner

    from tycho_async.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and listed.stdout == ""
    assert runner.invoke(app, ["exists", "pkg", "1"]).exit_code == 1
    assert runner.invoke(app, ["pull", "pkg"]).exit_code == 1


def test_a_missing_bucket_is_exit_2(s3_endpoint: str, isolated_env: Path) -> None:
    env = _env(s3_endpoint, "no-such-bucket-here")
    write_file(Path("f.bin"), 10)
    for args in (["list"], ["exists", "pkg", "1"], ["pull", "pkg"], ["push", "pkg", "1", "f.bin"]):
        result = subprocess.run([TYCHOREG, *args], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "no-such-bucket-here" in result.stderr and "does not exist" in result.stderr


def test_unknown_config_keys_warn_with_the_closest_one(registry: Registry) -> None:
    registry.write_config(outdri="elsewhere")
    result = registry.cli("list")
    assert result.exit_code == 0
    assert "unknown key 'outdri'" in result.stderr and "did you mean 'outdir'" in result.stderr


def test_info_shows_an_unset_credential_variable(s3_registry: Registry) -> None:
    config = s3_registry.config()
    config["s3"]["aws_access_key_id"] = {"env": "REG_WRITE_KEY"}
    Path(".tychoreg.json").write_text(json.dumps(config))
    result = s3_registry.cli("info")
    assert result.exit_code == 0, result.output
    assert "REG_WRITE_KEY is not set" in result.stdout
    assert s3_registry.endpoint is not None and s3_registry.endpoint in result.stdout
    assert s3_registry.cli("list").exit_code == 2  # every other command still refuses


def test_unset_bucket_and_outdir_variables_are_shown_not_used(isolated_env: Path) -> None:
    from typer.testing import CliRunner

    from tycho_async.cli import app

    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "s3", "outdir": {"env": "REG_OUTDIR"}},
        "s3": {"bucket": {"env": "REG_BUCKET"}}}))
    runner = CliRunner()
    shown = runner.invoke(app, ["info", "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["registry"] == "s3://(unset)/" and info["outdir"] == "tycho_packages"
    assert any("REG_BUCKET is not set" in u for u in info["unset"])
    assert any("REG_OUTDIR is not set" in u for u in info["unset"])
    probe = runner.invoke(app, ["info", "--probe"])
    assert probe.exit_code == 2 and "REG_BUCKET" in probe.stderr
    assert runner.invoke(app, ["list"]).exit_code == 2


def test_signing_settings_by_option_variable_and_config(isolated_env: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = isolated_env / "c.json"
    config.write_text(json.dumps({"tycho": {"signing_key": "~/k", "allowed_signers": "a"}}))
    settings = load_settings(str(config))
    assert settings.signing_key == Path("~/k").expanduser()
    assert settings.allowed_signers == Path("a")
    monkeypatch.setenv("TYCHOREG_ALLOWED_SIGNERS", "b")
    assert load_settings(str(config)).allowed_signers == Path("b")
    assert load_settings(str(config), environment=False).allowed_signers == Path("a")
    assert load_settings(str(config), None, {"allowed_signers": "c"}).allowed_signers == \
        Path("c")
    assert load_settings(None).signing_key is None
    config.write_text(json.dumps({"tycho": {"signing_key": ["a"]}}))
    with pytest.raises(ConfigError, match="signing_key must be a file path"):
        load_settings(str(config))
