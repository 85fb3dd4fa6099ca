"""The loopback ceiling: one plain HTTP GET or PUT of a (presigned) URL, nothing else.

No SDK, no signing, no checksums, one connection: what the server and the loopback
can move for a single stream, to set the clients' numbers against.

    python rawhttp.py get URL          read the body into nothing
    python rawhttp.py put URL FILE     send FILE as the body
"""

from __future__ import annotations

import http.client
import os
import sys
from urllib.parse import urlsplit

BLOCK = 1 << 20


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in {"get", "put"}:
        sys.exit(__doc__)
    method, url = sys.argv[1], urlsplit(sys.argv[2])
    path = f"{url.path}?{url.query}" if url.query else url.path
    conn = http.client.HTTPConnection(url.netloc, timeout=60, blocksize=BLOCK)
    if method == "put":
        size = os.path.getsize(sys.argv[3])
        with open(sys.argv[3], "rb") as body:
            conn.request("PUT", path, body=body, headers={"Content-Length": str(size)})
    else:
        conn.request("GET", path)
    resp = conn.getresponse()
    buffer = bytearray(BLOCK)
    received = 0
    while count := resp.readinto(buffer):
        received += count
    if resp.status >= 300:
        sys.exit(f"rawhttp: HTTP {resp.status}")
    expected = resp.getheader("Content-Length")
    if method == "get" and expected is not None and received != int(expected):
        sys.exit(f"rawhttp: {received} of {expected} bytes")
    print(f"{method} HTTP {resp.status}: {received} bytes received")


if __name__ == "__main__":
    main()
