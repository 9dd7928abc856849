"""Large objects copied as parts in parallel (``parallel_parts``): the sizing rules as tables, then
copies against real servers (rclone serve s3, moto) behind the latency proxy or the faulting S3 proxy.

Objects of a few MiB in 5 MiB parts stand for the large ones."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import pytest
from mastodon_s3_sync_demo.servers import S3Server

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.transfer.batch import BatchResult, CopyItem, Outcome
from mastodon_s3_sync.core.transfer.engine import copy_batch
from mastodon_s3_sync.core.transfer.parallel_parts import MIN_PART, Lanes, lanes, part_size
from mastodon_s3_sync.core.transfer.proof import Check
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync_tests.support.buckets import SMALL_PARTS, boto, new_bucket, put
from mastodon_s3_sync_tests.support.latency import latency_proxy
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

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


# Against real servers ------------------------------------------------------------------------------

SETTINGS = dataclasses.replace(
    SMALL_PARTS, memory_budget=64 * MiB, concurrency=16, max_in_flight_per_endpoint=16, max_attempts=3
)
"""5 MiB parts above 5 MiB; up to 6 parts of an object in flight (half the budget)."""


def stated_md5(server: S3Server, bucket: Bucket, key: str) -> str | None:
    metadata = boto(server).head_object(Bucket=bucket.name, Key=key)["Metadata"]
    return {name.lower(): value for name, value in metadata.items()}.get("md5chksum")


def assert_copied(server: S3Server, bucket: Bucket, key: str, body: bytes) -> None:
    """The body, and its MD5 stated as ``md5chksum`` (for ``verify``)."""
    md5 = hashlib.md5(body).hexdigest()
    assert hashlib.md5(boto(server).get_object(Bucket=bucket.name, Key=key)["Body"].read()).hexdigest() == md5
    assert stated_md5(server, bucket, key) == providers.md5_metadata_value(md5)


def copy_through(
    source: Bucket, destination: Bucket, key: str, source_proxy=None, destination_proxy=None
) -> BatchResult:
    """Copy ``key`` with the buckets reached through the given proxies (S3Proxy, on threads of their own)."""
    with (
        source_proxy or S3Proxy(source.endpoint_url) as near,
        destination_proxy or S3Proxy(destination.endpoint_url) as far,
    ):
        return copy_batch(
            dataclasses.replace(source, endpoint_url=near.endpoint_url),
            dataclasses.replace(destination, endpoint_url=far.endpoint_url),
            [CopyItem(key, key)],
            SETTINGS,
        )


def test_parts_go_in_parallel_behind_a_capped_connection_and_are_proven(rclone_source, rclone_destination):
    """Behind 20 ms and 5 MB/s per connection, 5 parts: the copy takes less time than one connection
    needs for the object's GET alone, over more connections than a sequential copy opens (a first
    GET, then one kept alive), and ends proven: the source's MD5 checked and stored as md5chksum."""
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    body = os.urandom(24 * MiB + 3)
    put(rclone_source, source, "video.mp4", body)
    rate = 5 * MB

    with latency_proxy.running(
        [rclone_source.endpoint_url, rclone_destination.endpoint_url], delay_ms=20, rate_mb_s=rate / MB
    ) as proxy:
        started = time.monotonic()
        result = copy_batch(
            dataclasses.replace(source, endpoint_url=proxy.endpoints[0]),
            dataclasses.replace(destination, endpoint_url=proxy.endpoints[1]),
            [CopyItem("video.mp4", "video.mp4")],
            SETTINGS,
        )
        seconds = time.monotonic() - started

    [item] = result.results
    assert (item.outcome, item.check, item.rejected_attempts) == (Outcome.COPIED, Check.MD5, 0)
    assert (result.requests["GetObject"], result.requests["UploadPart"]) == (5, 5)  # the first GET gives part 1
    assert seconds < len(body) / rate, f"{seconds:.1f} s: no faster than one connection"
    source_connections = proxy.stats["listeners"][0]["connections"]
    assert source_connections >= 3, f"{source_connections} connections to the source: the GETs took turns"
    assert_copied(rclone_destination, destination, "video.mp4", body)


def test_a_part_cut_short_or_refused_is_tried_again_alone(rclone_source, rclone_destination):
    """Part 3's GET is cut halfway and part 2's first upload answered 500: each is tried again on its
    own (one more GET, one more UploadPart), in the same upload, and the copy ends proven."""
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    body = os.urandom(17 * MiB + 5)  # 4 parts
    put(rclone_source, source, "video.mp4", body)
    refused: list[str] = []

    def refuse_part_2_once(method: str, path: str, query: str):
        if method == "PUT" and "partNumber=2&" in f"{query}&" and not refused:
            refused.append(query)
            return 500, "InternalError", "injected"
        return None

    source_proxy = S3Proxy(rclone_source.endpoint_url, cut_range=f"bytes={10 * MiB}-{15 * MiB - 1}")
    destination_proxy = S3Proxy(rclone_destination.endpoint_url, intercept=refuse_part_2_once)

    result = copy_through(source, destination, "video.mp4", source_proxy, destination_proxy)

    [item] = result.results
    assert (item.outcome, item.check, item.error) == (Outcome.COPIED, Check.MD5, None)
    assert source_proxy.cut == ["video.mp4"] and len(refused) == 1
    assert item.rejected_attempts == 1  # the cut body (a 500 is not the bytes' fault)
    assert result.requests["CreateMultipartUpload"] == 1 and "AbortMultipartUpload" not in result.requests
    assert (result.requests["GetObject"], result.requests["UploadPart"]) == (4 + 1, 4 + 1)
    assert_copied(rclone_destination, destination, "video.mp4", body)
    assert boto(rclone_destination).list_multipart_uploads(Bucket=destination.name).get("Uploads", []) == []


@pytest.mark.parametrize("source_server", ["moto", "rclone"])
def test_a_source_changed_between_ranges_is_copied_again_from_its_new_get(
    rclone_source, rclone_destination, moto, source_server
):
    """The object is replaced (same size) just before its first ranged GET is forwarded: moto answers
    412 to the If-Match, rclone's server ignores If-Match but answers with the new ETag. Either way the
    attempt's upload is aborted and the copy starts over from a new GET: the new content, proven."""
    source_s3 = moto if source_server == "moto" else rclone_source
    source = new_bucket(source_s3, "src")
    destination = new_bucket(rclone_destination, "dst")
    old, new = os.urandom(12 * MiB), os.urandom(12 * MiB)
    put(source_s3, source, "video.mp4", old)
    gets: list[str] = []

    def replace_before_the_second_get(method: str, path: str, query: str):
        if method == "GET" and path.endswith("/video.mp4"):
            gets.append(path)
            if len(gets) == 2:
                put(source_s3, source, "video.mp4", new)
        return None

    source_proxy = S3Proxy(source_s3.endpoint_url, intercept=replace_before_the_second_get)
    result = copy_through(source, destination, "video.mp4", source_proxy)

    [item] = result.results
    assert (item.outcome, item.check, item.rejected_attempts) == (Outcome.COPIED, Check.MD5, 1)
    assert result.requests["CreateMultipartUpload"] == 2 and result.requests["AbortMultipartUpload"] == 1
    assert_copied(rclone_destination, destination, "video.mp4", new)
