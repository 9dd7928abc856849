"""The copy engine against real S3 servers (rclone serve s3, moto): bytes, headers, ACLs, requests.

Thresholds are set small (5 MiB parts, a 6 MiB single-copy limit) so the
multipart and UploadPartCopy paths run on objects of a few MiB.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.utils
import pytest
from mastodon_s3_sync_demo.servers import S3Server, rclone_s3_server

from mastodon_s3_sync.core.transfer import proof
from mastodon_s3_sync.core.transfer.batch import BucketUnavailable, CopyItem, Outcome, TransferSettings
from mastodon_s3_sync.core.transfer.engine import copy_batch, copy_batch_async, open_clients, run_async
from mastodon_s3_sync.core.transfer.http import ConnectionPool
from mastodon_s3_sync.core.transfer.limiter import EndpointLimiter
from mastodon_s3_sync.core.transfer.listing import list_objects
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.transfer.sigv4 import Signer, canonical_query, uri_encode
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync_tests.support.acl import is_public
from mastodon_s3_sync_tests.support.buckets import SMALL_PARTS, boto, new_bucket, put
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy, self_signed_certificate

ODD_KEYS = [
    "media_attachments/files/000/000/001/original/plain.png",
    "accounts/avatars/a b/c+d=e&f?g#h/é ü 日本.jpg",
    "custom_emojis/images/x/~tilde-(parens)!*'quote'.gif",
]


def stored(server: S3Server, bucket: Bucket, key: str) -> tuple[bytes, dict]:
    """The object's body and the headers a copy must keep (metadata names are case-insensitive, as in HTTP)."""
    got = boto(server).get_object(Bucket=bucket.name, Key=key)
    headers = {name: got.get(name) for name in ("ContentType", "CacheControl", "ContentDisposition")}
    headers["Metadata"] = {name.lower(): value for name, value in got["Metadata"].items()}
    return got["Body"].read(), headers


def assert_same_objects(
    source: S3Server, source_bucket: Bucket, destination: S3Server, destination_bucket: Bucket, keys
):
    """Same body and headers; a copy uploaded in parts also states the body's MD5 (``md5chksum``)."""
    for key in keys:
        body, headers = stored(destination, destination_bucket, key)
        stated = headers["Metadata"].pop("md5chksum", None)
        assert (body, headers) == stored(source, source_bucket, key), key
        assert stated in (None, md5chksum(body)), key


def md5chksum(body: bytes) -> str:
    """rclone's ``x-amz-meta-md5chksum`` for ``body``: base64 of its MD5 digest."""
    return base64.b64encode(hashlib.md5(body).digest()).decode()


# SigV4 -----------------------------------------------------------------------------------------

SIGNING_CASES = [
    ("GET", ODD_KEYS[0], {}, {}),
    ("PUT", ODD_KEYS[1], {}, {"x-amz-acl": "public-read", "x-amz-meta-note": "  two  spaces  "}),
    ("PUT", ODD_KEYS[2], {"partNumber": "3", "uploadId": "a/b+c=="}, {"x-amz-copy-source": "/src/k%20ey"}),
    ("GET", None, {"list-type": "2", "prefix": "a b/é", "start-after": "a b/é/x~y", "max-keys": "1000"}, {}),
    (
        "POST",
        ODD_KEYS[1],
        {"uploads": ""},
        {"x-amz-storage-class": "STANDARD_IA", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    ),
    ("DELETE", ODD_KEYS[0], {"uploadId": "x"}, {}),
]


@pytest.mark.parametrize("token", [None, "session/token+="])
@pytest.mark.parametrize(("method", "key", "query", "headers"), SIGNING_CASES)
def test_signer_matches_botocore(monkeypatch, method, key, query, headers, token):
    moment = datetime.datetime(2024, 2, 29, 23, 59, 58)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: moment)
    host, region = "127.0.0.1:9000", "eu-central-1"
    path = "/media-bucket/" + (uri_encode(key, keep_slash=True) if key is not None else "")
    assert path.endswith(botocore.utils.percent_encode(key or "", safe="/~"))

    ours = Signer("AKIDEXAMPLE0000000000", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region, token).sign(
        method, host, path, canonical_query(query), headers, now=moment
    )

    request = botocore.awsrequest.AWSRequest(method=method, url=f"http://{host}{path}", headers=headers, params=query)
    request.context["client_config"] = botocore.config.Config(s3={"payload_signing_enabled": False})
    credentials = botocore.credentials.Credentials(
        "AKIDEXAMPLE0000000000", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
    )
    botocore.auth.S3SigV4Auth(credentials, "s3", region).add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")


