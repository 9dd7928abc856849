"""Per-endpoint request limiter: requests in flight that follow the round trip, optional request rate,
backoff on throttling.

The limiter is shared by every task that talks to one endpoint. How many requests it lets be in
flight is ``in_flight.InFlightControl``'s decision, from ``start`` up to ``max_in_flight``: the
limiter counts the completions and their round trips in windows and says whether requests waited
for a slot; the control law grows the limit while that pays. Providers throttle differently (B2 and Wasabi answer 503, R2
429, DigitalOcean 503 SlowDown); all of them ask the client to slow down. A throttle answer halves
the limit (once per window of requests: the answers to requests sent before the last cut do not
cut again) and, when the server sends Retry-After, holds new requests back that long.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass

from mastodon_s3_sync.core.transfer.in_flight import WINDOW_SECONDS, InFlightControl, Window


@dataclass
class LimiterStats:
    throttled: int = 0
    """Throttle answers (503 SlowDown, 429) received."""
    lowest_concurrency: int = 0
    highest_concurrency: int = 0
    """The highest limit of requests in flight reached."""
    ceiling: int = 0
    """The most requests in flight allowed (``max_in_flight``)."""
    paused_seconds: float = 0.0
    """Time new requests were held back for Retry-After."""


class EndpointLimiter:
    def __init__(self, max_in_flight: int = 64, requests_per_second: float | None = None, start: int | None = None):
        self.max_in_flight = max_in_flight
        self.requests_per_second = requests_per_second
        self.control = InFlightControl(start or max_in_flight, max_in_flight)
        allowed = self.control.allowed
        self.stats = LimiterStats(lowest_concurrency=allowed, highest_concurrency=allowed, ceiling=self.control.ceiling)
        self._in_flight = 0
        self._epoch = 0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._waiters: deque[asyncio.Future] = deque()
        self._skip = self.control.warm_up()
        self._window_started = time.monotonic()
        self._completions = 0
        self._round_trips = 0.0
        self._least_round_trip = math.inf
        self._waited = False

    @property
    def allowed_in_flight(self) -> int:
        return self.control.allowed

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
                self._waited = True
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

    def succeeded(self, round_trip: float) -> None:
        """A request answered (not throttled) ``round_trip`` seconds after it was sent (to its headers): counted
        in the current window; a full window goes to the control law."""
        if self._skip:
            self._skip -= 1
            if not self._skip:
                self._new_window()
            return
        self._completions += 1
        self._round_trips += round_trip
        self._least_round_trip = min(self._least_round_trip, round_trip)
        if self._completions < self.control.window_size():
            return
        seconds = time.monotonic() - self._window_started
        if seconds < WINDOW_SECONDS:
            return
        before = self.control.allowed
        window = Window(
            self._completions,
            seconds,
            self._waited,
            self._round_trips / self._completions,
            self._least_round_trip,
        )
        self._set(self.control.decide(window))
        self._skip = self.control.warm_up() if self.control.allowed != before else 0
        self._new_window()

    def throttled(self, epoch: int, retry_after: float | None) -> None:
        """Record a throttle answer to a request sent in window ``epoch``."""
        self.stats.throttled += 1
        if epoch == self._epoch:
            self._epoch += 1
            self._set(self.control.throttled())
            self._skip = 0
            self._new_window()
        if retry_after:
            now = time.monotonic()
            until = now + retry_after
            if until > self._paused_until:
                self.stats.paused_seconds += until - max(self._paused_until, now)
                self._paused_until = until

    def _set(self, allowed: int) -> None:
        self.stats.lowest_concurrency = min(self.stats.lowest_concurrency, allowed)
        self.stats.highest_concurrency = max(self.stats.highest_concurrency, allowed)
        self._wake()

    def _new_window(self) -> None:
        self._window_started = time.monotonic()
        self._completions = 0
        self._round_trips = 0.0
        self._least_round_trip = math.inf
        self._waited = bool(self._waiters)

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
