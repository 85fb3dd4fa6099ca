"""Run one command and print its wall time, peak RSS and CPU time as one JSON line.

The harness starts this wrapper once per measured run, so ``RUSAGE_CHILDREN`` covers
exactly that command and the processes it waited for: ``ru_maxrss`` is the peak RSS of
the largest of them, which psutil polling could miss between two samples. The clock
starts just before the command is spawned, so process start-up counts, as it does for
a user; the wrapper's own start-up does not. The wait is a plain blocking wait (a
timer enforces the timeout): ``Popen.wait(timeout=...)`` polls, which would round
every time up by as much as 50 ms.

    python timed.py --log FILE --timeout SECONDS -- COMMAND...

SIGTERM or SIGINT ends the command's whole process tree before the wrapper exits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="the command's stdout and stderr")
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    signal.signal(signal.SIGTERM, _interrupt)
    with open(args.log, "wb") as log:
        start = time.perf_counter()
        # Its own session, so a timeout or an interrupt ends the command's whole tree.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(args.timeout, _kill_tree, (proc,))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
            _kill_tree(proc)
            proc.wait()
        wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    json.dump({"rc": proc.returncode, "timed_out": wall >= args.timeout, "wall": wall,
               "maxrss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime},
              sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