# Listing ---------------------------------------------------------------------------------------


@pytest.mark.integration  # starts an rclone of its own, over files written before it starts
def test_listing_finds_wanted_keys_and_jumps_gaps(tmp_path: Path):
    """400 objects with 3 far-apart clusters of wanted keys, keys that prefix one another, missing keys."""
    root = tmp_path / "s3"
    for key in [f"m/{index:04d}" for index in range(400)] + ["m/0100x", "n/1"]:
        path = root / "bucket" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (len(key) + 1))
    wanted = ["m/0002", "m/0003", "m/0100", "m/0100x", "m/0101", "m/0390", "m/0399"]
    missing = ["l/0001", "m/0003a", "m/0250b", "m/9999"]
    with rclone_s3_server(root) as server:
        bucket = Bucket("bucket", server.endpoint_url, server.region, server.access_key, server.secret_key)

        async def sizes(keys, **kwargs) -> tuple[dict[str, int], int]:
            async with open_clients(bucket, bucket, TransferSettings()) as (client, _):
                listed = await list_objects(client, keys, **kwargs)
                return {key: found.size for key, found in listed.items()}, client.requests["ListObjectsV2"]

        found, pages = run_async(sizes(wanted + missing, gap_limit=20, page_size=10))
        assert found == {key: len(key) + 1 for key in wanted}
        assert pages <= 12, f"{pages} pages: the listing walked the gaps (41 pages) instead of jumping them"
        assert run_async(sizes([*wanted, *missing, "m/01"], page_size=7))[0] == found
        assert run_async(sizes([*wanted, "m/01"]))[0] == found
        assert run_async(sizes([])) == ({}, 0)


# GET + PUT -------------------------------------------------------------------------------------


def test_copy_keeps_body_and_headers_with_one_get_and_one_put(rclone_source, rclone_destination):
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    for index, key in enumerate(ODD_KEYS):
        put(
            rclone_source,
            source,
            key,
            os.urandom(1000 * index + 1),
            ContentDisposition=f'inline; filename="file{index}.png"',
            Metadata={"origin": f"row-{index}"},
        )
    put(rclone_source, source, "empty", b"")

    result = copy_batch(source, destination, [CopyItem(key, key) for key in [*ODD_KEYS, "empty"]])

    assert [item.outcome for item in result.results] == [Outcome.COPIED] * 4
    assert_same_objects(rclone_source, source, rclone_destination, destination, [*ODD_KEYS, "empty"])
    # one GET and PUT each, and one probe (PUT, DELETE) of whether the destination's ETags are MD5s
    assert result.requests == {"ListObjectsV2": 2, "GetObject": 4, "PutObject": 4 + 1, "DeleteObject": 1}
    assert result.progress.bytes_copied == sum(item.size for item in result.results) == 1 + 1001 + 2001


