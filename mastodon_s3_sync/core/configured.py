"""The database, buckets and tuning with the values the environment gives them now, for the
command line (the Dagster resources hold ``EnvVar`` names instead and resolve them in each run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mastodon_s3_sync.core.buckets import DestinationBucket, SourceBucket
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.settings import required, resource_values
from mastodon_s3_sync.core.tuning import Tuning

RESOURCE_KEYS = ("mastodon_db", "source_s3", "destination_s3", "sync_tuning")


def configured(environ: Mapping[str, str] | None = None, only: tuple[str, ...] = RESOURCE_KEYS) -> dict[str, Any]:
    """By resource key; a missing or malformed value is a ``ConfigError`` naming the variable."""
    builders = {
        "mastodon_db": lambda: MastodonDatabase(**resource_values("mastodon_db", environ)),
        "source_s3": lambda: SourceBucket(
            **{
                **resource_values("source_s3", environ),
                "bucket": required("SOURCE_S3_BUCKET", "the source bucket", environ),
            }
        ),
        "destination_s3": lambda: DestinationBucket(
            **{
                **resource_values("destination_s3", environ),
                "bucket": required("DESTINATION_S3_BUCKET", "the destination bucket", environ),
            }
        ),
        "sync_tuning": lambda: Tuning(**resource_values("sync_tuning", environ)),
    }
    return {key: builders[key]() for key in only}
