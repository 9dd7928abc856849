"""Per-endpoint request limiter: in-flight cap, optional request rate, backoff on throttling.

Providers throttle differently (B2 and Wasabi answer 503, R2 429, DigitalOcean
503 SlowDown); all of them ask the client to slow down. The limiter is shared by
every task that talks to one endpoint. A throttle answer halves the allowed
concurrency (once per window of requests: the answers to requests sent before
the last cut do not cut again) and, when the server sends Retry-After, holds
new requests back that long; successes grow the concurrency back by one per
window (AIMD, as TCP does).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class LimiterStats:
    throttled: int = 0
    """Throttle answers (503 SlowDown, 429) received."""
    lowest_concurrency: int = 0
    paused_seconds: float = 0.0
    """Time new requests were held back for Retry-After."""


class EndpointLimiter:
    def __init__(self, max_in_flight: int = 64, requests_per_second: float | None = None):
        self.max_in_flight = max_in_flight
        self.requests_per_second = requests_per_second
        self.stats = LimiterStats(lowest_concurrency=max_in_flight)
        self._allowed = float(max_in_flight)
        self._in_flight = 0
        self._epoch = 0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def allowed_in_flight(self) -> int:
        return max(1, int(self._allowed))

    async def acquire(self) -> int:
        """Wait for a request slot; returns the window the request belongs to (for ``throttled``)."""
        while True:
            delay = self._delay()
            if delay > 0:
                await asyncio.sleep(delay)
            elif self._in_flight < self.allowed_in_flight:
                self._in_flight += 1
                if self.requests_per_second:
                    self._next_slot = max(time.monotonic(), self._next_slot) + 1.0 / self.requests_per_second
                return self._epoch
            else:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    else:
                        self._wake()  # pass on the wake-up this task will not use
                    raise

    def release(self) -> None:
        self._in_flight -= 1
        self._wake()

    def succeeded(self) -> None:
        if self._allowed < self.max_in_flight:
            self._allowed = min(float(self.max_in_flight), self._allowed + 1.0 / self._allowed)
            self._wake()

    def throttled(self, epoch: int, retry_after: float | None) -> None:
        """Record a throttle answer to a request sent in window ``epoch``."""
        self.stats.throttled += 1
        if epoch == self._epoch:
            self._epoch += 1
            self._allowed = max(1.0, self._allowed / 2)
            self.stats.lowest_concurrency = min(self.stats.lowest_concurrency, self.allowed_in_flight)
        if retry_after:
            now = time.monotonic()
            until = now + retry_after
            if until > self._paused_until:
                self.stats.paused_seconds += until - max(self._paused_until, now)
                self._paused_until = until

    def _delay(self) -> float:
        now = time.monotonic()
        return max(self._paused_until - now, self._next_slot - now if self.requests_per_second else 0.0)

    def _wake(self) -> None:
        free = self.allowed_in_flight - self._in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