def test_present_with_same_size_is_skipped_by_listing_alone(rclone_source, rclone_destination):
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    keys = [f"k/{index}" for index in range(5)]
    for key in keys:
        put(rclone_source, source, key, key.encode() * 10)
    put(rclone_destination, destination, keys[0], b"stale")  # other size: copied again
    put(rclone_destination, destination, keys[1], keys[1].encode() * 10)  # same size and content: left alone
    put(rclone_destination, destination, keys[2], b"s" * len(keys[2] * 10))  # same size, other ETag: copied again

    first = copy_batch(source, destination, [CopyItem(key, key) for key in keys])
    assert [item.outcome for item in first.results] == [Outcome.COPIED, Outcome.SKIPPED] + [Outcome.COPIED] * 3
    assert [item.recopied_wrong_content for item in first.results] == [False, False, True, False, False]
    assert first.progress.recopied_wrong_content == 1
    assert first.requests == {"ListObjectsV2": 2, "GetObject": 4, "PutObject": 4 + 1, "DeleteObject": 1}

    again = copy_batch(source, destination, [CopyItem(key, key) for key in keys])
    assert {item.outcome for item in again.results} == {Outcome.SKIPPED}
    assert again.requests == {"ListObjectsV2": 2}


def test_missing_sources_and_fallback_keys(rclone_source, rclone_destination):
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    put(rclone_source, source, "cache/a/original/x.png", b"fallback body")
    put(rclone_source, source, "b/original/y.png", b"primary body")
    put(rclone_source, source, "cache/b/original/y.png", b"unused fallback")
    items = [
        CopyItem("a/original/x.png", "a/original/x.png", None, "cache/a/original/x.png", "cache/a/original/x.png"),
        CopyItem("b/original/y.png", "b/original/y.png", None, "cache/b/original/y.png", "cache/b/original/y.png"),
        CopyItem("c/original/z.png", "c/original/z.png", None, "cache/c/original/z.png", "cache/c/original/z.png"),
        CopyItem("d/original/w.png", "d/original/w.png"),
    ]

    result = copy_batch(source, destination, items)

    outcomes = [(item.outcome, item.source_key, item.destination_key, item.used_fallback) for item in result.results]
    assert outcomes == [
        (Outcome.COPIED, "cache/a/original/x.png", "cache/a/original/x.png", True),
        (Outcome.COPIED, "b/original/y.png", "b/original/y.png", False),
        (Outcome.MISSING, "c/original/z.png", "c/original/z.png", False),
        (Outcome.MISSING, "d/original/w.png", "d/original/w.png", False),
    ]
    keys = {item["Key"] for item in boto(rclone_destination).list_objects_v2(Bucket=destination.name)["Contents"]}
    assert keys == {"cache/a/original/x.png", "b/original/y.png"}
    assert stored(rclone_destination, destination, "cache/a/original/x.png")[0] == b"fallback body"


def test_missing_bucket_or_refused_credentials_fail_the_batch_up_front(rclone_source, rclone_destination):
    """Also for the source, which a fresh copy never lists (its GETs say what a listing would)."""
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    items = [CopyItem("k", "k")]
    with pytest.raises(BucketUnavailable) as missing:
        copy_batch(dataclasses.replace(source, name="no-such-bucket"), destination, items)
    assert (missing.value.role, missing.value.error.code) == ("source", "NoSuchBucket")
    with pytest.raises(BucketUnavailable) as refused:
        copy_batch(source, dataclasses.replace(destination, secret_access_key="not-the-secret-key"), items)
    assert (refused.value.role, refused.value.error.status) == ("destination", 403)


# Multipart -------------------------------------------------------------------------------------


@pytest.mark.parametrize("destination_server", ["rclone", "moto"])
def test_multipart_stream_is_exact(rclone_source, rclone_destination, moto, destination_server):
    destination_s3 = rclone_destination if destination_server == "rclone" else moto
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(destination_s3, "dst")
    sizes = {"big/odd.bin": 12 * MiB + 12345, "big/exact.bin": 10 * MiB, "big/threshold.bin": 5 * MiB, "empty": 0}
    for key, size in sizes.items():
        put(rclone_source, source, key, os.urandom(size), ContentDisposition="attachment", Metadata={"k": key})

    result = copy_batch(source, destination, [CopyItem(key, key, "public-read") for key in sizes], SMALL_PARTS)

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert [item.size for item in result.results] == list(sizes.values())
    assert_same_objects(rclone_source, source, destination_s3, destination, sizes)
    assert result.requests["CreateMultipartUpload"] == result.requests["CompleteMultipartUpload"] == 2
    assert result.requests["UploadPart"] == 3 + 2
    assert result.requests["PutObject"] == 2 + 1  # at the threshold and empty: one PUT each; the ETag probe
    if destination_server == "moto":
        assert all(is_public(boto(moto), destination.name, key) for key in sizes)


