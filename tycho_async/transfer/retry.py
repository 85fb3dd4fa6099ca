"""The one retry policy: how long to wait before attempt n+1, for the three kinds of
waiting tychoreg does, with the sleep, the clock and the random draw injected so that
tests see every wait without spending it.

- ``request``: a request that failed transiently (a reset, a 503, a timeout) is retried
  up to ``attempts`` times with exponential backoff and full jitter (a random wait below
  the limit, so that clients that failed together spread out);
- ``CONFLICT``: a conditional write of tycho.json that lost a race is retried at once,
  lightly (the rival's write is done: reading again is all that is needed);
- ``SETTLE``: polling for a rival push of the same version to finish, at a steady
  doubling pace with no jitter (one poller, no herd).

It decides waits only; the engine decides what is retried (transient StoreErrors) and
counts and logs each retry.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from .plan import TransferSettings


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (0-based) waits up to ``min(cap, base * 2**n)`` seconds: anywhere
    below it with ``jitter``, exactly it without."""

    base: float
    cap: float
    jitter: bool = True

    def limit(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** min(attempt, 64))

    def delay(self, attempt: int, draw: Callable[[float, float], float] = random.uniform
              ) -> float:
        limit = self.limit(attempt)
        return draw(0.0, limit) if self.jitter else limit


CONFLICT = Backoff(base=0.01, cap=0.5)
SETTLE = Backoff(base=0.1, cap=2.0, jitter=False)


class RetryPolicy:
    """The waits of one engine: ``request`` from the transfer settings (``max_attempts``,
    ``backoff_base``, ``backoff_max``), ``CONFLICT`` and ``SETTLE`` as above."""

    conflict = CONFLICT
    settle = SETTLE

    def __init__(self, settings: TransferSettings, *,
                 sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[float, float], float] = random.uniform) -> None:
        self.attempts = settings.max_attempts
        self.request = Backoff(settings.backoff_base, settings.backoff_max)
        self._sleep = sleep
        self._clock = clock
        self._draw = draw

    def now(self) -> float:
        """The policy's clock (monotonic seconds), for deadlines of polling loops."""
        return self._clock()

    async def wait(self, backoff: Backoff, attempt: int) -> float:
        """Sleep before attempt ``attempt + 1``; returns the seconds waited."""
        delay = backoff.delay(attempt, self._draw)
        await self._sleep(delay)
        return delay
