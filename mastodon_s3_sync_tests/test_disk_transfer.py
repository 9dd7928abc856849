"""The copy engine between a directory and a bucket, both ways, on real servers and real files:
every byte proven, nothing copied twice, and never a partial file under a real name, even when
the source drops the connection mid-body (the test proxy cuts GET bodies or flips their bytes)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import stat
from pathlib import Path

import pytest

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.mastodon.layout import CACHE_CONTROL
from mastodon_s3_sync.core.transfer.batch import CopyItem, Outcome
from mastodon_s3_sync.core.transfer.disk import TEMPORARY_PREFIX, DiskRoot, process_umask
from mastodon_s3_sync.core.transfer.engine import copy_batch, copy_batch_async
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync_tests.support.acl import public_read
from mastodon_s3_sync_tests.support.buckets import SMALL_PARTS, boto, new_bucket, put
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.integration

SETTINGS = dataclasses.replace(SMALL_PARTS, concurrency=16, max_in_flight_per_endpoint=16)
LARGE = {"media/big/4.mp4": 9 * MiB + 3, "media/big/3.mp4": 7 * MiB}
"""Multipart copies: the proxy (at 20% each) cuts the first's body halfway, inside its part 1 (the part the first
GET reads; the rest come by ranged GETs), and flips a byte in the second's."""


def seed_bucket(server, bucket) -> dict[str, bytes]:
    bodies = {f"media/{index:03d}/original/x.png": os.urandom(2000 + index * 37) for index in range(40)}
    bodies.update({key: os.urandom(size) for key, size in LARGE.items()})
    for key, body in bodies.items():
        put(server, bucket, key, body)
    return bodies


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by key, temporary ones included (their names say so)."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def through_source_proxy(source, destination, items, settings, proxy: S3Proxy):
    async def run():
        async with proxy:
            return await copy_batch_async(
                dataclasses.replace(source, endpoint_url=proxy.endpoint_url), destination, items, settings
            )

    return asyncio.run(run())


def test_bucket_to_directory_proves_every_byte_and_resumes(rclone_source, tmp_path):
    source = new_bucket(rclone_source, "src")
    bodies = seed_bucket(rclone_source, source)
    items = [CopyItem(key, key) for key in bodies]
    root = tmp_path / "system"
    root.mkdir()
    proxy = S3Proxy(rclone_source.endpoint_url, cut_share=0.2, flip_share=0.2)

    result = through_source_proxy(source, DiskRoot(str(root)), items, SETTINGS, proxy)

    assert {item.outcome for item in result.results} == {Outcome.COPIED}, [i.error for i in result.results]
    faulted = set(proxy.cut) | set(proxy.flipped)
    assert len(faulted) >= 8 and set(LARGE) <= faulted, "small and multipart copies both disturbed"
    assert {item.source_key for item in result.results if item.rejected_attempts} == faulted
    assert files_under(root) == bodies, "every byte the source's, and no temporary file left"
    mode = 0o666 & ~process_umask()  # Paperclip's, for a copy that sends no ACL
    for key in bodies:
        path = root / key
        assert stat.S_IMODE(path.stat().st_mode) == mode, key
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o777 & ~process_umask(), key

    private = [dataclasses.replace(item, acl="private") for item in items]  # now private: Mastodon's chmod
    again = copy_batch(source, DiskRoot(str(root)), private, SETTINGS)
    assert {item.outcome for item in again.results} == {Outcome.SKIPPED}, [i.error for i in again.results]
    assert all(item.acl_fixed for item in again.results), "each file made private where it is"
    assert {key: stat.S_IMODE((root / key).stat().st_mode) for key in bodies} == dict.fromkeys(
        bodies, 0o600 & ~process_umask()
    )
    assert "GetObject" not in again.requests, "a listing and local reads decide: nothing downloaded"

    changed, short = "media/001/original/x.png", "media/002/original/x.png"
    (root / changed).write_bytes(bytes(len(bodies[changed])))  # same size, other bytes
    (root / short).write_bytes(bodies[short][:100])
    third = copy_batch(source, DiskRoot(str(root)), items, SETTINGS)
    outcomes = {item.source_key: item for item in third.results if item.outcome is not Outcome.SKIPPED}
    assert set(outcomes) == {changed, short}
    assert outcomes[changed].recopied_wrong_content, "the local MD5 against the source's ETag"
    assert files_under(root) == bodies


