"""The database, buckets (or directories) and tuning with the values the environment gives them now, for the
command line (the Dagster resources hold ``EnvVar`` names instead and resolve them in each run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mastodon_s3_sync.core.buckets import media_end
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.settings import resource_values
from mastodon_s3_sync.core.tuning import Tuning

RESOURCE_KEYS = ("mastodon_db", "source_s3", "destination_s3", "sync_tuning")


def configured(environ: Mapping[str, str] | None = None, only: tuple[str, ...] = RESOURCE_KEYS) -> dict[str, Any]:
    """By resource key; a missing or malformed value is a ``ConfigError`` naming the variable."""
    builders = {
        "mastodon_db": lambda: MastodonDatabase(**resource_values("mastodon_db", environ)),
        "source_s3": lambda: media_end("SOURCE", resource_values("source_s3", environ)),
        "destination_s3": lambda: media_end("DESTINATION", resource_values("destination_s3", environ)),
        "sync_tuning": lambda: Tuning(**resource_values("sync_tuning", environ)),
    }
    return {key: builders[key]() for key in only}
