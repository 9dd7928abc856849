"""How a large object is cut into parts copied in parallel (``parallel_parts``): the sizing rules as tables."""

from __future__ import annotations

import pytest

from mastodon_s3_sync.core.transfer.parallel_parts import MIN_PART, Lanes, lanes, part_size
from mastodon_s3_sync.core.tuning import MiB

MB = 1_000_000
BUDGET = 256 * MiB

# (object size, configured part size, lanes wanted) -> part size
PART_SIZES = {
    "the configured size": (300 * MB, 8 * MiB, 8, 8 * MiB),
    "smaller, so each lane has a part": (20 * MiB, 8 * MiB, 4, 5 * MiB),
    "never below S3's 5 MiB": (20 * MiB, 8 * MiB, 16, MIN_PART),
    "a configured size below 5 MiB is raised": (100 * MiB, 1 * MiB, 2, MIN_PART),
    "odd sizes round up": (30 * MiB + 1, 16 * MiB, 5, 6 * MiB + 1),
    "10,000 parts at most": (200_000 * MiB, 8 * MiB, 2, 20 * MiB),
    "S3's largest object: 10,000 parts, far below 5 GiB": (5 * 1024 * 1024 * MiB, 8 * MiB, 2, 549_755_814),
}


@pytest.mark.parametrize(("size", "configured", "wanted", "expected"), PART_SIZES.values(), ids=PART_SIZES)
def test_part_size(size, configured, wanted, expected):
    chosen = part_size(size, configured, wanted)
    assert chosen == expected
    assert -(-size // chosen) <= 10_000 and chosen <= 5 * 1024 * MiB


# (bandwidth, lane rate, objects, part size, parts, budget, in flight) -> lanes of one object
LANES = {
    "not measured yet: the most allowed": (125 * MB, None, 1, 8 * MiB, 38, BUDGET, 64, 16),
    "not measured yet, a small object: one per part": (125 * MB, None, 1, 5 * MiB, 3, BUDGET, 64, 3),
    "a fast lane: two, one GET overlapping one upload": (125 * MB, 400 * MB, 1, 8 * MiB, 38, BUDGET, 64, 2),
    "slow lanes: enough to fill the bandwidth": (125 * MB, 10 * MB, 1, 8 * MiB, 38, BUDGET, 64, 13),
    "rounded up": (125 * MB, 50 * MB, 1, 8 * MiB, 38, BUDGET, 64, 3),
    "four objects share the bandwidth": (125 * MB, 10 * MB, 4, 8 * MiB, 38, BUDGET, 64, 4),
    "twelve objects: two each still": (125 * MB, 10 * MB, 12, 8 * MiB, 38, BUDGET, 64, 2),
    "at most one per part": (125 * MB, 1 * MB, 1, 8 * MiB, 5, BUDGET, 64, 5),
    "at most half the budget": (125 * MB, 1 * MB, 1, 8 * MiB, 38, 64 * MiB, 64, 4),
    "at most half the requests in flight": (125 * MB, 1 * MB, 1, 8 * MiB, 38, BUDGET, 10, 5),
    "a budget of one part: one": (125 * MB, 1 * MB, 1, 8 * MiB, 38, 8 * MiB, 64, 1),
    "one part: one": (125 * MB, None, 1, 8 * MiB, 1, BUDGET, 64, 1),
}


@pytest.mark.parametrize(
    ("bandwidth", "rate", "objects", "size", "parts", "budget", "in_flight", "expected"), LANES.values(), ids=LANES
)
def test_lanes(bandwidth, rate, objects, size, parts, budget, in_flight, expected):
    assert lanes(bandwidth, rate, objects, size, parts, budget, in_flight) == expected


def test_lane_rate_follows_the_parts_measured():
    shared = Lanes()
    assert shared.rate is None
    shared.record(10 * MB, 1.0)
    assert shared.rate == 10 * MB
    shared.record(10 * MB, 0.5)  # a faster part moves the average part of the way
    assert 10 * MB < shared.rate < 20 * MB
    shared.record(10 * MB, 0.0)  # no time measured: no rate
    assert 10 * MB < shared.rate < 20 * MB
