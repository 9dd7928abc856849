"""The in-flight control law (``core/transfer/in_flight.py``), fed windows of completions, and the byte
budget's resizable reservations (``core/transfer/budget.py``): pure logic, no server."""

from __future__ import annotations

import asyncio
import math

import pytest

from mastodon_s3_sync.core.transfer.budget import ByteBudget
from mastodon_s3_sync.core.transfer.in_flight import InFlightControl, Phase, Window


def endpoint(rtt: float, cap: float):
    """Windows of 0.5 s at ``limit`` in flight to an endpoint ``rtt`` seconds away whose CPU (or server)
    answers at most ``cap`` requests/s: beyond ``cap`` requests wait in its queue (Little's law)."""

    def window(limit: int, saturated: bool = True) -> Window:
        rate = min(limit / rtt, cap)
        return Window(int(rate * 0.5), 0.5, saturated, limit / rate, rtt)

    return window


def run(control: InFlightControl, window_at, windows: int, saturated: bool = True) -> list[int]:
    """The limits the law sets over ``windows`` windows (``window_at(limit)``)."""
    return [control.decide(window_at(control.allowed, saturated)) for _ in range(windows)]


@pytest.mark.parametrize(
    ("rtt", "cap", "ceiling", "settles_at"),
    [
        # loopback: the CPU, not the round trip, bounds it at 64 already: the limit stays where it started
        (0.001, 1200.0, 512, 64),
        # 100 ms: 64 in flight allow 640 requests/s; the CPU allows 1,200: 128 reaches it
        (0.1, 1200.0, 512, 128),
        # 100 ms, CPU to spare: doubling pays up to the ceiling
        (0.1, 100_000.0, 512, 512),
        # the ceiling holds however much growing would pay
        (0.1, 100_000.0, 100, 100),
        # 30 ms, 1,200/s: 64 allow 2,133/s already: stays
        (0.03, 1200.0, 512, 64),
    ],
)
def test_the_limit_grows_while_throughput_follows_and_settles_where_it_stops(rtt, cap, ceiling, settles_at):
    control = InFlightControl(64, ceiling)
    limits = run(control, endpoint(rtt, cap), 6)
    assert limits[-1] == settles_at
    assert control.phase is Phase.HOLD
    assert max(limits) <= ceiling


def test_a_plateau_is_probed_again_after_holding_and_a_probe_that_pays_resumes_doubling():
    control = InFlightControl(64, 512)
    run(control, endpoint(0.1, 1200.0), 4)
    assert control.allowed == 128
    # the machine's other work stopped: the CPU now answers 3,000/s, which 300 in flight reach at 100 ms
    limits = run(control, endpoint(0.1, 3000.0), 13)
    # the hold ends: a step of 1.25 pays, so doubling resumes; at 512 the requests queue (170 ms): undone;
    # after the next hold, a step of 1.25 (400) queues too: undone
    assert limits == [128, 128, 128, 160, 320, 512, 320, 320, 320, 320, 320, 400, 320]


def test_a_longer_round_trip_is_taken_for_a_queue():
    """The least round trip is the limiter's whole life's (a batch's): one that grows, as a queue's does,
    holds the limit where it is."""
    control = InFlightControl(64, 512)
    run(control, endpoint(0.1, 1200.0), 4)
    assert set(run(control, endpoint(0.3, 100_000.0), 20)) == {128}


def test_a_step_that_pays_is_kept_though_the_round_trip_grew_and_is_the_last_while_requests_queue():
    """Measured at 100 ms on two cores (rclone's servers beside the client): the destination's step from
    64 to 128 raised its rate from 395 to 835 requests/s while its round trip went from 142 to 196 ms
    (the servers' CPU queues a little): kept, then held, as the round trip says requests queue."""
    control = InFlightControl(64, 512)
    assert control.decide(Window(128, 0.324, True, 0.142, 0.101)) == 128
    assert control.decide(Window(256, 0.306, True, 0.196, 0.101)) == 128
    assert control.phase is Phase.HOLD
    assert set(run(control, lambda limit, saturated: Window(256, 0.33, saturated, 0.17, 0.102), 20)) == {128}


def test_a_probe_is_measured_against_the_mean_rate_held_not_one_lucky_window():
    """Held at 128, the rate swings by a third from window to window (mean 700/s); the last window held
    was a lucky 910. A probe to 160 that reaches 800 pays against the mean (it needs 10% more: 770)."""
    control = InFlightControl(64, 512)
    run(control, endpoint(0.1, 1200.0), 3)
    assert control.allowed == 128 and control.phase is Phase.HOLD
    for rate in (600, 700, 590, 700, 910):
        control.decide(Window(int(rate * 0.3), 0.3, True, 0.11, 0.1))
    assert control.allowed == 160 and control.phase is Phase.PROBE
    assert control.decide(Window(240, 0.3, True, 0.12, 0.1)) == 320  # it paid: doubling resumes


