"""The benchmarks' latency proxy (benchmarks/latency_proxy.py) in front of a real rclone S3 server.

What the latency benchmark's figures rest on: every request on a kept-alive
connection waits the round trip, each connection's throughput is capped in
both directions, and requests above the set rate are answered 503 SlowDown
while the connection stays usable.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import replace

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mastodon_s3_sync_tests.support.latency import latency_proxy
from mastodon_s3_sync_tests.support.migration import unique_bucket

MB = 1_000_000


@pytest.fixture(scope="module")
def bucket(rclone_source) -> str:
    name = unique_bucket("latency")
    rclone_source.create_bucket(name)
    client = rclone_source.client()
    client.put_object(Bucket=name, Key="small", Body=b"s" * 1000)
    client.put_object(Bucket=name, Key="large", Body=b"l" * (10 * MB))
    return name


def one_connection_client(server, endpoint: str):
    """A boto3 client through the proxy that keeps a single connection and does not retry."""
    config = Config(max_pool_connections=1, retries={"total_max_attempts": 1})
    return replace(server, endpoint_url=endpoint).client(config)


def test_every_request_on_a_kept_alive_connection_waits_the_round_trip(rclone_source, bucket) -> None:
    with latency_proxy.running([rclone_source.endpoint_url], delay_ms=150) as proxy:
        client = one_connection_client(rclone_source, proxy.endpoints[0])
        started = time.monotonic()
        client.head_object(Bucket=bucket, Key="small")
        one = time.monotonic() - started
        started = time.monotonic()
        client.head_object(Bucket=bucket, Key="small")
        client.get_object(Bucket=bucket, Key="small")["Body"].read()
        two = time.monotonic() - started
    assert one >= 0.150
    assert two >= 0.300
    assert proxy.stats["listeners"][0]["connections"] == 1
    assert proxy.stats["listeners"][0]["requests"] == 3
    assert proxy.stats["listeners"][0]["methods"] == {"HEAD": 2, "GET": 1}


def test_each_connection_is_capped_in_both_directions(rclone_source, bucket) -> None:
    with latency_proxy.running([rclone_source.endpoint_url], rate_mb_s=5) as proxy:
        client = one_connection_client(rclone_source, proxy.endpoints[0])
        started = time.monotonic()
        body = client.get_object(Bucket=bucket, Key="large")["Body"].read()
        download = time.monotonic() - started
        started = time.monotonic()
        client.put_object(Bucket=bucket, Key="uploaded", Body=body)
        upload = time.monotonic() - started
    with latency_proxy.running([rclone_source.endpoint_url]) as uncapped:
        client = one_connection_client(rclone_source, uncapped.endpoints[0])
        started = time.monotonic()
        client.get_object(Bucket=bucket, Key="large")["Body"].read()
        free = time.monotonic() - started
    assert len(body) == 10 * MB
    assert download >= 2.0  # 10 MB at 5 MB/s
    assert upload >= 2.0
    assert free < 2.0  # the cap, not the server, made it slow
    listener = proxy.stats["listeners"][0]
    assert listener["bytes_up"] > 10 * MB and listener["bytes_down"] > 10 * MB
    # boto3's PUT asks for 100 Continue: the body after it is part of the same request
    assert (listener["requests"], listener["continues"]) == (2, 1)


def test_requests_above_the_rate_are_answered_slow_down(rclone_source, bucket) -> None:
    """20 requests/s with bursts of 5: over T seconds of continuous demand, 20 T to 5 + 20 T get through."""
    answered, refused = 0, 0
    with latency_proxy.running([rclone_source.endpoint_url], slowdown_rps=20, slowdown_burst=5) as proxy:
        client = one_connection_client(rclone_source, proxy.endpoints[0])
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            try:
                client.head_object(Bucket=bucket, Key="small")
                answered += 1
            except ClientError as error:
                assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
                refused += 1
        elapsed = time.monotonic() - started
    listener = proxy.stats["listeners"][0]
    assert (listener["requests"], listener["refused"]) == (answered + refused, refused)
    assert 20 * elapsed - 2 <= answered <= 5 + 20 * elapsed
    assert listener["connections"] == 1  # a 503 to a request without a body keeps the connection


def test_a_refused_request_body_is_read_and_the_connection_kept(rclone_source, bucket) -> None:
    """A PUT refused with SlowDown: its body is dropped, the answer is S3's error, and the next request on
    the same connection is read as a request (HEAD's answer without a body)."""
    with latency_proxy.running([rclone_source.endpoint_url], slowdown_rps=0.001, slowdown_burst=1) as proxy:
        host, port = proxy.endpoints[0].removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", f"/{bucket}/small")  # unsigned: rclone refuses it, but it got there
        first = connection.getresponse()
        first.read()
        connection.request("PUT", f"/{bucket}/refused", body=b"x" * 300_000)
        put = connection.getresponse()
        put_body = put.read()
        connection.request("HEAD", f"/{bucket}/small")
        head = connection.getresponse()
        head.read()
        connection.close()
    assert first.status != 503
    assert put.status == 503 and b"<Code>SlowDown</Code>" in put_body
    assert head.status == 503
    listener = proxy.stats["listeners"][0]
    assert (listener["connections"], listener["requests"], listener["refused"]) == (1, 3, 2)