# Server-side copy ------------------------------------------------------------------------------


def test_server_side_copy_keeps_headers_and_sets_acls(moto, monkeypatch):
    monkeypatch.setattr(proof, "MAX_SINGLE_COPY", 6 * MiB)
    monkeypatch.setattr(proof, "SERVER_SIDE_PART", 5 * MiB)
    source = new_bucket(moto, "src")
    destination = new_bucket(moto, "dst")
    sizes = {"one/part.png": 1000, "parts/three.bin": 12 * MiB + 1, "zero": 0}
    for key, size in sizes.items():
        put(moto, source, key, os.urandom(size), ContentDisposition="inline", Metadata={"k": "v"})
    items = [CopyItem(key, f"copied/{key}", acl) for key, acl in zip(sizes, ["public-read", "private", "public-read"])]

    result = copy_batch(source, destination, items, SMALL_PARTS)

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    for key in sizes:
        body, headers = stored(moto, destination, f"copied/{key}")
        assert headers["Metadata"].pop("md5chksum", None) == (md5chksum(body) if key == "parts/three.bin" else None)
        assert (body, headers) == stored(moto, source, key)
    assert [is_public(boto(moto), destination.name, item.destination_key) for item in items] == [True, False, True]
    assert result.requests == {
        "ListObjectsV2": 2,
        "HeadObject": 3,
        "CopyObject": 2,
        "CreateMultipartUpload": 1,
        "UploadPartCopy": 3,
        "CompleteMultipartUpload": 1,
    }


def test_server_side_copy_on_rclone_keeps_content_type(rclone_source):
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_source, "dst")
    put(rclone_source, source, ODD_KEYS[1], b"body", ContentType="image/webp", Metadata={"a": "b"})

    result = copy_batch(source, destination, [CopyItem(ODD_KEYS[1], ODD_KEYS[1])])

    assert result.requests["CopyObject"] == 1 and "GetObject" not in result.requests
    body, headers = stored(rclone_source, destination, ODD_KEYS[1])
    headers["Metadata"].pop("mtime")  # rclone's own, added by its CopyObject
    assert (body, headers) == stored(rclone_source, source, ODD_KEYS[1])


# ACLs across providers -------------------------------------------------------------------------


def test_per_object_acls(rclone_source, moto):
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(moto, "dst")
    acls = {"public.png": "public-read", "private.png": "private", "default.png": None}
    for key in acls:
        put(rclone_source, source, key, key.encode())

    result = copy_batch(source, destination, [CopyItem(key, key, acl) for key, acl in acls.items()])

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert [is_public(boto(moto), destination.name, key) for key in acls] == [True, False, False]


# Throttling ------------------------------------------------------------------------------------


def test_throttled_endpoints_slow_down_and_lose_nothing(rclone_source, rclone_destination):
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    keys = [f"t/{index:03d}.png" for index in range(60)]
    for key in keys:
        put(rclone_source, source, key, key.encode() * 50)
    source_proxy = S3Proxy(rclone_source.endpoint_url, throttle_share=0.3, seed=1)
    destination_proxy = S3Proxy(rclone_destination.endpoint_url, throttle_share=0.3, seed=2)

    async def run():
        async with source_proxy, destination_proxy:
            return await copy_batch_async(
                dataclasses.replace(source, endpoint_url=source_proxy.endpoint_url),
                dataclasses.replace(destination, endpoint_url=destination_proxy.endpoint_url),
                [CopyItem(key, key) for key in keys],
                TransferSettings(concurrency=16, max_in_flight_per_endpoint=16),
            )

    result = asyncio.run(run())

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert_same_objects(rclone_source, source, rclone_destination, destination, keys)
    for limiter, proxy in ((result.source_limiter, source_proxy), (result.destination_limiter, destination_proxy)):
        assert limiter.throttled == proxy.throttled > 0
        assert limiter.lowest_concurrency < 16
    assert result.destination_limiter.paused_seconds + result.source_limiter.paused_seconds >= 1


