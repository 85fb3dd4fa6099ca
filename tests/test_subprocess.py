"""The real `tychoreg` executable, as a user or a CI job runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .httpproxy import FaultProxy
from .support import CREDS, REGION, TYCHOREG, _env, _wait_for, make_bucket, s3_client, write_file

MiB = 1024 * 1024
def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TYCHOREG, *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_help_version_and_module_entry() -> None:
    assert "pull-list" in _run("--help").stdout
    assert _run("--version").stdout.startswith("tychoreg ")
    module = subprocess.run([sys.executable, "-m", "tycho_async", "push", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert module.returncode == 0 and "--promote-latest" in module.stdout
    bad = _run("push", "--no-such-option")
    assert bad.returncode == 2


def test_round_trip_through_the_executable(s3_endpoint: str) -> None:
    env = _env(s3_endpoint, make_bucket(s3_endpoint))
    blob = write_file(Path("model.bin"), 11 * MiB + 3)
    push = _run("push", "model", "1.0", "model.bin", "--promote-latest", "--part-size", "5MiB",
                env=env)
    assert push.returncode == 0, push.stderr
    pull = _run("pull", "model", env=env)
    assert pull.returncode == 0, pull.stderr
    assert Path("tycho_packages/model.bin").read_bytes() == blob
    listed = json.loads(_run("list", "--json", env=env).stdout)
    assert listed == {"schema": 1, "command": "list", "packages": [
        {"package": "model", "latest": "1.0", "localname": "model.bin", "problem": None}]}
    assert _run("exists", "model", "1.0", env=env).returncode == 0
    assert _run("exists", "model", "2.0", env=env).returncode == 1


def test_unreachable_endpoint_is_exit_3_without_traceback(isolated_env: Path) -> None:
    env = _env("http://127.0.0.1:9", "bucket")  # the discard port: nothing listens
    write_file(Path("f.bin"), 10)
    result = _run("push", "pkg", "1", "f.bin", env=env)
    assert result.returncode == 3
    assert "connection to http://127.0.0.1:9 failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_during_pull_list_leaves_no_partial_file(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    names = [f"p{i}" for i in range(150)]
    for name in names:
        client.put_object(Bucket=bucket, Key=f"{name}/tycho.json",
                          Body=json.dumps({"localname": f"{name}.bin", "latest": "1"}))
        client.put_object(Bucket=bucket, Key=f"{name}/tycho_1.pkg", Body=name.encode() * 5000)
    out = Path("tycho_packages")
    proc = subprocess.Popen([TYCHOREG, "pull-list", *names, "--concurrency", "1"],
                            env=_env(s3_endpoint, bucket), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: out.exists() and any(out.glob("*.etag")))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    for path in out.glob("*.bin"):
        assert path.read_bytes() == path.stem.encode() * 5000


def test_debug_log_redacts_every_secret(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    secret, key_id = "Sup3rSecretValue/with+chars", "AKIAEXAMPLEKEYID"
    Path(".tychoreg.json").write_text(json.dumps({
        "tycho": {"backend": "s3"},
        "s3": {"bucket": bucket, "endpoint_url": s3_endpoint, "region_name": REGION,
               "aws_access_key_id": key_id, "aws_secret_access_key": secret,
               "aws_session_token": "SessionTokenValue123"}}))
    Path(".tychoreg.json").chmod(0o600)
    write_file(Path("f.bin"), 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS")}
    result = subprocess.run([TYCHOREG, "--debug", "push", "pkg", "1", "f.bin"],
                            capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stderr
    assert " PUT http://" in log and "pkg/tycho.json -> 200" in log  # the lean client's lines
    for leaked in (secret, key_id, "SessionTokenValue123"):
        assert leaked not in log and leaked not in result.stdout


_SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


@pytest.mark.parametrize("server", ["s3_endpoint", "seaweed_endpoint"])
def test_a_debug_push_and_pull_show_no_signature_secret_or_token(
        server: str, request: pytest.FixtureRequest) -> None:
    """botocore logs each signature on a line of its own and each canonical request
    (the session token in it), the lean client each request's method, URL and status:
    none of it may show a signature, a key or a token. moto
    takes any keys and a session token; SeaweedFS its own keys, and no token (it would
    look the token up in its STS and refuse the request)."""
    endpoint = request.getfixturevalue(server)
    bucket = make_bucket(endpoint)
    upstream = urlsplit(endpoint)
    blob = write_file(Path("f.bin"), 6 * MiB + 5)
    with FaultProxy(upstream.hostname or "", upstream.port or 0) as proxy:
        env = _env(proxy.url, bucket)
        secrets = [CREDS["aws_secret_access_key"]]
        if server == "s3_endpoint":
            token = "FwoGZXIvYXdzEXAMPLE/Session+Token=="
            secrets = ["Sup3r/Secret+Value", token, "FwoGZXIvYXdzEXAMPLE%2FSession%2BToken"]
            env.update(AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEYID", AWS_SECRET_ACCESS_KEY=secrets[0],
                       AWS_SESSION_TOKEN=token)
        env["TYCHOREG_DEBUG"] = "1"
        # an AWS config file makes botocore resolve the bucket and the credentials, and
        # log as it does (a signed request it prepares); the lean client sends the rest
        Path("aws-config").write_text("[default]\n")
        env["AWS_CONFIG_FILE"] = str(Path("aws-config").resolve())
        push = _run("push", "pkg", "1", "f.bin", "--promote-latest", "--part-size", "5MiB",
                    env=env)
        pull = _run("pull", "pkg", env=env)
        sent = [r.headers.get("authorization", "") for r in proxy.requests]
    assert push.returncode == 0, push.stderr[-3000:]
    assert pull.returncode == 0, pull.stderr[-3000:]
    assert Path("tycho_packages/f.bin").read_bytes() == blob
    signatures = {m.group(1) for header in sent for m in _SIGNATURE.finditer(header)}
    assert len(signatures) >= 5  # every request was signed, and went through the proxy
    output = push.stdout + push.stderr + pull.stdout + pull.stderr
    assert "CanonicalRequest" in output and "Signature:" in output  # botocore's own lines
    assert "tycho_async.storage.s3lean DEBUG PUT http://" in output  # and the lean client's
    if server == "s3_endpoint":
        assert "AKIAEXAMPLEKEYID" not in output and "x-amz-security-token:***" in output
    for leaked in (*signatures, *secrets):
        assert leaked not in output
    assert not re.search(r"(?i)signature\W{0,5}[0-9a-f]{64}", output)


def test_the_readme_quick_start_leaves_nothing_behind(tmp_path: Path) -> None:
    """The quick start's one line, as the README has it (minus the install, done here
    already), run twice on the default local registry: each run says OK and `list` is
    empty afterwards."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Quick start")
    block = readme[readme.index("```bash\n", start) + 8:]
    line = block[:block.index("\n")]
    assert line.startswith("python3 -m venv .venv && .venv/bin/pip install -q . && ")
    line = line.split(" && ", 2)[2].replace(".venv/bin/tychoreg", TYCHOREG)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    for name in ("TYCHOREG_REGISTRY", "TYCHOREG_CONFIG", "TYCHOREG_OUTDIR"):
        env.pop(name, None)
    work = tmp_path / "quick-start"
    work.mkdir()
    for _ in range(2):
        done = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith("round trip OK\n")
        listed = subprocess.run([TYCHOREG, "list"], cwd=work, env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert (listed.returncode, listed.stdout) == (0, "")
    assert sorted(p.name for p in work.iterdir()) == []
