"""Requests in flight that follow the round trip, behind the benchmarks' latency proxy, between real
rclone servers: the limit grows past its start where the latency bounds the copy, settles under a
provider's rate when it answers SlowDown, the byte budget bounds the bytes held however many
requests are in flight, and an endpoint that is both ends never waits for slots its own GETs hold."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from dataclasses import replace

from mastodon_s3_sync.core.transfer.batch import BatchResult, CopyItem, Outcome, TransferSettings
from mastodon_s3_sync.core.transfer.engine import copy_batch, copy_batch_async, open_clients, run_async
from mastodon_s3_sync.core.transfer.retries import with_retries
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync_tests.support.buckets import new_bucket
from mastodon_s3_sync_tests.support.latency import latency_proxy


def seeded(server, prefix: str, count: int, size: int) -> tuple[Bucket, list[str]]:
    """A new bucket with ``count`` objects of ``size`` bytes, put by the engine's own client (retried as a copy is)."""
    bucket = new_bucket(server, prefix)
    keys = [f"media/{index:05d}.png" for index in range(count)]

    async def put_all() -> None:
        async with open_clients(bucket, bucket, TransferSettings()) as (client, _):
            bodies = {key: key.encode().ljust(size, b".") for key in keys}
            await asyncio.gather(
                *(with_retries(lambda key=key: client.put(key, [bodies[key]], {}), 5, 30) for key in keys)
            )

    run_async(put_all())
    return bucket, keys


def copy_behind_proxy(
    source: Bucket, destination: Bucket, keys: list[str], settings: TransferSettings, **proxy_options
) -> tuple[BatchResult, float, dict]:
    """The batch copied with both endpoints behind one latency proxy: its result, seconds and the proxy's statistics."""
    with latency_proxy.running([source.base_url, destination.base_url], **proxy_options) as proxy:
        started = time.monotonic()
        result = copy_batch(
            replace(source, endpoint_url=proxy.endpoints[0]),
            replace(destination, endpoint_url=proxy.endpoints[1]),
            [CopyItem(key, key) for key in keys],
            settings,
        )
        seconds = time.monotonic() - started
    return result, seconds, proxy.stats


def test_where_the_round_trip_bounds_the_copy_the_limit_grows_and_the_copy_passes_the_fixed_bound(
    rclone_source, rclone_destination
):
    source, keys = seeded(rclone_source, "rtt", 1500, 2000)
    destination = new_bucket(rclone_destination, "rtt")
    start, delay = 8, 0.2
    settings = TransferSettings(concurrency=start, max_in_flight_per_endpoint=256)

    result, seconds, _ = copy_behind_proxy(source, destination, keys, settings, delay_ms=delay * 1000)

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert result.source_limiter.highest_concurrency > 64
    assert result.destination_limiter.highest_concurrency > 64
    fixed_bound = start / delay  # objects/s: each endpoint has one request per object, a round trip each
    assert len(keys) / seconds > 2 * fixed_bound


def test_a_provider_answering_slowdown_above_a_rate_is_copied_just_under_it(rclone_source, rclone_destination):
    source, keys = seeded(rclone_source, "slow", 250, 2000)
    destination = new_bucket(rclone_destination, "slow")
    rate = 50

    result, _, stats = copy_behind_proxy(
        source, destination, keys, TransferSettings(), delay_ms=30, slowdown_rps=rate, slowdown_burst=5
    )

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert result.source_limiter.throttled > 0 and result.destination_limiter.throttled > 0
    for listener in stats["listeners"]:
        let_through = sorted(accepted for accepted, _ in listener["per_second"][1:-1])
        assert rate * 0.6 <= let_through[len(let_through) // 2] <= rate + 5  # the median second, burst and all


def test_the_byte_budget_bounds_the_bytes_held_however_many_requests_are_in_flight(rclone_source, rclone_destination):
    """300 objects of 1 MiB, 256 requests in flight per endpoint, an 8 MiB budget: the bytes Python holds at
    their peak (tracemalloc) stay within the budget, one object over it and the engine's own overhead."""
    source, keys = seeded(rclone_source, "memory", 300, MiB)
    destination = new_bucket(rclone_destination, "memory")
    budget = 8 * MiB
    settings = TransferSettings(concurrency=256, max_in_flight_per_endpoint=256, memory_budget=budget)

    tracemalloc.start()
    try:
        result = copy_batch(source, destination, [CopyItem(key, key) for key in keys], settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert peak < budget + 2 * MiB + 4 * MiB


def test_one_endpoint_for_both_ends_never_waits_for_its_own_slots(rclone_source):
    """GET and PUT on one endpoint (server-side copy off) share its limiter: a GET's slot is free once its
    body has arrived, so four objects at once, four slots, do not each hold the slot their PUT waits for."""
    source, keys = seeded(rclone_source, "shared", 40, 2000)
    destination = new_bucket(rclone_source, "shared")
    settings = TransferSettings(concurrency=4, max_in_flight_per_endpoint=4, server_side_copy=False)

    async def copy() -> BatchResult:
        items = [CopyItem(key, key) for key in keys]
        return await asyncio.wait_for(copy_batch_async(source, destination, items, settings), 30)

    result = run_async(copy())

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert result.requests["GetObject"] == result.requests["PutObject"] - 1 == len(keys)  # and the ETag probe