def test_limiter_paces_requests_per_second_and_caps_in_flight():
    async def burst(limiter: EndpointLimiter, requests: int, duration: float) -> tuple[float, int]:
        in_flight = peak = 0

        async def one_request() -> None:
            nonlocal in_flight, peak
            await limiter.acquire()
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(duration)
            in_flight -= 1
            limiter.release()

        started = time.monotonic()
        await asyncio.gather(*(one_request() for _ in range(requests)))
        return time.monotonic() - started, peak

    seconds, _ = asyncio.run(burst(EndpointLimiter(max_in_flight=100, requests_per_second=50), 21, 0))
    assert seconds >= 20 / 50 * 0.95  # the 21st request starts 0.4 s after the first
    _, peak = asyncio.run(burst(EndpointLimiter(max_in_flight=3), 20, 0.02))
    assert peak == 3


# HTTPS and the HTTP client -----------------------------------------------------------------------------------


def test_copy_over_https(rclone_source, rclone_destination, tmp_path, monkeypatch):
    certificate, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # trusted by ssl.create_default_context()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate, key)
    source = new_bucket(rclone_source, "src")
    destination = new_bucket(rclone_destination, "dst")
    sizes = {"tls/large.bin": 11 * MiB + 7, "tls/small.png": 70_000}
    for object_key, size in sizes.items():
        put(rclone_source, source, object_key, os.urandom(size))

    async def run():
        async with (
            S3Proxy(rclone_source.endpoint_url, tls=tls) as source_proxy,
            S3Proxy(rclone_destination.endpoint_url, tls=tls) as destination_proxy,
        ):
            return await copy_batch_async(
                dataclasses.replace(source, endpoint_url=source_proxy.endpoint_url),
                dataclasses.replace(destination, endpoint_url=destination_proxy.endpoint_url),
                [CopyItem(object_key, object_key) for object_key in sizes],
                SMALL_PARTS,
            )

    result = asyncio.run(run())

    assert [item.error for item in result.results] == [None, None]
    assert_same_objects(rclone_source, source, rclone_destination, destination, sizes)


def test_silent_server_times_out():
    async def request_to_silent_server() -> None:
        server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(read_timeout=0.5)
        try:
            with pytest.raises(TimeoutError):
                await pool.request(("http", "127.0.0.1", port), "GET", "/", {"Host": "x"})
        finally:
            await pool.close()
            server.close()

    asyncio.run(request_to_silent_server())


@pytest.fixture
def flaky_keep_alive_server() -> Iterator[tuple[str, int]]:
    """Answers the first request on each connection, then drops the connection on the second unanswered."""
    loop = asyncio.new_event_loop()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0))
    yield loop, server.sockets[0].getsockname()[1]
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def test_request_on_a_dropped_keep_alive_connection_is_sent_again(flaky_keep_alive_server):
    loop, port = flaky_keep_alive_server

    async def two_requests() -> list[bytes]:
        pool = ConnectionPool()
        bodies = []
        for _ in range(2):
            response = await pool.request(("http", "127.0.0.1", port), "GET", "/", {"Host": f"127.0.0.1:{port}"})
            bodies.append(await response.read())
            response.release()
        await pool.close()
        return bodies

    assert loop.run_until_complete(two_requests()) == [b"hello", b"hello"]


def test_engine_imports_neither_dagster_nor_boto3():
    """The engine stands alone: importing it (as a copy step's hot path does) loads no orchestration or SDK."""
    code = (
        "import sys, mastodon_s3_sync.core.transfer.engine\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'dagster', 'dagster_aws', 'boto3', 'botocore'}))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
