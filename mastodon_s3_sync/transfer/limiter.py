"""Per-endpoint request limiter: in-flight cap, optional request rate, backoff on throttling.

Providers throttle differently (B2 and Wasabi answer 503, R2 429, DigitalOcean
503 SlowDown); all of them ask the client to slow down. The limiter is shared by
every task that talks to one endpoint: a throttle answer halves the allowed
concurrency and pauses new requests (for Retry-After when the server says),
and successes grow the concurrency back one step at a time (AIMD).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class LimiterStats:
    throttled: int = 0
    lowest_concurrency: int = 0
    paused_seconds: float = 0.0


@dataclass
class EndpointLimiter:
    max_in_flight: int = 64
    requests_per_second: float | None = None
    min_pause: float = 0.2
    stats: LimiterStats = field(default_factory=LimiterStats)

    def __post_init__(self) -> None:
        self._allowed = float(self.max_in_flight)
        self._in_flight = 0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._condition = asyncio.Condition()
        self.stats.lowest_concurrency = self.max_in_flight

    @property
    def allowed_in_flight(self) -> int:
        return max(1, int(self._allowed))

    @asynccontextmanager
    async def slot(self):
        await self._acquire()
        try:
            yield
        finally:
            async with self._condition:
                self._in_flight -= 1
                self._condition.notify_all()

    async def _acquire(self) -> None:
        while True:
            async with self._condition:
                await self._condition.wait_for(lambda: self._in_flight < self.allowed_in_flight)
                delay = self._paused_until - time.monotonic()
                if delay <= 0:
                    delay = self._take_rate_slot()
                    if delay <= 0:
                        self._in_flight += 1
                        return
            await asyncio.sleep(delay)

    def _take_rate_slot(self) -> float:
        """Seconds to wait for the next request slot, or 0 after taking it."""
        if not self.requests_per_second:
            return 0.0
        now = time.monotonic()
        if now < self._next_slot:
            return self._next_slot - now
        self._next_slot = max(now, self._next_slot) + 1.0 / self.requests_per_second
        return 0.0

    def succeeded(self) -> None:
        if self._allowed < self.max_in_flight:
            self._allowed = min(self.max_in_flight, self._allowed + 1.0 / self._allowed)

    def throttled(self, retry_after: float | None) -> float:
        """Record a throttle answer; return how long the caller should wait before retrying."""
        self.stats.throttled += 1
        self._allowed = max(1.0, self._allowed / 2)
        self.stats.lowest_concurrency = min(self.stats.lowest_concurrency, self.allowed_in_flight)
        pause = max(self.min_pause, retry_after or 0.0)
        until = time.monotonic() + pause
        if until > self._paused_until:
            self.stats.paused_seconds += until - max(self._paused_until, time.monotonic())
            self._paused_until = until
        return pause
