"""How many requests an endpoint may have in flight: the control law, as pure logic (no clock, no I/O).

Over a network, objects/s are bounded by requests in flight / (round trips per object x latency):
64 requests at 100 ms allow 640 requests/s whatever the CPU could do. So the limit grows while
growing it pays, and only then. ``EndpointLimiter`` counts the endpoint's completions and their
round trips (sending to the answer's headers) in windows (``window_size`` completions, after a
warm-up of ``warm_up`` that lets the requests sent under the old limit drain) and hands each
window to ``InFlightControl.decide``. A step is tried only while the round trip stays within
``QUEUEING`` times the least seen: requests that wait in a queue (the CPU's, the server's) say the
bottleneck is not the latency, and a throughput that rises by chance (the machine's other load)
must not start a step then. A step pays, and stays, when the completions per second rise with it
(by ``GAIN`` of the step, at least ``LEAST_GAIN``), even if the round trip grew meanwhile (more
requests at once queue a little somewhere; a rate that rose by half is no chance): it is then
the last one while requests queue.

- **Startup**: the limit doubles while that pays. The first doubling that does not is undone.
- **Hold**, then **probe**: after ``HOLD_WINDOWS`` windows at the limit found, a step of
  ``PROBE_STEP`` is tried (the latency or the load may have changed), measured against the mean
  rate of the windows held (one window's rate is noisy: on two cores, from one 0.3 s window to
  the next by a third); one that pays resumes the doubling.
- **Throttled** (503 SlowDown, 429): the limit halves, then grows back by one per window of
  ``limit`` completions (AIMD, as TCP does) up to where it was, then holds and probes as above,
  in steps of ``PROBE_STEP`` only from then on (the provider's limit is near).

A step whose window had no request waiting for a slot is undone (its room went unused). The limit
never goes below one, above ``ceiling`` (a setting, so a small provider is not flooded), nor below
``start`` but by a throttle: the starting value is the fixed one of before, with which loopback
copies reach their CPU's limit.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

GAIN = 0.3
"""The share of a step's added requests that must show up as completions per second for the step to stay..."""
LEAST_GAIN = 0.1
"""...and at least this much more completions per second (a small step's gain would be noise)."""
PROBE_STEP = 1.25
HOLD_WINDOWS = 5
QUEUEING = 1.5
"""Round trips longer than this many times the least seen mean requests wait in a queue (the CPU's, the
server's): more of them in flight would only wait longer. No step is tried then (one that paid stays, the last)."""
WINDOW_SECONDS = 0.2
"""A window lasts at least this long, so that timer noise does not decide."""


class Phase(enum.Enum):
    STARTUP = "startup"
    HOLD = "hold"
    PROBE = "probe"
    RECOVER = "recover"
    """Growing back by one per window after a throttle."""


@dataclass(frozen=True)
class Window:
    completions: int
    seconds: float
    saturated: bool
    """Requests waited for a slot during the window: the limit set the pace."""
    round_trip: float
    """Mean seconds from a request's sending to its answer's headers."""
    least_round_trip: float

    @property
    def rate(self) -> float:
        return self.completions / max(self.seconds, 1e-9)


class InFlightControl:
    """One endpoint's limit of requests in flight, decided window by window (see the module's docstring)."""

    def __init__(self, start: int, ceiling: int):
        self.ceiling = max(1, ceiling)
        self.floor = min(max(1, start), self.ceiling)
        self.limit = float(self.floor)
        self.phase = Phase.STARTUP
        self.base: tuple[float, float] | None = None
        """(limit, completions/s) before the step being tried."""
        self.held = 0
        """Saturated windows still to wait before the next probe."""
        self.held_rates: list[float] = []
        """The completions/s of the saturated windows held at the limit: a probe's base."""
        self.recover_to = 0.0
        """Where the limit grows back to after a throttle; 0 until the first."""
        self.least_round_trip = math.inf
        """Over the limiter's life (a batch): a route that grows longer reads as a queue."""

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def warm_up(self) -> int:
        """Completions ignored after a change: the requests sent under the old limit."""
        return self.allowed if self.phase in (Phase.STARTUP, Phase.PROBE) else 0

    def window_size(self) -> int:
        """Completions measured per window (at least ``WINDOW_SECONDS`` of them, which the limiter sees to)."""
        return max(8, 2 * self.allowed)

    def decide(self, window: Window) -> int:
        """The limit for the next window, given the last one's completions."""
        self.least_round_trip = min(self.least_round_trip, window.least_round_trip)
        unqueued = window.saturated and window.round_trip <= QUEUEING * self.least_round_trip
        if self.phase is Phase.RECOVER:
            # one more per ``limit`` completions, summed over the window: d(limit)/d(completions) = 1 / limit
            self.limit = min(self.recover_to, math.sqrt(self.limit**2 + 2 * window.completions))
            if self.limit >= self.recover_to:
                self._hold()
        elif self.phase is Phase.HOLD:
            if window.saturated:
                self.held -= 1
                self.held_rates.append(window.rate)
            if self.held <= 0 and self.limit < self.ceiling and unqueued:
                self._step(sum(self.held_rates) / len(self.held_rates), PROBE_STEP, Phase.PROBE)
        elif self.base is None:  # no step being tried (the first window)
            if unqueued:
                self._step(window.rate, 2.0, self.phase)
            elif window.saturated:
                self._hold()
        elif window.saturated and window.rate >= self.base[1] * (
            1 + max(LEAST_GAIN, GAIN * (self.limit / self.base[0] - 1))
        ):
            if self.limit >= self.ceiling or not unqueued:
                self._hold()
            elif self.recover_to:  # once throttled, steps stay small (the provider has a limit near)
                self._step(window.rate, PROBE_STEP, Phase.PROBE)
            else:  # it paid: double again, a probe that paid too (the latency or the load changed)
                self._step(window.rate, 2.0, Phase.STARTUP)
        else:  # the step did not pay, or its room went unused: back to the limit before it
            self.limit = self.base[0]
            self._hold()
        return self.allowed

    def throttled(self) -> int:
        """The provider asked to slow down (once per window of requests, the limiter sees to that)."""
        self.recover_to = max(self.floor, self.limit) if self.phase is not Phase.RECOVER else self.recover_to
        self.limit = max(1.0, self.limit / 2)
        self.phase, self.base = Phase.RECOVER, None
        return self.allowed

    def _step(self, rate: float, factor: float, phase: Phase) -> None:
        self.base = (self.limit, rate)
        self.limit = min(float(self.ceiling), max(self.limit + 1, self.limit * factor))
        self.phase = phase

    def _hold(self) -> None:
        self.phase, self.base, self.held, self.held_rates = Phase.HOLD, None, HOLD_WINDOWS, []
