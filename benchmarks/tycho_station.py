"""What tycho-station does, as a baseline: plain boto3, one package after another.

Not the old tool itself, but its way of working, so the benchmark can show what
tychoreg's concurrency buys: per package it reads ``tycho.json``, HEADs the version
object, then ``download_file`` (or ``upload_file`` and a ``tycho.json`` rewrite for a
push), and writes the ``.etag`` sidecar. The registry comes from ``TYCHOREG_REGISTRY``
(``s3://BUCKET/PREFIX``) and the endpoint and credentials from the AWS environment, as
for tychoreg, so both run against the same setup.

    python tycho_station.py push PKG VERSION FILE [--promote-latest]
    python tycho_station.py pull PKG... [--from-file FILE] [--outdir DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError


def _registry() -> tuple[str, str]:
    url = urlparse(os.environ.get("TYCHOREG_REGISTRY", ""))
    if url.scheme != "s3" or not url.netloc:
        sys.exit("tycho_station: set TYCHOREG_REGISTRY=s3://BUCKET/PREFIX")
    prefix = url.path.strip("/")
    return url.netloc, f"{prefix}/" if prefix else ""


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


def push(client: Any, bucket: str, prefix: str, args: argparse.Namespace) -> None:
    key = f"{prefix}{args.package}/tycho_{args.version}.pkg"
    meta_key = f"{prefix}{args.package}/tycho.json"
    try:
        client.head_object(Bucket=bucket, Key=key)
        sys.exit(f"tycho_station: {args.package} {args.version} already exists")
    except ClientError as exc:
        if not _missing(exc):
            raise
    try:
        meta = json.loads(client.get_object(Bucket=bucket, Key=meta_key)["Body"].read())
    except ClientError as exc:
        if not _missing(exc):
            raise
        meta = {"localname": args.file.name, "latest": None}
    client.upload_file(str(args.file), bucket, key)
    if args.promote_latest:
        meta["latest"] = args.version
    client.put_object(Bucket=bucket, Key=meta_key, Body=json.dumps(meta, indent=2))


def pull(client: Any, bucket: str, prefix: str, args: argparse.Namespace) -> None:
    packages = list(args.packages)
    if args.from_file:
        packages += [line.strip() for line in args.from_file.read_text().splitlines()
                     if line.strip()]
    for package in packages:
        meta = json.loads(client.get_object(
            Bucket=bucket, Key=f"{prefix}{package}/tycho.json")["Body"].read())
        key = f"{prefix}{package}/tycho_{meta['latest']}.pkg"
        etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
        dest = args.outdir / meta["localname"]
        sidecar = dest.with_name(dest.name + ".etag")
        if not args.force and sidecar.exists() and sidecar.read_text() == etag:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(dest))
        sidecar.write_text(etag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    push_cmd = commands.add_parser("push")
    push_cmd.add_argument("package")
    push_cmd.add_argument("version")
    push_cmd.add_argument("file", type=Path)
    push_cmd.add_argument("--promote-latest", action="store_true")
    pull_cmd = commands.add_parser("pull")
    pull_cmd.add_argument("packages", nargs="*")
    pull_cmd.add_argument("--from-file", type=Path)
    pull_cmd.add_argument("--outdir", type=Path, default=Path("tycho_packages"))
    pull_cmd.add_argument("--force", action="store_true")
    args = parser.parse_args()
    bucket, prefix = _registry()
    client = boto3.client("s3")
    (push if args.command == "push" else pull)(client, bucket, prefix, args)


if __name__ == "__main__":
    main()
