"""moto's S3 server in a process of its own, optionally N ms slower per request.

The harness runs this as a separate process so that the server's CPU time can be read
from its pid and so that it never shares a GIL with a client. It is what moto's own
``ThreadedMotoServer`` serves (``DomainDispatcherApplication(create_backend_app)`` on a
threaded werkzeug server), wrapped in a middleware that sleeps before every response:
the kernel here has no netem, and a sleep per request is what a round trip costs a
client that waits for each answer.

Prints ``PORT <n>`` once it listens; stops on SIGTERM/SIGINT, or by itself when the
process that started it goes away, so a killed harness never leaves a server behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

KEY_BUFFER = 16 << 30  # bytes an object may have before moto writes it to disk
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Delay:
    """WSGI middleware: wait ``seconds`` before handing each request to the app."""

    def __init__(self, app: WsgiApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        time.sleep(self.seconds)
        return self.app(environ, start_response)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _exit_when_orphaned(parent: int) -> None:
    """Bounded by the parent's life: checked once a second, exits once it is gone."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main() -> None:
    # moto spills every object above 5 MiB to a temporary file: keep them in memory, so
    # that the disk does not enter the numbers (and --full does not fill /tmp).
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(KEY_BUFFER))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    # One log line per request costs the server CPU that the clients are measured against.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    if args.latency_ms > 0:
        app = Delay(app, args.latency_ms / 1000)
    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    sys.stdout.write(f"PORT {server.server_port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
