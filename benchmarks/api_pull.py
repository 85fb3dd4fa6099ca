"""``pull_many`` of a list of packages through tychoreg's Python API, in this one process;
writes the CPU time and the wall time of that call alone as JSON.

Issue 16's per-request target excludes start-up: the imports, the settings and opening
the registry are done before the clock starts (what the engine builds lazily on its first
request is part of the call, and counts). CPU is this process's user + system time
(every thread: ``RUSAGE_SELF``) around the call. The requests are counted by the harness
(from the server's own counters), not here: this script only uses the public
API, so the count cannot depend on the engine's internals.

    python api_pull.py --registry s3://BUCKET --endpoint-url URL --from-file LIST \\
        --outdir DIR --report FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def pull(registry: str, endpoint: str, items: list[str], outdir: Path,
               ) -> dict[str, float | int]:
    from tycho_async.api import open_registry

    async with open_registry(registry=registry, endpoint_url=endpoint) as reg:
        cpu, wall = cpu_seconds(), time.perf_counter()
        results = await reg.pull_many(items, outdir=outdir)
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    return {"cpu_s": cpu, "wall_s": wall, "packages": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--from-file", type=Path, required=True, help="one package a line")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True, help="the JSON written")
    args = parser.parse_args()
    items = [line.strip() for line in args.from_file.read_text().splitlines() if line.strip()]
    found = asyncio.run(pull(args.registry, args.endpoint_url, items, args.outdir))
    args.report.write_text(json.dumps(found))


if __name__ == "__main__":
    main()