def test_throughput_that_rises_by_chance_while_requests_queue_does_not_grow_the_limit():
    """Loopback, the CPU shared with other work: completions/s jump by half from one window to the next,
    but every round trip is 60 times the least (a queue): the limit stays where it started."""
    control = InFlightControl(64, 512)
    rates = [800, 1200, 700, 1100, 600, 1300] * 4
    limits = [control.decide(Window(rate // 2, 0.5, True, 64 / rate, 0.001)) for rate in rates]
    assert set(limits) == {64}


def test_windows_without_waiting_requests_teach_nothing():
    control = InFlightControl(64, 512)
    at_100_ms = endpoint(0.1, 100_000.0)
    assert run(control, at_100_ms, 5, saturated=False) == [64] * 5
    control.decide(at_100_ms(64))  # a step to 128 is tried...
    assert control.allowed == 128
    assert control.decide(at_100_ms(128, saturated=False)) == 64  # ...its room went unused: undone


@pytest.mark.parametrize(
    ("start", "throttles", "expected"),
    [
        (64, 1, 32),
        (64, 2, 16),
        (64, 7, 1),
        (1, 1, 1),
    ],
)
def test_throttling_halves_the_limit(start, throttles, expected):
    control = InFlightControl(start, 512)
    for _ in range(throttles):
        control.throttled()
    assert control.allowed == expected
    assert control.phase is Phase.RECOVER


def test_after_a_throttle_the_limit_grows_back_by_one_per_limit_completions_then_holds():
    control = InFlightControl(64, 512)
    control.decide(Window(1000, 0.5, True, 0.1, 0.1))  # startup: 128
    control.throttled()
    assert control.allowed == 64
    limits = [control.decide(Window(200, 0.5, True, 0.1, 0.1)) for _ in range(31)]
    # one per ``limit`` completions, as TCP's congestion avoidance: limit^2 grows by 2 per completion
    assert limits[:3] == [int(math.sqrt(64**2 + 2 * 200 * windows)) for windows in (1, 2, 3)] == [67, 69, 72]
    assert limits[-1] == 128  # where it was throttled, no further
    assert control.phase is Phase.HOLD
    # later probes that pay go on in steps of 1.25, not doubling: the provider's limit is near
    assert run(control, endpoint(0.1, 100_000.0), 8)[-4:] == [160, 200, 250, 312]


def test_a_provider_that_throttles_above_a_rate_keeps_the_limit_near_it():
    """Requests/s = limit / 30 ms, SlowDown whenever that passes 100/s (3 in flight)."""
    control = InFlightControl(64, 512)
    limits = []
    for _ in range(300):
        if control.allowed / 0.03 > 100:
            control.throttled()
        else:
            control.decide(Window(max(1, int(control.allowed / 0.03 * 0.2)), 0.2, True, 0.03, 0.03))
        limits.append(control.allowed)
    # a sawtooth around the 3 the rate allows (as TCP's): never back to where it started
    assert max(limits[50:]) <= 8
    assert 2 <= sum(limits[50:]) / 250 <= 6


def test_a_fixed_limit_never_moves():
    control = InFlightControl(16, 16)
    assert run(control, endpoint(0.1, 100_000.0), 30) == [16] * 30


# The byte budget --------------------------------------------------------------------------------


def test_a_reservation_resized_beyond_the_room_waits_for_it_and_shrinking_makes_room():
    async def scenario() -> list[str]:
        budget, events = ByteBudget(100), []

        async def first():
            async with budget.reserve(60) as held:
                await asyncio.sleep(0.01)
                await held.resize(20)
                events.append(f"first shrank, used {budget.used}")
                await asyncio.sleep(0.01)

        async def second():
            await asyncio.sleep(0.001)
            async with budget.reserve(30) as held:
                await held.resize(80)
                events.append(f"second grew, used {budget.used}")

        await asyncio.gather(first(), second())
        events.append(f"peak {budget.peak}, used {budget.used}")
        return events

    assert asyncio.run(scenario()) == ["first shrank, used 50", "second grew, used 100", "peak 100, used 0"]


def test_when_every_holder_waits_to_grow_the_first_in_line_proceeds():
    """Two GETs each hold their provisional 40 of 100 and both learn their objects are 70: neither could
    ever grow, so the first in line proceeds over the budget, by less than one object."""

    async def scenario() -> tuple[int, int]:
        budget = ByteBudget(100)
        both_hold = asyncio.Barrier(2)

        async def get():
            async with budget.reserve(40) as held:
                await both_hold.wait()
                await held.resize(70)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(asyncio.gather(get(), get()), 5)
        return budget.peak, budget.used

    assert asyncio.run(scenario()) == (110, 0)
