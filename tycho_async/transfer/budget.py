"""One limit on requests in flight, shared by every transfer of a command."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import anyio


@dataclass(frozen=True)
class BudgetStatistics:
    limit: int
    in_flight: int
    peak: int


class Lease:
    """One slot of the budget. It may be taken in one task and released in another,
    which lets an upload reserve a slot before reading a part and free it once sent."""

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._budget._release(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Budget:
    def __init__(self, limit: int) -> None:
        self._limiter = anyio.CapacityLimiter(limit)
        self._in_flight = 0
        self._peak = 0

    async def acquire(self) -> Lease:
        lease = Lease(self)
        await self._limiter.acquire_on_behalf_of(lease)
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        return lease

    def _release(self, lease: Lease) -> None:
        self._in_flight -= 1
        self._limiter.release_on_behalf_of(lease)

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(int(self._limiter.total_tokens), self._in_flight, self._peak)