def test_a_dropped_connection_never_leaves_a_partial_file_and_a_resumed_copy_completes(rclone_source, tmp_path):
    source = new_bucket(rclone_source, "src")
    bodies = seed_bucket(rclone_source, source)
    items = [CopyItem(key, key) for key in bodies]
    root = tmp_path / "system"
    root.mkdir()
    (root / "media" / "big").mkdir(parents=True)
    (root / "media" / "big" / "4.mp4").write_bytes(b"an older file stays whole until replaced")
    proxy = S3Proxy(rclone_source.endpoint_url, cut_share=1.0)  # every first GET dropped mid-body

    once = dataclasses.replace(SETTINGS, max_attempts=1)
    result = through_source_proxy(source, DiskRoot(str(root)), items, once, proxy)

    assert {item.outcome for item in result.results} == {Outcome.FAILED}
    assert sorted(proxy.cut) == sorted(bodies)
    assert files_under(root) == {"media/big/4.mp4": b"an older file stays whole until replaced"}, (
        "no partial file under a real name, no temporary file left"
    )

    resumed = copy_batch(source, DiskRoot(str(root)), items, SETTINGS)
    assert {item.outcome for item in resumed.results} == {Outcome.COPIED}
    assert files_under(root) == bodies


def test_directory_to_bucket_sends_mastodons_headers_proves_uploads_and_uploads_nothing_twice(moto, tmp_path):
    root = tmp_path / "system"
    bodies = {f"media/{index:03d}/original/x.png": os.urandom(3000 + index) for index in range(30)}
    bodies["media/big/a.mp4"] = os.urandom(11 * MiB + 3)
    for key, body in bodies.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    (root / "orphan.png").write_bytes(b"never referenced")
    destination = new_bucket(moto, "dst")
    items = [
        CopyItem(key, key, acl="private" if key.startswith("media/000") else "public-read", content_type=content_type)
        for key in bodies
        for content_type in ["video/mp4" if key.endswith(".mp4") else "image/png"]
    ]

    result = copy_batch(DiskRoot(str(root)), destination, items, SETTINGS)

    assert {item.outcome for item in result.results} == {Outcome.COPIED}
    assert set(result.progress.checks) <= {"sent_md5", "md5", "multipart_etag"}, result.progress.checks
    client = boto(moto)
    for item in items:
        head = client.head_object(Bucket=destination.name, Key=item.destination_key)
        assert head["ContentType"] == item.content_type and head["CacheControl"] == CACHE_CONTROL
        assert (
            client.get_object(Bucket=destination.name, Key=item.destination_key)["Body"].read()
            == bodies[item.source_key]
        )
        grants = client.get_object_acl(Bucket=destination.name, Key=item.destination_key)["Grants"]
        assert public_read(grants) == (item.acl == "public-read"), item.destination_key
    big = client.head_object(Bucket=destination.name, Key="media/big/a.mp4")
    assert (
        providers.md5_from_metadata({providers.MD5_METADATA: big["Metadata"]["md5chksum"]})
        == hashlib.md5(bodies["media/big/a.mp4"]).hexdigest()
    ), "a multipart upload stores the file's MD5 for verify"
    listed = {item["Key"] for item in client.list_objects_v2(Bucket=destination.name)["Contents"]}
    assert listed == set(bodies), "no orphan, no probe left"
    assert not any(TEMPORARY_PREFIX in key for key in listed)

    proxy = S3Proxy(moto.endpoint_url)

    async def again():
        async with proxy:
            return await copy_batch_async(
                DiskRoot(str(root)), dataclasses.replace(destination, endpoint_url=proxy.endpoint_url), items, SETTINGS
            )

    repeated = asyncio.run(again())
    assert {item.outcome for item in repeated.results} == {Outcome.SKIPPED}
    uploads = [e for e in proxy.exchanges if e.method in ("PUT", "POST") and "acl" not in e.query]
    assert uploads == [], "a listing and local reads decide: nothing uploaded again"
    assert [e.key for e in proxy.exchanges if "acl" in e.query and e.method == "PUT"] == [
        item.destination_key for item in items if item.acl == "private"
    ], "only the private one's ACL asserted again, as for any skipped object"
