"""Buckets and objects on the test servers, for the copy engine's tests.

Thresholds are set small (``SMALL_PARTS``: 5 MiB parts) so the multipart and UploadPartCopy paths
run on objects of a few MiB."""

from __future__ import annotations

import functools
import uuid

from mastodon_s3_sync_demo.fake_instance.seeding import CACHE_CONTROL
from mastodon_s3_sync_demo.servers import S3Server

from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.tuning import MiB

SMALL_PARTS = TransferSettings(multipart_threshold=5 * MiB, part_size=5 * MiB, memory_budget=32 * MiB)


@functools.cache
def boto(server: S3Server):
    """One boto3 client per server: making one costs most of a second."""
    return server.client()


def new_bucket(server: S3Server, prefix: str) -> Bucket:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    boto(server).create_bucket(Bucket=name)
    return Bucket(name, server.endpoint_url, server.region, server.access_key, server.secret_key)


def put(server: S3Server, bucket: Bucket, key: str, body: bytes, **extra) -> None:
    headers = {"ContentType": "image/png", "CacheControl": CACHE_CONTROL, **extra}
    boto(server).put_object(Bucket=bucket.name, Key=key, Body=body, **headers)


def upload_in_parts(server: S3Server, bucket: Bucket, key: str, body: bytes, part_size: int, **extra) -> str:
    """Upload ``body`` in parts of ``part_size``, as Mastodon's aws-sdk does above 15 MB; the ETag."""
    client = boto(server)
    upload = client.create_multipart_upload(Bucket=bucket.name, Key=key, ContentType="video/mp4", **extra)["UploadId"]
    parts = [
        {"PartNumber": number, "ETag": client.upload_part(
            Bucket=bucket.name, Key=key, UploadId=upload, PartNumber=number, Body=body[start : start + part_size]
        )["ETag"]}
        for number, start in enumerate(range(0, len(body), part_size), start=1)
    ]  # fmt: skip
    answer = client.complete_multipart_upload(
        Bucket=bucket.name, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    return answer["ETag"].strip('"')
