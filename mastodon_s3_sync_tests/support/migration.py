"""A seeded fake instance and the buckets its media goes from and to."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mastodon_s3_sync_demo.fake_instance.model import FakeInstance
from mastodon_s3_sync_demo.fake_instance.seeding import seed
from mastodon_s3_sync_demo.servers import S3Server

SOURCE_BUCKET = "mastodon-source"
DESTINATION_BUCKET = "mastodon-destination"


@dataclass
class Migration:
    """A seeded fake instance and where its media is going."""

    database_url: str
    source: S3Server
    source_bucket: str
    source_prefix: str
    destination: S3Server
    destination_bucket: str
    destination_prefix: str
    instance: FakeInstance
    permission: str = "public-read"

    def environment(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "SOURCE_S3_BUCKET": self.source_bucket,
            "SOURCE_S3_ENDPOINT": self.source.endpoint_url,
            "SOURCE_S3_REGION": self.source.region,
            "SOURCE_S3_KEY_PREFIX": self.source_prefix,
            "SOURCE_AWS_ACCESS_KEY_ID": self.source.access_key,
            "SOURCE_AWS_SECRET_ACCESS_KEY": self.source.secret_key,
            "DESTINATION_S3_BUCKET": self.destination_bucket,
            "DESTINATION_S3_ENDPOINT": self.destination.endpoint_url,
            "DESTINATION_S3_REGION": self.destination.region,
            "DESTINATION_S3_KEY_PREFIX": self.destination_prefix,
            "DESTINATION_AWS_ACCESS_KEY_ID": self.destination.access_key,
            "DESTINATION_AWS_SECRET_ACCESS_KEY": self.destination.secret_key,
            "DESTINATION_S3_PERMISSION": self.permission,
        }

    def destination_keys(self) -> set[str]:
        client = self.destination.client()
        keys = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.destination_bucket):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys


_bucket_counter = iter(range(1, 1_000_000))


def unique_bucket(name: str) -> str:
    return f"{name}-{os.getpid()}-{next(_bucket_counter)}"


def make_migration(
    database_url: str,
    source: S3Server,
    destination: S3Server,
    *,
    source_prefix: str = "",
    destination_prefix: str = "",
    same_bucket: bool = False,
    permission: str = "public-read",
) -> Migration:
    source_bucket = unique_bucket(SOURCE_BUCKET)
    destination_bucket = source_bucket if same_bucket else unique_bucket(DESTINATION_BUCKET)
    source.create_bucket(source_bucket)
    if not same_bucket:
        destination.create_bucket(destination_bucket)
    instance = seed(database_url, source.client(), source_bucket, source_prefix)
    return Migration(
        database_url,
        source,
        source_bucket,
        source_prefix,
        destination,
        destination_bucket,
        destination_prefix,
        instance,
        permission,
    )
